"""`POST /v1/facts/{kind}`: a body of NDJSON, CSV or CloudEvents (gzip accepted) streamed into `ledger ingest`'s
pipeline as it arrives; the ingest report, with the quarantined records by line, as the response."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Annotated, Literal

import anyio
import anyio.from_thread
from fastapi import APIRouter, Depends, Query, Request

from ledger.api.access import ClientDisconnected
from ledger.api.deps import CurrentPrincipal, Svc, access_record, count_rows
from ledger.api.models import IngestPublic
from ledger.api.problems import Problem
from ledger.commands.ingest import FORMATS, check_format, ingest_source
from ledger.ingest.reader import infer_format, open_stream
from ledger.store.principals import Principal
from ledger.store.quarantine import list_quarantine

router = APIRouter(prefix="/v1/facts", tags=["facts"])
QUARANTINE_LISTED = 1000
CONTENT_TYPES = {
    "text/csv": "csv", "application/csv": "csv",
    "application/x-ndjson": "ndjson", "application/ndjson": "ndjson", "application/jsonl": "ndjson",
    "application/json": "ndjson", "application/cloudevents+json": "cloudevents",
    "application/cloudevents+ndjson": "cloudevents", "application/cloudevents-batch+ndjson": "cloudevents",
}
# what clients send when they do not say (curl --data-binary sends a form's type): read as the default, NDJSON
UNTYPED = ("application/octet-stream", "application/x-www-form-urlencoded")
Kind = Literal["usage", "identities", "attributes", "prices", "invoices", "credits"]


def appender(kind: Kind, request: Request, who: CurrentPrincipal) -> Principal:
    """The ingest role appends facts; a credit history (each record with its original actor, through the credit
    rule) is Finance's import, so the finance role alone may send one. A new credit is POST /v1/credits."""
    allowed = ("finance",) if kind == "credits" else ("ingest",)
    if who.role not in allowed:
        raise Problem(403, "forbidden", f"role {who.role} may not {request.method} {request.url.path} "
                                        f"(allowed: {', '.join(allowed)})")
    return who


class RequestBody(io.RawIOBase):
    """The request's body read from the worker thread as it arrives, one ASGI message at a time."""

    def __init__(self, receive):
        self.receive, self.pending, self.done = receive, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and not self.done:
            message = anyio.from_thread.run(self.receive)
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("the client went away before the body ended")
            self.pending = message.get("body", b"")
            self.done = not message.get("more_body", False)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def body_format(kind: str, explicit: str | None, content_type: str | None, source: str | None = None) -> str:
    """?format= when given, else the Content-Type, else the source name's extension (as the CLI reads a file's),
    else NDJSON."""
    if explicit:
        fmt = explicit
    elif content_type:
        media = content_type.split(";")[0].strip().lower()
        if media in UNTYPED:
            return body_format(kind, None, None, source)
        if media not in CONTENT_TYPES:
            raise Problem(415, "unsupported_media_type", f"Content-Type {media} is not one of "
                          f"{', '.join(sorted(CONTENT_TYPES))} (or name the format: ?format=ndjson|csv|cloudevents)")
        fmt = CONTENT_TYPES[media]
    else:
        fmt = infer_format(source or "", None)
    if fmt not in FORMATS[kind]:
        raise Problem(415, "unsupported_format", f"{kind} cannot be read as {fmt} (accepted: "
                      f"{', '.join(FORMATS[kind])})")
    return fmt


@router.post("/{kind}", response_model=IngestPublic,
             summary="Append a body's records as facts (`ledger ingest KIND -`)")
async def ingest(kind: Kind, request: Request, who: Annotated[Principal, Depends(appender)], svc: Svc,
                 format: Annotated[Literal["ndjson", "csv", "cloudevents"] | None, Query()] = None,
                 source: Annotated[str | None, Query(max_length=200,
                                                     description="a name for the records' provenance")] = None
                 ) -> IngestPublic:
    fmt = body_format(kind, format, request.headers.get("content-type"), source)
    record = access_record(request)
    name = f"api:{who.name}:{source or (record.request_id if record else 'request')}"
    length = request.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    now = datetime.now(timezone.utc)

    def run() -> dict:
        with svc.pool.connection() as conn:
            before = conn.execute("SELECT coalesce(max(quarantine_id), 0) FROM quarantine").fetchone()[0]
        input_ = open_stream(name, io.BufferedReader(RequestBody(request.receive), 1 << 16), size)
        check_format(kind, fmt, name)
        report = ingest_source(svc.db, kind, input_, fmt, now=now)
        with svc.pool.connection() as conn:
            rows = list_quarantine(conn, source_file=name, after_id=before, limit=QUARANTINE_LISTED + 1) \
                if report.quarantined else []
        return {**report.as_dict(), "quarantined_records": rows[:QUARANTINE_LISTED],
                "quarantined_records_truncated": len(rows) > QUARANTINE_LISTED}

    result = await anyio.to_thread.run_sync(run)
    svc.metrics.appended(kind, result["appended"])
    count_rows(request, facts=result["appended"])
    return IngestPublic.model_validate(result)
