"""Migrations: in order, each once, in its own transaction, with a checksum; an edited one is refused by name."""

from __future__ import annotations

import pytest

from ledger.errors import MigrationError
from ledger.store.migrate import Migration, available_migrations, migrate


def test_shipped_migrations_are_numbered_in_order_and_applied_once(conn):
    names = [m.name for m in available_migrations()]
    assert names == sorted(names) and names[0].startswith("0001_")
    recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert recorded == names
    assert migrate(conn) == []  # nothing left to apply


def test_an_edited_applied_migration_is_refused_by_name(conn):
    extra = Migration(9001, "9001_create_scratch.sql", "CREATE TABLE scratch_a (x int);")
    assert migrate(conn, [*available_migrations(), extra]) == ["9001_create_scratch.sql"]
    edited = Migration(9001, "9001_create_scratch.sql", "CREATE TABLE scratch_a (x int, y int);")
    with pytest.raises(MigrationError, match="9001_create_scratch.sql was edited after it was applied"):
        migrate(conn, [*available_migrations(), edited])


def test_a_failing_migration_leaves_nothing_half_applied(conn):
    broken = Migration(9002, "9002_broken.sql", "CREATE TABLE scratch_b (x int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match="9002_broken.sql failed"):
        migrate(conn, [*available_migrations(), broken])
    assert conn.execute("SELECT to_regclass('scratch_b')").fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM schema_migrations WHERE version = 9002").fetchone()[0] == 0
