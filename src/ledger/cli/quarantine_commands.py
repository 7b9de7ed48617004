"""`ledger quarantine list`: the rejected records, with file, line, field and reason, a page at a time."""

from __future__ import annotations

from typing import Optional

import typer

from ledger.cli.runtime import choice_argument, fail, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError

app = typer.Typer()
quarantine_app = typer.Typer(name="quarantine", no_args_is_help=True, help="Rejected records.")
app.add_typer(quarantine_app)


@quarantine_app.command("list")
def quarantine_list(
    format: str = typer.Option("table", "--format", help="table | json"),
    kind: Optional[str] = typer.Option(None, "--kind", help="only records of this kind: usage | identities | "
                                                            "attributes | prices | invoices | credits"),
    limit: int = typer.Option(1000, "--limit", help="at most this many records (a page)"),
    offset: int = typer.Option(0, "--offset", help="skip this many records first (the next page)"),
    as_json: bool = typer.Option(False, "--json", help="the same as --format json: the records as a JSON list"),
) -> None:
    """The quarantined records, oldest first, with file, line, field and reason."""
    from ledger.cli.output import emit_json, page_note, table
    from ledger.commands.ingest import INGEST_KINDS
    from ledger.store.quarantine import count_quarantine, list_quarantine

    try:
        choice_argument(format, "--format", ("table", "json"))
        if kind is not None:
            choice_argument(kind, "--kind", INGEST_KINDS)
        if limit < 1:
            raise InvalidArgumentError("--limit", limit, "is not a positive number of records")
        if offset < 0:
            raise InvalidArgumentError("--offset", offset, "is negative")
        with store() as db, db.connection() as conn:
            rows = list_quarantine(conn, kind=kind, limit=limit, offset=offset)
            total = count_quarantine(conn, kind=kind)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if format == "json" or as_json:
        emit_json(rows)
        return
    print(where)
    if rows:
        print(table(["id", "kind", "file", "line", "field", "reason", "raw"],
                    [(r["quarantine_id"], r["kind"], r["source_file"], r["line_number"], r["field"], r["reason"],
                      r["raw_text"]) for r in rows]))
    print(page_note(len(rows), total, "quarantined record", offset))
