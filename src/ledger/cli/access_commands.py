"""`ledger access list`: the service's access log (who did and read what)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Optional

import typer

from ledger.cli.main import database, fail
from ledger.errors import LedgerError

access_app = typer.Typer(no_args_is_help=True, help="The HTTP service's access log.")


@access_app.command("list")
def access_list(
    principal: Optional[str] = typer.Option(None, "--principal"),
    since: Optional[str] = typer.Option(None, "--since", help="an instant (RFC 3339; UTC when no offset)"),
    limit: int = typer.Option(1000, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Requests, oldest first: principal, role, method, path, status, rows or facts, duration."""
    from ledger.cli.output import emit_json, table
    from ledger.store.access_log import list_access

    moment = None
    if since is not None:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            print(f"error: --since: {since!r} is not an instant such as 2026-12-05T10:00:00Z", file=sys.stderr)
            raise typer.Exit(2)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    try:
        with database() as db, db.connection() as conn:
            rows = list_access(conn, principal=principal, since=moment, limit=limit)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(rows)
        return
    print(table(["at", "principal", "role", "method", "path", "status", "rows", "facts", "ms"],
                [(r["at"].isoformat(), r["principal"] or "-", r["role"] or "-", r["method"], r["path"], r["status"],
                  r["rows_returned"], r["facts_appended"], f"{r['duration_ms']:.1f}") for r in rows]))
    print(f"{len(rows)} request(s)")
