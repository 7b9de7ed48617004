"""`ledger archive facts --output DIR` (facts as Parquet, by month, incrementally) and `ledger verify --archive`."""

from __future__ import annotations


import typer

from ledger.cli.runtime import fail, now, store
from ledger.errors import ConfigurationError, LedgerError
from ledger.logging import get_logger

app = typer.Typer()
archive_app = typer.Typer(name="archive", no_args_is_help=True,
                          help="Facts as Parquet files for the warehouse and the auditors.")
app.add_typer(archive_app)
MISSING_PYARROW = "Parquet needs pyarrow: pip install 'ledger[warehouse]'"


def _pyarrow_installed() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        fail(ConfigurationError(MISSING_PYARROW))


@archive_app.command("facts")
def archive_facts_command(
    output: str = typer.Option(..., "--output", help="the archive's directory (created on the first run)"),
    as_json: bool = typer.Option(False, "--json", help="print the run's report (or the refusal) as one JSON object"),
) -> None:
    """Write the facts appended since this archive's last run as Parquet files, partitioned by month."""
    _pyarrow_installed()
    from ledger.cli.output import count, emit_json
    from ledger.warehouse.archive import archive_facts

    try:
        with store() as db, db.connection() as conn:
            report = archive_facts(conn, output, now=now(), currency=db.settings.currency)
    except LedgerError as error:
        fail(error)
    get_logger().info("facts_archived" if report.run else "archive_up_to_date", archive_id=report.archive_id,
                      run=report.run, to_position=report.to_position, files=len(report.files), rows=report.rows,
                      seconds=round(report.seconds, 3))
    if as_json:
        emit_json(report.as_dict())
    elif report.run is None:
        print(f"archive {report.directory} is up to date (position {report.to_position:,}); nothing written")
    else:
        print(f"archive {report.directory} run {report.run}: positions {report.from_position + 1:,}–"
              f"{report.to_position:,}, {count(len(report.files), 'file')}, rows {_rows(report.rows)}, recorded at "
              f"position {report.position:,} in {report.seconds:.2f} s")


def verify_archive_command(directory: str, as_json: bool) -> None:
    _pyarrow_installed()
    from ledger.cli.output import count, emit_json
    from ledger.warehouse.verify import verify_archive

    try:
        with store() as db, db.connection() as conn:
            result = verify_archive(conn, directory)
    except LedgerError as error:
        fail(error)
    get_logger().info("archive_verified" if result.ok else "archive_verification_failed",
                      archive_id=result.archive_id, runs=result.runs, files=result.files,
                      differences=len(result.differences))
    if as_json:
        emit_json(result.as_dict())
    else:
        print(f"archive {result.directory}: {count(result.runs, 'run')}, {count(result.files, 'file')}, rows "
              f"{_rows(result.rows)}, positions 1–{result.archived_to_position:,}"
              + (f"; {count(result.unarchived_positions, 'later position')} not archived yet"
                 if result.unarchived_positions else ""))
        print("holds exactly the store's facts" if result.ok else "\n".join(["DIFFERS:", *result.differences]))
    raise typer.Exit(0 if result.ok else 1)


def _rows(rows) -> str:
    """Rows by kind (`usage 1,000, facts 12`) or a total."""
    if isinstance(rows, dict):
        return ", ".join(f"{k} {v:,}" for k, v in rows.items()) or "none"
    return f"{rows:,}"
