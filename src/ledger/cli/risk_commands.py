"""`ledger anomalies`: the flagged usage spikes for a Risk analyst, newest first, with segment and owner."""

from __future__ import annotations

from typing import Optional

import typer

from ledger.cli.runtime import fail, now, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError

app = typer.Typer()


@app.command()
def anomalies(
    since: Optional[str] = typer.Option(None, "--since", metavar="DAY",
                                        help="only days on or after DAY (YYYY-MM-DD, UTC)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows (or the refusal) as JSON"),
) -> None:
    """Usage spikes against each customer's own baseline (projections brought up to date first)."""
    from ledger import projector
    from ledger.cli.output import count, emit_json, table
    from ledger.risk import HEADERS, caption, list_anomalies, parse_day, thresholds

    try:
        try:
            first_day = parse_day(since) if since is not None else None
        except ValueError as error:
            raise InvalidArgumentError("--since", since, "is not a day: write it YYYY-MM-DD") from error
        with store() as db, db.connection() as conn:
            projector.project(conn, db.settings)
            rows = list_anomalies(conn, now=now(), since=first_day)
            limits = thresholds(conn)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json([row.as_dict() for row in rows])
        return
    print(where)
    print(caption(limits, first_day))
    if rows:
        print(table(HEADERS, [row.cells() for row in rows]))
    print(count(len(rows), "anomaly"))
