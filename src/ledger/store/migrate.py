"""Migrations: numbered SQL files applied in order, each once, in its own transaction, with its checksum."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

import psycopg

from ledger.errors import MigrationError

FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_KEY = 7_231_001  # pg_advisory_lock key: one migrator at a time per database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    folder = resources.files("ledger.sql") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number: {versions}")
    return found


def is_migrated(conn: psycopg.Connection) -> bool:
    """Whether the database holds a ledger store: the migrations table exists."""
    return conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]


def migrate(conn: psycopg.Connection, migrations: Iterable[Migration] | None = None) -> list[str]:
    """Apply every pending migration; refuse if an applied one was edited. Returns the names applied."""
    migrations = list(available_migrations() if migrations is None else migrations)
    previous_autocommit = conn.autocommit
    conn.autocommit = True
    applied_now: list[str] = []
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                version: (name, checksum)
                for version, name, checksum in conn.execute("SELECT version, name, checksum FROM schema_migrations")
            }
            for migration in migrations:
                if migration.version in applied:
                    name, checksum = applied[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was edited after it was applied "
                            f"(recorded checksum {checksum[:12]}…, file now {migration.checksum[:12]}…); "
                            "add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    try:
                        conn.execute(migration.sql)
                    except psycopg.Error as error:
                        raise MigrationError(f"migration {migration.name} failed: {error}".strip()) from None
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    finally:
        conn.autocommit = previous_autocommit
    return applied_now
