"""Test fixtures: real PostgreSQL, one isolated database per test.

The server is the embedded one (started once per test session under a temporary LEDGER_HOME) unless
LEDGER_DATABASE_URL names another; CI runs the suite both ways. Every test gets a fresh database
cloned from a migrated template, so tests never see each other's facts.

Facts go in the way `ledger` appends them: through the `ledger` fixture (the command), or `replay`
(the real ingest and commands in process, tests/scenarios.py). `example_db_url` is a fresh database
holding the basic example scenario (tests/fixtures/examples/basic), replayed once per session and cloned.
Tests marked `slow` are left out of the fast lane, `pytest -m "not slow"`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import psycopg
import pytest

# Import every module the commands load lazily before any test freezes the clock: a module first
# imported under freezegun (pydantic's schema builder among them) would keep its fake datetime class.
import ledger.audit.trace  # noqa: F401
import ledger.cli.main  # noqa: F401
import ledger.commands.credits  # noqa: F401
import ledger.commands.ingest  # noqa: F401
import ledger.commands.periods  # noqa: F401
import ledger.ingest.contracts  # noqa: F401
import ledger.projector  # noqa: F401
from ledger.settings import Settings
from ledger.store.database import Database
from ledger.store.embedded import EmbeddedServer
from ledger.store.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "fixtures" / "examples" / "basic"  # a copy of ../shared/examples/basic (.ci/run checks)
LEDGER_BIN = str(Path(sys.executable).with_name("ledger"))


def with_dbname(conninfo: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory, worker_id) -> str:
    """A conninfo to a maintenance database on the test server."""
    external = os.environ.get("LEDGER_DATABASE_URL")
    if external:
        yield with_dbname(external, "postgres")
        return
    home = Path(tempfile.mkdtemp(prefix=f"ledger-test-{worker_id}-"))
    server = EmbeddedServer(home)
    conninfo = server.pin()
    yield with_dbname(conninfo, "postgres")
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin) -> str:
    """A migrated database to clone: creating a database from it is much faster than migrating."""
    name = f"ledger_tpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(with_dbname(pg_admin, name), autocommit=True) as conn:
        migrate(conn)
    yield name
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clone_database(pg_admin: str, template: str) -> str:
    name = f"ledger_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_databases(pg_admin: str, names: list[str]) -> None:
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_admin, template_db) -> str:
    """A fresh, migrated database for this test alone."""
    name = clone_database(pg_admin, template_db)
    yield with_dbname(pg_admin, name)
    drop_databases(pg_admin, [name])


@pytest.fixture
def fresh_db_url(pg_admin, template_db) -> Callable[[], str]:
    """More fresh, migrated databases for this test (one per hypothesis example, say); dropped at its end."""
    names: list[str] = []

    def create() -> str:
        names.append(clone_database(pg_admin, template_db))
        return with_dbname(pg_admin, names[-1])

    yield create
    drop_databases(pg_admin, names)


@pytest.fixture(scope="session")
def example_template(pg_admin, template_db, tmp_path_factory) -> str:
    """A database holding the basic example scenario, replayed once through the real ingest and commands."""
    from tests.scenarios import Replay

    name = clone_database(pg_admin, template_db)
    with Replay(with_dbname(pg_admin, name), tmp_path_factory.mktemp("example")) as feeding:
        feeding.steps()
    yield name
    drop_databases(pg_admin, [name])


@pytest.fixture
def example_db_url(pg_admin, example_template) -> str:
    """A fresh database holding the basic example scenario (no projections yet), for this test alone."""
    name = clone_database(pg_admin, example_template)
    yield with_dbname(pg_admin, name)
    drop_databases(pg_admin, [name])


@pytest.fixture
def replay(db_url, tmp_path):
    """The real ingest and commands, in process, on this test's database (tests/scenarios.py)."""
    from tests.scenarios import Replay

    work = tmp_path / "replay"
    work.mkdir()
    with Replay(db_url, work) as feeding:
        yield feeding


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(database_url=db_url, home=tmp_path / "home")


@pytest.fixture
def db(settings) -> Database:
    database = Database(settings)
    yield database
    database.close()


@pytest.fixture
def conn(db_url) -> psycopg.Connection:
    """The test's own look into its database (a superuser, like the tables' owner)."""
    with psycopg.connect(db_url, autocommit=True, application_name="pytest") as connection:
        yield connection


def ledger_runner(database_url: str, home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Runs the `ledger` command against one database."""
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_HOME": str(home)}

    def run(*args: str, input: str | bytes | None = None, check_exit: int | None = None,
            extra_env: dict | None = None) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        result = subprocess.run([LEDGER_BIN, *args], env={**env, **(extra_env or {})}, input=input,
                                capture_output=True, text=text, timeout=600)
        if check_exit is not None:
            assert result.returncode == check_exit, (result.returncode, result.stdout, result.stderr)
        return result

    return run


@pytest.fixture
def ledger(db_url, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the `ledger` command against this test's database."""
    return ledger_runner(db_url, tmp_path / "home")


@pytest.fixture
def example_ledger(example_db_url, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the `ledger` command against a fresh database holding the basic example scenario."""
    return ledger_runner(example_db_url, tmp_path / "home")


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(data)
    return path
