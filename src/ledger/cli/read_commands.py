"""Commands over the projections: `ledger project` (bring them up to date) and `ledger export NAME`."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ledger.cli.runtime import choice_argument, fail, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError
from ledger.logging import get_logger

app = typer.Typer()
RISK_EXPORTS = ("adoption", "anomalies")
EXPORT_NAMES = ("customer-month", "customer-month-meter", "late-adjustments", "restatements", "dim-customer",
                "exceptions", "adoption", "anomalies")


@app.command()
def project(
    rebuild: bool = typer.Option(False, "--rebuild", help="recompute from position 0 into new tables, then swap"),
    check: bool = typer.Option(False, "--check", help="compare incremental tables with a rebuild, per table"),
    finance_only: bool = typer.Option(False, "--finance-only",
                                      help="leave the Risk and Sales views (adoption, anomalies) for a later run"),
    as_json: bool = typer.Option(False, "--json", help="print the report (or the refusal) as one JSON object"),
    follow: bool = typer.Option(False, "--follow", help="keep applying new facts as they commit, until SIGTERM"),
    interval: float = typer.Option(5.0, "--interval", help="with --follow: seconds between runs without a wake-up"),
) -> None:
    """Bring every projection up to date, exactly once per fact."""
    from ledger import projector
    from ledger.cli.output import count, emit_json, table

    if follow:
        from ledger.cli.serve_commands import follow as run_follower

        run_follower(interval, as_json)
        return
    try:
        with store() as db, db.connection() as conn:
            if check:
                projector.project(conn, db.settings)
                result = projector.check(conn, db.settings)
                where = store_line(db, conn)
            else:
                report = (projector.rebuild(conn, db.settings) if rebuild
                          else projector.project(conn, db.settings, risk=not finance_only))
                where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if check:
        equal = all(r["equal"] for r in result.values())
        get_logger().info("projections_checked", equal=equal, tables=len(result))
        if as_json:
            emit_json(result)
        else:
            print(where)
            print(table(["table", "incremental", "rebuild", "equal"],
                        [(t, r["incremental"], r["rebuild"], r["equal"]) for t, r in result.items()]))
            differing = sum(not r["equal"] for r in result.values())
            print(f"{count(len(result), 'table')} compared: " + (f"{count(differing, 'table')} differ"
                                                                 if differing else "all equal"))
        raise typer.Exit(0 if equal else 1)
    get_logger().info("projections_rebuilt" if rebuild else "projections_updated", **vars(report))
    if as_json:
        emit_json(vars(report))
        return
    print(where)
    print(f"{report.mode}" + (f" ({report.path})" if report.path else "")
          + f": {count(report.facts_applied, 'fact')} applied, positions {report.from_position:,}→"
          f"{report.to_position:,}, {report.seconds:.2f} s" + (f" ({report.reason})" if report.reason else "")
          + (f"; risk and sales views caught up from position {report.risk_from_position:,}"
             if report.risk_from_position is not None else ""))


@app.command()
def export(
    name: str = typer.Argument(..., help=" | ".join(EXPORT_NAMES)),
    format: str = typer.Option("csv", "--format", help="csv | json | parquet"),
    output: Optional[str] = typer.Option(None, "--output", help="the file to write (required for parquet)"),
) -> None:
    """Print a projection (brought up to date first) as CSV or JSON, or write it as Parquet."""
    from ledger import projector
    from ledger.cli.output import count

    try:
        choice_argument(format, "--format", ("csv", "json", "parquet"))
        choice_argument(name, "NAME", EXPORT_NAMES)
        if format == "parquet" and not output:
            raise InvalidArgumentError("--format", format, "writes a file: give it with --output PATH")
        with store() as db, db.connection() as conn:
            # Finance's exports never wait on the Risk and Sales views, which keep their own checkpoint
            projector.project(conn, db.settings, risk=name in RISK_EXPORTS)
            if sys.stderr.isatty():  # for the person at the terminal; a pipe gets the rows alone
                print(store_line(db, conn), file=sys.stderr)
            if format == "parquet":
                from ledger.warehouse.export import export_parquet

                rows = export_parquet(conn, name, output)
                get_logger().info("export_written", export=name, format=format, output=output, rows=rows)
                print(f"{name}: {count(rows, 'row')} written to {output}")
            else:
                projector.export(conn, name, format, sys.stdout)
    except LedgerError as error:
        fail(error)
