"""The store itself: `ledger migrate`, and `ledger server start|stop|status` for the embedded PostgreSQL."""

from __future__ import annotations

import typer

from ledger.cli.runtime import fail, settings, store
from ledger.errors import ConfigurationError, LedgerError
from ledger.logging import get_logger

app = typer.Typer()
server_app = typer.Typer(name="server", no_args_is_help=True, help="The embedded PostgreSQL under LEDGER_HOME.")
app.add_typer(server_app)
JSON_HELP = "print the result (or the refusal) as one JSON object"


@app.command()
def migrate(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Apply pending migrations, creating the store if there is none (also done by the first ingest)."""
    from ledger.cli.output import emit_json
    from ledger.store.migrate import available_migrations

    try:
        with store(create=True) as db, db.connection():
            target = db.target
    except LedgerError as error:
        fail(error)
    known = len(available_migrations())
    if as_json:
        emit_json({"store": target, "migrations": known})
    else:
        print(f"migrations up to date ({known} known); store: {target}")


def _embedded(*, must_exist: bool):
    from ledger.store.database import Database
    from ledger.store.embedded import EmbeddedServer

    current = settings()
    if current.database_url:
        raise ConfigurationError("LEDGER_DATABASE_URL is set: the ledger uses that server, not an embedded one "
                                 "(unset it to manage the embedded server of LEDGER_HOME)",
                                 setting="LEDGER_DATABASE_URL")
    if must_exist:
        Database(current, create=False).require_home()
    return current, EmbeddedServer(current.home)


@server_app.command("start")
def server_start(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Start the embedded server and keep it running between commands (faster for scripts)."""
    from ledger.cli.output import emit_json

    try:
        current, server = _embedded(must_exist=False)
        conninfo = server.pin()
    except LedgerError as error:
        fail(error)
    get_logger().info("embedded_server_started", home=str(current.home))
    if as_json:
        emit_json({"home": str(current.home), "running": True, "pinned": True, "conninfo": conninfo})
    else:
        print(f"embedded PostgreSQL running for {current.home} ({conninfo}); stop it with `ledger server stop`")


@server_app.command("stop")
def server_stop(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Stop the embedded server of LEDGER_HOME (whoever uses it)."""
    from ledger.cli.output import emit_json

    try:
        current, server = _embedded(must_exist=True)
        stopped = server.stop()
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json({"home": str(current.home), "stopped": stopped})
    else:
        print(f"embedded PostgreSQL of {current.home}: " + ("stopped" if stopped else "was not running"))


@server_app.command("status")
def server_status(as_json: bool = typer.Option(False, "--json", help="print the status as one JSON object")) -> None:
    """Whether the embedded server of LEDGER_HOME runs, is kept running, and for which processes."""
    from ledger.cli.output import count, emit_json, yes_no

    try:
        current, server = _embedded(must_exist=True)
        status = server.status()
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(status)
        return
    users = status["users"]
    print(f"embedded PostgreSQL of {status['home']}: running {yes_no(status['running'])}, kept running "
          f"(`ledger server start`) {yes_no(status['pinned'])}, used by {count(len(users), 'process')}"
          + (f" ({', '.join(map(str, users))})" if users else "") + f"; socket in {status['socket_dir']}")
