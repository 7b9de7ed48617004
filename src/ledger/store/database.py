"""Where the database is, and how to connect: LEDGER_DATABASE_URL when set, else the embedded server."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from ledger.errors import DatabaseUnavailableError, LedgerError
from ledger.settings import Settings
from ledger.store.embedded import EmbeddedServer


class Database:
    """A handle on the ledger's database: resolves the server once, opens connections on demand."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._conninfo: str | None = None
        self._embedded: EmbeddedServer | None = None
        self._migrated = False

    @property
    def conninfo(self) -> str:
        if self._conninfo is None:
            if self.settings.database_url:
                self._conninfo = self.settings.database_url
            else:
                self._embedded = EmbeddedServer(self.settings.home)
                self._conninfo = self._embedded.acquire()
        return self._conninfo

    @property
    def target(self) -> str:
        """A printable name of the server, without credentials."""
        if self.settings.database_url:
            info = psycopg.conninfo.conninfo_to_dict(self.settings.database_url)
            return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"embedded PostgreSQL in {self.settings.home}"

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.conninfo, autocommit=autocommit, connect_timeout=10,
                                   application_name="ledger")
        except psycopg.OperationalError as error:
            lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
            raise DatabaseUnavailableError(self.target, lines[-1] if lines else "connection failed") from None
        if not self._migrated:
            from ledger.store.migrate import migrate

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
