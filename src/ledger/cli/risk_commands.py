"""`ledger anomalies`: the flagged usage spikes for a Risk analyst, newest first, with segment and owner."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ledger.cli.main import app, database, fail, now
from ledger.errors import LedgerError


@app.command()
def anomalies(
    since: Optional[str] = typer.Option(None, "--since", metavar="DAY",
                                        help="only days on or after DAY (YYYY-MM-DD, UTC)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
) -> None:
    """Usage spikes against each customer's own baseline (projections brought up to date first)."""
    from ledger import projector
    from ledger.cli.output import emit_json, table
    from ledger.risk import HEADERS, caption, list_anomalies, parse_day, thresholds

    try:
        first_day = parse_day(since) if since is not None else None
    except ValueError as error:
        print(f"error: --since: {error}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        with database() as db, db.connection() as conn:
            projector.project(conn, db.settings)
            rows = list_anomalies(conn, now=now(), since=first_day)
            limits = thresholds(conn)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json([row.as_dict() for row in rows])
        return
    print(caption(limits, first_day))
    if rows:
        print(table(HEADERS, [row.cells() for row in rows]))
    print(f"{len(rows)} anomal{'y' if len(rows) == 1 else 'ies'}")
