"""`ledger ingest KIND FILE`: a file's records appended as facts (the one command that creates a store from nothing)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from ledger.cli.runtime import choice_argument, fail, now, store
from ledger.errors import LedgerError
from ledger.logging import get_logger

app = typer.Typer()
FORMATS = ("ndjson", "csv", "cloudevents")


@app.command()
def ingest(
    kind: str = typer.Argument(..., help="usage | identities | attributes | prices | invoices | credits"),
    file: str = typer.Argument(..., help="a path, or - for standard input; gzip is detected"),
    format: Optional[str] = typer.Option(None, "--format", help="ndjson | csv | cloudevents (default: from the "
                                                                "extension)"),
    as_json: bool = typer.Option(False, "--json", help="print the report (or the refusal) as one JSON object"),
) -> None:
    """Append a file's records as facts; exit 3 when any record was quarantined."""
    from ledger.cli.output import IngestProgress, count, emit_json
    from ledger.commands.ingest import INGEST_KINDS, ingest_file

    try:
        choice_argument(kind, "KIND", INGEST_KINDS)
        if format is not None:
            choice_argument(format, "--format", FORMATS)
        with store(create=True) as db:
            size = os.path.getsize(file) if file != "-" and os.path.isfile(file) else None
            with IngestProgress(f"ingest {kind}", size, enabled=not as_json) as progress:
                report = ingest_file(db, kind, file, format, now=now(), progress=progress)
            target = db.target
    except LedgerError as error:
        fail(error)
    get_logger().info(f"{kind}_ingested", **{k: v for k, v in report.as_dict().items() if k != "refusals"})
    if as_json:
        emit_json(report.as_dict())
    else:
        print(f"{kind} from {report.file} ({report.format}): read {count(report.read, 'record')}, appended "
              f"{count(report.appended, 'fact')}, {count(report.duplicates, 'duplicate')}, "
              f"{count(report.conflicts, 'conflict')}, {report.quarantined:,} quarantined in {report.seconds:.2f} s "
              f"({report.events_per_second:,.0f} records/s)")
        print(f"store: {target}")
        if report.quarantined:
            print("see `ledger quarantine list` for the rejected records and their reasons")
        if report.empty:
            print(f"the file holds no records: {report.file} is empty or only blank lines")
    raise typer.Exit(report.exit_code)
