"""`GET /v1/exports/{name}`: `ledger export NAME` as CSV or JSON, streamed, filtered by customer and month, in
keyset pages (`limit`, then `after=` the `Ledger-Next-Cursor` of the page before)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ledger import projector
from ledger.api.deps import Conn, Reader, Svc, count_rows
from ledger.api.problems import Problem
from ledger.projector.exports import ExportPage, check_export, export_lines, next_page

router = APIRouter(prefix="/v1/exports", tags=["reads"])
RISK_EXPORTS = ("adoption", "anomalies")  # the Risk and Sales views: Finance's exports never wait on them
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise Problem(422, "invalid_cursor", f"after: {cursor!r} is not a cursor this service gave") from None
    if not isinstance(key, list):
        raise Problem(422, "invalid_cursor", f"after: {cursor!r} is not a cursor this service gave")
    return key


def bring_up_to_date(conn, svc, fresh: bool, risk: bool) -> int:
    """As the CLI does before reading: the projections brought up to the head (unless fresh=false); returns
    Finance's checkpoint the read sees."""
    if fresh:
        return projector.project(conn, svc.settings, risk=risk).to_position
    return int(conn.execute("SELECT position FROM ledger_proj.checkpoint").fetchone()[0])


@router.get("/{name}", summary="A read model as CSV or JSON (`ledger export NAME`)",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export(name: str, request: Request, who: Reader, conn: Conn, svc: Svc,
           format: Literal["csv", "json"] = "csv",
           customer: Annotated[str | None, Query(description="only this customer_id's rows")] = None,
           month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                              description="only rows of this month (YYYY-MM)")] = None,
           limit: Annotated[int | None, Query(ge=1, le=100_000, description="rows per page")] = None,
           after: Annotated[str | None, Query(description="the Ledger-Next-Cursor of the page before")] = None,
           fresh: Annotated[bool, Query(description="bring the projections up to date first, as the CLI does")
                            ] = True) -> StreamingResponse:
    checkpoint = bring_up_to_date(conn, svc, fresh, name in RISK_EXPORTS)
    try:
        spec = check_export(conn, name, customer=customer, month=month)
    except ValueError as error:
        raise Problem(422, "invalid_filter", str(error)) from None
    key = decode_cursor(after) if after is not None else None
    if key is not None and len(key) != len(spec.keys):
        raise Problem(422, "invalid_cursor", f"after: a cursor of {name} holds {len(spec.keys)} key values")
    headers = {"Ledger-Checkpoint": str(checkpoint)}
    if limit is not None:
        following = next_page(conn, name, limit, customer=customer, month=month, after=key)
        if following is not None:
            cursor = encode_cursor(following)
            headers["Ledger-Next-Cursor"] = cursor
            headers["Link"] = f'<{request.url.include_query_params(after=cursor)}>; rel="next"'

    def body():
        # the request's own connection, held until the body is sent: a second one from the pool here would let a
        # burst of exports as wide as the pool wait on each other
        page = ExportPage()
        yield from export_lines(conn, name, format, customer=customer, month=month, after=key, limit=limit,
                                page=page)
        count_rows(request, rows=page.rows)

    return StreamingResponse(body(), media_type=MEDIA[format], headers=headers)
