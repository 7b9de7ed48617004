"""The `ledger` command: builds a command from its arguments and hands it to one handler."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator, Optional

import typer

import psycopg

from ledger.errors import DatabaseUnavailableError, LedgerError
from ledger.logging import configure_logging, get_logger
from ledger.settings import Settings
from ledger.store.database import Database

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A finance-grade, event-sourced usage-billing ledger.")
credit_app = typer.Typer(no_args_is_help=True, help="Finance's credits.")
period_app = typer.Typer(no_args_is_help=True, help="Period closes.")
quarantine_app = typer.Typer(no_args_is_help=True, help="Rejected records.")
server_app = typer.Typer(no_args_is_help=True, help="The embedded PostgreSQL under LEDGER_HOME.")
trace_app = typer.Typer(no_args_is_help=True, help="Trace a number back to its facts.")
app.add_typer(credit_app, name="credit")
app.add_typer(period_app, name="period")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(server_app, name="server")
app.add_typer(trace_app, name="trace")


def now() -> datetime:
    return datetime.now(timezone.utc)


@contextmanager
def database() -> Iterator[Database]:
    db = Database(Settings.from_env())
    try:
        yield db
    except psycopg.OperationalError as error:
        # the connection was lost mid-command: what committed stands, the open transaction rolled back
        lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
        raise DatabaseUnavailableError(db.target, (lines[0] if lines else "connection lost") +
                                       "; committed batches stand, re-run to finish") from None
    finally:
        db.close()


def fail(error: LedgerError) -> None:
    print(f"error: {error}", file=sys.stderr)
    raise typer.Exit(error.exit_code)


@app.callback()
def main() -> None:
    """A finance-grade, event-sourced usage-billing ledger."""
    configure_logging()


def run() -> None:
    try:
        app()
    except LedgerError as error:  # raised outside a command body (e.g. settings)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


# -- ingest ---------------------------------------------------------------------------------
@app.command()
def ingest(
    kind: str = typer.Argument(..., help="usage | identities | attributes | prices | invoices | credits"),
    file: str = typer.Argument(..., help="a path, or - for standard input; gzip is detected"),
    format: Optional[str] = typer.Option(None, "--format", help="ndjson | csv | cloudevents (default: from the extension)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Append a file's records as facts; exit 3 when any record was quarantined."""
    from ledger.cli.output import IngestProgress, emit_json
    from ledger.commands.ingest import INGEST_KINDS, ingest_file

    if kind not in INGEST_KINDS:
        print(f"error: unknown kind {kind!r} (one of {', '.join(INGEST_KINDS)})", file=sys.stderr)
        raise typer.Exit(2)
    try:
        with database() as db:
            import os

            size = os.path.getsize(file) if file != "-" and os.path.isfile(file) else None
            with IngestProgress(f"ingest {kind}", size, enabled=not as_json) as progress:
                report = ingest_file(db, kind, file, format, now=now(), progress=progress)
    except LedgerError as error:
        fail(error)
    get_logger().info(f"{kind}_ingested", **{k: v for k, v in report.as_dict().items() if k != "refusals"})
    if as_json:
        emit_json(report.as_dict())
    else:
        print(f"{kind} from {report.file} ({report.format}): read {report.read}, appended {report.appended}, "
              f"duplicates {report.duplicates}, conflicts {report.conflicts}, quarantined {report.quarantined}"
              f" in {report.seconds:.2f}s ({report.events_per_second:,.0f} records/s)")
        if report.quarantined:
            print("see `ledger quarantine list` for the rejected records and their reasons")
        if report.empty:
            print(f"the file holds no records: {report.file} is empty or only blank lines")
    raise typer.Exit(report.exit_code)


