"""Where the database is, and how to connect: LEDGER_DATABASE_URL when set, else the embedded server."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from ledger.errors import DatabaseUnavailableError, LedgerError, StoreNotFoundError
from ledger.settings import Settings
from ledger.store.embedded import EmbeddedServer


class Database:
    """A handle on the ledger's database: resolves the server once, opens connections on demand.

    With `create=False` (commands that only read) a missing store is an error naming LEDGER_HOME or
    LEDGER_DATABASE_URL: no embedded cluster is initialised and no database is migrated from nothing.
    """

    def __init__(self, settings: Settings, *, create: bool = True):
        self.settings = settings
        self.create = create
        self._conninfo: str | None = None
        self._embedded: EmbeddedServer | None = None
        self._migrated = False

    @property
    def conninfo(self) -> str:
        if self._conninfo is None:
            if self.settings.database_url:
                self._conninfo = self.settings.database_url
            else:
                if not self.create:
                    self.require_home()
                self._embedded = EmbeddedServer(self.settings.home)
                self._conninfo = self._embedded.acquire()
        return self._conninfo

    def require_home(self) -> None:
        """Refuse a LEDGER_HOME that holds no embedded store (a mistyped path must not become a new store)."""
        home = self.settings.home
        if not home.is_dir():
            raise StoreNotFoundError("LEDGER_HOME", str(home), "no such directory (a command that only reads never "
                                     "creates a store; check the path, or ingest into it first)")
        if not (home / "pgdata" / "PG_VERSION").is_file():
            raise StoreNotFoundError("LEDGER_HOME", str(home), "the directory holds no store (no pgdata/PG_VERSION; "
                                     "check the path, or ingest into it first)")

    @property
    def target(self) -> str:
        """A printable name of the server, without credentials, and the setting that chose it."""
        if self.settings.database_url:
            return f"{self.server} (LEDGER_DATABASE_URL)"
        return f"embedded PostgreSQL in {self.settings.home} (LEDGER_HOME)"

    @property
    def server(self) -> str:
        if self.settings.database_url:
            try:
                info = psycopg.conninfo.conninfo_to_dict(self.settings.database_url)
            except psycopg.ProgrammingError:
                return "an unparsable URL"
            return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return str(self.settings.home)

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.conninfo, autocommit=autocommit, connect_timeout=10,
                                   application_name="ledger")
        except psycopg.ProgrammingError as error:  # a URL libpq cannot parse
            raise DatabaseUnavailableError(self.target, str(error).strip().splitlines()[0]) from None
        except psycopg.OperationalError as error:
            lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
            raise DatabaseUnavailableError(self.target, "; ".join(lines) or "connection failed") from None
        if not self._migrated:
            from ledger.store.migrate import is_migrated, migrate

            if not self.create and not is_migrated(conn):
                conn.close()
                raise StoreNotFoundError("LEDGER_DATABASE_URL" if self.settings.database_url else "LEDGER_HOME",
                                         self.server, "the database holds no ledger store (never migrated; run "
                                         "`ledger migrate` or an ingest to create one)")
            migrate(conn)
            self._migrated = True
        return conn

    @contextmanager
    def connection(self, *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
        conn = self.connect(autocommit=autocommit)
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        """Release the embedded server; a server that will not stop is logged, never raised over the command's
        own outcome (a server that died mid-command would otherwise hide the real error behind pg_ctl's)."""
        if self._embedded is not None:
            try:
                self._embedded.release()
            except LedgerError as error:
                from ledger.logging import get_logger

                get_logger().warning("embedded_server_not_stopped", reason=str(error))
