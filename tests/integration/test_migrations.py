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


TYPED_FACT_ROWS = ("link_fact_rows", "attribute_fact_rows", "invoice_fact_rows", "invoice_line_rows")


def test_facts_stored_before_their_typed_rows_existed_are_typed_by_the_migration(pg_admin, example_db_url):
    """A store from before migration 0080 gets the typed rows its facts' appends would have written."""
    import uuid

    import psycopg

    from tests.conftest import drop_databases, with_dbname

    older = f"ledger_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{older}"')
    try:
        with psycopg.connect(example_db_url) as source, \
                psycopg.connect(with_dbname(pg_admin, older), autocommit=True) as target:
            migrate(target, [m for m in available_migrations() if m.version < 80])
            assert target.execute("SELECT to_regclass('link_fact_rows')").fetchone()[0] is None
            with source.cursor().copy("COPY ledger_events TO STDOUT (FORMAT BINARY)") as out, \
                    target.cursor().copy("COPY ledger_events FROM STDIN (FORMAT BINARY)") as into:
                for block in out:
                    into.write(block)
            assert "0080_type_links_attributes_and_invoices.sql" in migrate(target)
            for table in TYPED_FACT_ROWS:
                query = f"SELECT * FROM {table} ORDER BY 1, 2"
                expected = source.execute(query).fetchall()
                assert expected and target.execute(query).fetchall() == expected, table
    finally:
        drop_databases(pg_admin, [older])
