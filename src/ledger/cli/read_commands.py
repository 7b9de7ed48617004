"""Commands that read projections: project, export (trace, verify and demo register here too)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ledger.cli.main import app, database, fail
from ledger.errors import LedgerError
from ledger.logging import get_logger

RISK_EXPORTS = ("adoption", "anomalies")
EXPORT_NAMES = "customer-month | customer-month-meter | late-adjustments | restatements | dim-customer | exceptions | adoption | anomalies"


@app.command()
def project(
    rebuild: bool = typer.Option(False, "--rebuild", help="recompute from position 0 into new tables, then swap"),
    check: bool = typer.Option(False, "--check", help="compare incremental tables with a rebuild, per table"),
    finance_only: bool = typer.Option(False, "--finance-only",
                                      help="leave the Risk and Sales views (adoption, anomalies) for a later run"),
    as_json: bool = typer.Option(False, "--json"),
    follow: bool = typer.Option(False, "--follow", help="keep applying new facts as they commit, until SIGTERM"),
    interval: float = typer.Option(5.0, "--interval", help="with --follow: seconds between runs without a wake-up"),
) -> None:
    """Bring every projection up to date, exactly once per fact."""
    from ledger import projector
    from ledger.cli.output import emit_json, table

    if follow:
        from ledger.cli.serve_commands import follow as run_follower

        return run_follower(interval, as_json)

    try:
        with database() as db, db.connection() as conn:
            if check:
                projector.project(conn, db.settings)
                result = projector.check(conn, db.settings)
                if as_json:
                    emit_json(result)
                else:
                    print(table(["table", "incremental", "rebuild", "equal"],
                                [(t, r["incremental"], r["rebuild"], r["equal"]) for t, r in result.items()]))
                equal = all(r["equal"] for r in result.values())
                get_logger().info("projections_checked", equal=equal, tables=len(result))
                raise typer.Exit(0 if equal else 1)
            report = (projector.rebuild(conn, db.settings) if rebuild
                      else projector.project(conn, db.settings, risk=not finance_only))
    except LedgerError as error:
        fail(error)
    get_logger().info("projections_rebuilt" if rebuild else "projections_updated", **vars(report))
    if as_json:
        emit_json(vars(report))
    else:
        print(f"{report.mode}" + (f" ({report.path})" if report.path else "")
              + f": {report.facts_applied} facts applied, positions {report.from_position}→"
              f"{report.to_position}, {report.seconds:.2f}s" + (f" ({report.reason})" if report.reason else "")
              + (f"; risk and sales views caught up from position {report.risk_from_position}"
                 if report.risk_from_position is not None else ""))


@app.command()
def export(
    name: str = typer.Argument(..., help=EXPORT_NAMES),
    format: str = typer.Option("csv", "--format", help="csv | json | parquet"),
    output: Optional[str] = typer.Option(None, "--output", help="the file to write (required for parquet)"),
) -> None:
    """Print a projection (brought up to date first) as CSV or JSON, or write it as Parquet."""
    from ledger import projector

    if format not in ("csv", "json", "parquet"):
        print(f"error: unknown format {format!r} (csv, json or parquet)", file=sys.stderr)
        raise typer.Exit(2)
    if format == "parquet" and not output:
        print("error: --format parquet writes a file: give it with --output PATH", file=sys.stderr)
        raise typer.Exit(2)
    try:
        with database() as db, db.connection() as conn:
            # Finance's exports never wait on the Risk and Sales views, which keep their own checkpoint
            projector.project(conn, db.settings, risk=name in RISK_EXPORTS)
            if format == "parquet":
                from ledger.warehouse.export import export_parquet

                rows = export_parquet(conn, name, output)
                get_logger().info("export_written", export=name, format=format, output=output, rows=rows)
            else:
                projector.export(conn, name, format, sys.stdout)
    except LedgerError as error:
        fail(error)
    except KeyError:
        print(f"error: unknown export {name!r} (one of {EXPORT_NAMES})", file=sys.stderr)
        raise typer.Exit(2)
from ledger.cli import audit_commands  # noqa: E402,F401  (registers verify and demo)
from ledger.cli import trace_commands  # noqa: E402,F401  (registers trace invoice / trace customer)
