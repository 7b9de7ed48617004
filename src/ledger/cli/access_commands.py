"""`ledger access list`: the service's access log (who did and read what)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import typer

from ledger.cli.runtime import fail, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError

app = typer.Typer()
access_app = typer.Typer(name="access", no_args_is_help=True, help="The HTTP service's access log.")
app.add_typer(access_app)


@access_app.command("list")
def access_list(
    principal: Optional[str] = typer.Option(None, "--principal", help="only this principal's requests"),
    since: Optional[str] = typer.Option(None, "--since", help="an instant (RFC 3339; UTC when no offset)"),
    limit: int = typer.Option(1000, "--limit", help="at most this many requests (a page)"),
    offset: int = typer.Option(0, "--offset", help="skip this many requests first (the next page)"),
    as_json: bool = typer.Option(False, "--json", help="print the requests (or the refusal) as JSON"),
) -> None:
    """Requests, oldest first: principal, role, method, path, status, rows or facts, duration."""
    from ledger.cli.output import emit_json, page_note, table
    from ledger.store.access_log import count_access, list_access

    moment = None
    try:
        if since is not None:
            try:
                moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidArgumentError("--since", since, "is not an instant such as 2026-12-05T10:00:00Z") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        if limit < 1:
            raise InvalidArgumentError("--limit", limit, "is not a positive number of requests")
        if offset < 0:
            raise InvalidArgumentError("--offset", offset, "is negative")
        with store() as db, db.connection() as conn:
            rows = list_access(conn, principal=principal, since=moment, limit=limit + offset)[offset:]
            total = count_access(conn, principal=principal, since=moment)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(rows)
        return
    print(where)
    if rows:
        print(table(["at", "principal", "role", "method", "path", "status", "rows", "facts", "ms"],
                    [(r["at"].isoformat(), r["principal"] or "-", r["role"] or "-", r["method"], r["path"],
                      r["status"], r["rows_returned"], r["facts_appended"], f"{r['duration_ms']:,.1f}")
                     for r in rows]))
    print(page_note(len(rows), total, "request", offset))