# -- Finance's commands ------------------------------------------------------------------------
@credit_app.command("issue")
def credit_issue(
    customer: str = typer.Option(..., "--customer"),
    amount_cents: int = typer.Option(..., "--amount-cents"),
    reason: str = typer.Option(..., "--reason", help="late_usage | service_issue | goodwill | billing_error | other"),
    idempotency_key: str = typer.Option(..., "--idempotency-key"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person issuing the credit (required)"),
    invoice: Optional[str] = typer.Option(None, "--invoice"),
    memo: Optional[str] = typer.Option(None, "--memo"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Issue a credit: validated, idempotent, attributed to its actor."""
    from ledger.cli.output import emit_json
    from ledger.commands.credits import issue_credit
    from ledger.domain.commands import IssueCredit
    from ledger.ingest.records import RecordContext

    command = IssueCredit(customer, amount_cents, reason, actor, idempotency_key, invoice, memo)
    try:
        with database() as db, db.connection() as conn:
            moment = now()
            result = issue_credit(conn, command, now=moment,
                                  ctx=RecordContext("ledger credit issue", moment, db.settings.currency),
                                  provenance={"issued_by": actor})
    except LedgerError as error:
        get_logger().info("credit_refused", rule=getattr(error, "rule", None), customer_id=customer,
                          idempotency_key=idempotency_key, actor=actor)
        fail(error)
    get_logger().info("credit_issued" if result.created else "credit_repeated", position=result.position,
                      credit_id=idempotency_key, amount_cents=amount_cents, actor=actor)
    credit = {k: result.credit.get(k) for k in ("credit_id", "customer_id", "invoice_id", "amount_cents", "reason",
                                                "memo", "actor", "issued_at")}
    if as_json:
        emit_json({**credit, "position": result.position, "created": result.created})
    else:
        verb = "issued" if result.created else "already issued (idempotent repeat; nothing appended)"
        print(f"credit {credit['credit_id']} {verb}: {credit['amount_cents']} cents to {credit['customer_id']}"
              f"{' against ' + credit['invoice_id'] if credit['invoice_id'] else ''}, reason {credit['reason']}, "
              f"by {credit['actor']} at {credit['issued_at']} (position {result.position})")


@period_app.command("close")
def period_close(
    month: str = typer.Argument(..., help="YYYY-MM"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person closing the period (required)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Close a month: later usage of it becomes a late adjustment."""
    from ledger.cli.output import emit_json
    from ledger.commands.periods import close_period
    from ledger.domain.commands import ClosePeriod
    from ledger.ingest.records import RecordContext

    try:
        with database() as db, db.connection() as conn:
            moment = now()
            result = close_period(conn, ClosePeriod(month, actor), now=moment,
                                  ctx=RecordContext("ledger period close", moment, db.settings.currency))
    except LedgerError as error:
        get_logger().info("period_close_refused", month=month, rule=getattr(error, "rule", None), actor=actor)
        fail(error)
    get_logger().info("period_closed" if result.created else "period_already_closed", month=month,
                      position=result.position, actor=result.actor)
    if as_json:
        emit_json({"month": month, "position": result.position, "actor": result.actor,
                   "closed_at": str(result.closed_at), "created": result.created,
                   "appended": 1 if result.created else 0})
    elif result.created:
        print(f"closed {month} at position {result.position} by {result.actor}")
    else:
        print(f"{month} was already closed at position {result.position} by {result.actor} "
              f"({result.closed_at}); nothing appended")


# -- the quarantine -------------------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(
    format: str = typer.Option("table", "--format", help="table | json"),
    kind: Optional[str] = typer.Option(None, "--kind"),
    limit: int = typer.Option(1000, "--limit"),
) -> None:
    """The quarantined records, with file, line and reason."""
    from ledger.cli.output import emit_json, table
    from ledger.store.quarantine import list_quarantine

    try:
        with database() as db, db.connection() as conn:
            rows = list_quarantine(conn, kind=kind, limit=limit)
    except LedgerError as error:
        fail(error)
    if format == "json":
        emit_json(rows)
        return
    print(table(["id", "kind", "file", "line", "field", "reason", "raw"],
                [(r["quarantine_id"], r["kind"], r["source_file"], r["line_number"], r["field"], r["reason"],
                  (r["raw_text"][:60] + "…") if len(r["raw_text"]) > 60 else r["raw_text"]) for r in rows]))
    print(f"{len(rows)} quarantined record(s)")


# -- the store --------------------------------------------------------------------------------------
@app.command()
def migrate() -> None:
    """Apply pending migrations (also done automatically on first use)."""
    from ledger.store.migrate import available_migrations

    try:
        with database() as db, db.connection():
            pass
    except LedgerError as error:
        fail(error)
    print(f"migrations up to date ({len(available_migrations())} known)")


@server_app.command("start")
def server_start() -> None:
    """Start the embedded server and keep it running between commands (for speed)."""
    from ledger.store.embedded import EmbeddedServer

    settings = Settings.from_env()
    try:
        conninfo = EmbeddedServer(settings.home).pin()
    except LedgerError as error:
        fail(error)
    print(f"embedded PostgreSQL running for {settings.home} ({conninfo}); stop it with `ledger server stop`")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded server."""
    from ledger.store.embedded import EmbeddedServer

    settings = Settings.from_env()
    try:
        stopped = EmbeddedServer(settings.home).stop()
    except LedgerError as error:
        fail(error)
    print("stopped" if stopped else "not running")


@server_app.command("status")
def server_status() -> None:
    from ledger.cli.output import emit_json
    from ledger.store.embedded import EmbeddedServer

    try:
        emit_json(EmbeddedServer(Settings.from_env().home).status())
    except LedgerError as error:
        fail(error)


from ledger.cli import read_commands  # noqa: E402,F401  (registers project/export/trace/verify/demo)
from ledger.cli import risk_commands  # noqa: E402,F401  (registers anomalies)
from ledger.cli.calc_commands import calc_app  # noqa: E402
app.add_typer(calc_app, name="calc")
from ledger.cli import anchor_commands  # noqa: E402,F401  (registers anchor)
from ledger.cli import archive_commands, consume_commands  # noqa: E402,F401  (registers archive and consume)
from ledger.cli import serve_commands  # noqa: E402,F401  (registers serve)
from ledger.cli.access_commands import access_app  # noqa: E402
from ledger.cli.token_commands import token_app  # noqa: E402

app.add_typer(token_app, name="token")
app.add_typer(access_app, name="access")
