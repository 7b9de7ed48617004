"""Reads: traces of an invoice and of a customer-month, anomalies, the quarantine, verify, the projections'
checkpoints (and a projector run on demand)."""

from __future__ import annotations

import datetime as dt
from itertools import islice
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from ledger import projector
from ledger.api.deps import Conn, Finance, Reader, Svc, count_rows
from ledger.api.models import CheckpointsPublic, LagPublic, ProjectPublic
from ledger.api.problems import Problem
from ledger.audit.trace import contributing_facts, trace_customer_month, trace_invoice
from ledger.audit.verify import Anchor, verify_store
from ledger.projector.follow import read_checkpoints
from ledger.projector.runner import _head_position
from ledger.risk import list_anomalies, parse_day
from ledger.store.quarantine import list_quarantine

router = APIRouter(prefix="/v1", tags=["reads"])


def json_response(value, status: int = 200) -> Response:
    """JSON as the CLI prints it (numbers as numbers, anything else as its text)."""
    return Response(orjson.dumps(value, default=str), status_code=status, media_type="application/json")


@router.get("/trace/invoices/{invoice_id}", summary="Every fact behind an invoice (`ledger trace invoice`)")
def invoice_trace(invoice_id: str, request: Request, who: Reader, conn: Conn, svc: Svc) -> Response:
    projector.project(conn, svc.settings, risk=False)
    trace = trace_invoice(conn, invoice_id)
    count_rows(request, rows=len(trace["lines"]))
    return json_response(trace)


@router.get("/trace/invoices/{invoice_id}/lines/{line_id}/facts",
            summary="The usage facts behind one invoice line, in position order, a page at a time "
                    "(`ledger trace invoice --events`)")
def invoice_line_facts(invoice_id: str, line_id: str, request: Request, who: Reader, conn: Conn, svc: Svc,
                       after: Annotated[int | None, Query(description="the last position of the page before")] = None,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
    """Keyset pages over the line's contributing facts: `next_after` names the next page (null: this is the last).
    XOR of every page's `h` (as unsigned 64-bit) is the line's digest in the invoice trace."""
    projector.project(conn, svc.settings, risk=False)
    trace = trace_invoice(conn, invoice_id)
    line = next((ln for ln in trace["lines"] if ln["line_id"] == line_id), None)
    if line is None:
        raise Problem(404, "unknown_line", f"line_id: invoice {invoice_id!r} has no line {line_id!r}")
    usage = line.get("usage") or {}
    facts: list[dict] = []
    if usage.get("first_position") is not None:
        first = usage["first_position"] if after is None else max(usage["first_position"], after + 1)
        stream = contributing_facts(conn, trace["invoice"]["customer_id"], trace["invoice"]["period"],
                                    line["meter"], first, usage["last_position"], usage["source_ids"])
        try:
            facts = list(islice(stream, limit + 1))
        finally:
            stream.close()
    more = len(facts) > limit
    facts = facts[:limit]
    for fact in facts:
        fact["h"] = fact["h"] & 0xFFFFFFFFFFFFFFFF
    count_rows(request, rows=len(facts))
    return json_response({"invoice_id": invoice_id, "line_id": line_id, "meter": line["meter"],
                          "digest": usage.get("digest"), "facts": facts,
                          "next_after": facts[-1]["position"] if more else None})


@router.get("/trace/customers/{customer_id}/months/{month}",
            summary="A customer-month and its facts (`ledger trace customer C --month M`)")
def customer_month_trace(customer_id: str, month: str, request: Request, who: Reader, conn: Conn, svc: Svc
                         ) -> Response:
    projector.project(conn, svc.settings, risk=False)
    trace = trace_customer_month(conn, customer_id, month)
    count_rows(request, rows=1)
    return json_response(trace)


@router.get("/anomalies", summary="Usage spikes against each customer's baseline (`ledger anomalies`)")
def anomalies(request: Request, who: Reader, conn: Conn, svc: Svc,
              since: Annotated[str | None, Query(description="only days on or after (YYYY-MM-DD, UTC)")] = None
              ) -> Response:
    try:
        first_day = parse_day(since) if since is not None else None
    except ValueError as error:
        raise Problem(422, "invalid_day", f"since: {error}") from None
    projector.project(conn, svc.settings)
    rows = [row.as_dict() for row in list_anomalies(conn, now=dt.datetime.now(dt.timezone.utc), since=first_day)]
    count_rows(request, rows=len(rows))
    return json_response(rows)


@router.get("/quarantine", summary="Rejected records with file, line, field and reason (`ledger quarantine list`)")
def quarantine(request: Request, who: Reader, conn: Conn, kind: str | None = None,
               source: Annotated[str | None, Query(description="only records of this source file")] = None,
               after: Annotated[int | None, Query(description="the last quarantine_id of the page before")] = None,
               limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Response:
    rows = list_quarantine(conn, kind=kind, limit=limit, source_file=source, after_id=after)
    count_rows(request, rows=len(rows))
    return json_response(rows)


@router.get("/verify", summary="Recompute the hash chain, usage batches and projections (`ledger verify`)")
def verify(request: Request, who: Reader, conn: Conn,
           skip_projections: bool = False,
           anchor: Annotated[str | None, Query(description="POSITION:HASH printed by an earlier verify")] = None
           ) -> Response:
    try:
        pinned = Anchor.parse(anchor) if anchor else None
    except ValueError as error:
        raise Problem(422, "invalid_anchor", f"anchor: {error}") from None
    report = verify_store(conn, projections=not skip_projections, anchor=pinned)
    count_rows(request, rows=report.facts)
    return json_response(report.as_dict())


@router.get("/projections/checkpoints", response_model=CheckpointsPublic,
            summary="Where the read models are, and the follower's lag")
def checkpoints(who: Reader, conn: Conn, svc: Svc) -> CheckpointsPublic:
    head = _head_position(conn)
    finance, risk = read_checkpoints(conn) or (0, 0)
    state = svc.follower.state if svc.follower else None
    seconds = lambda views: getattr(state, views).seconds if state else None
    return CheckpointsPublic(head=head, finance=LagPublic(checkpoint=finance, facts=head - finance,
                                                          seconds=seconds("finance")),
                             risk=LagPublic(checkpoint=risk, facts=head - risk, seconds=seconds("risk")),
                             follower_running=bool(state and state.running), follower_runs=state.runs if state else 0,
                             follower_last_error=state.last_error if state else None)


@router.post("/projections", response_model=ProjectPublic,
             summary="Bring the projections up to date now, or rebuild them (`ledger project [--rebuild]`)")
def run_projector(who: Finance, conn: Conn, svc: Svc, rebuild: bool = False, finance_only: bool = False
                  ) -> ProjectPublic:
    report = (projector.rebuild(conn, svc.settings) if rebuild
              else projector.project(conn, svc.settings, risk=not finance_only))
    return ProjectPublic(**vars(report))
