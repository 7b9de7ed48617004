"""project / rebuild / check as runs: exactly once under concurrency, atomic rebuild, export without projecting."""

from __future__ import annotations

import io
import threading

import psycopg
import pytest

from ledger import projector
from ledger.projector import engine
from tests.scenarios import example_steps, head_position


@pytest.fixture()
def example_dsn(example_db_url):
    return example_db_url


@pytest.fixture()
def example_head(example_dsn):
    """The last position of the example scenario's store."""
    with psycopg.connect(example_dsn) as conn:
        return head_position(conn)


def test_concurrent_projects_apply_each_fact_once(example_dsn):
    with psycopg.connect(example_dsn) as conn:
        conn.execute("CREATE SCHEMA ledger_proj_hold")  # nothing: just proves the connection works
        conn.rollback()
    reports, errors = [], []

    def run():
        try:
            with psycopg.connect(example_dsn) as conn:
                reports.append(projector.project(conn))
        except Exception as e:  # pragma: no cover - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.mode for r in reports) == ["noop", "noop", "rebuild"]
    with psycopg.connect(example_dsn) as conn:
        assert sum(r.facts_applied for r in reports) == facts_in_store(conn) > 500


def test_killed_rebuild_leaves_the_old_tables_serving(example_dsn, example_head, monkeypatch):
    with psycopg.connect(example_dsn) as conn:
        projector.project(conn)
        before = conn.execute("SELECT count(*), sum(balance_cents) FROM ledger_proj.customer_month").fetchone()
        conn.commit()

        real_build = engine.build

        def dies_midway(c, schema, head, *options, **named):
            real_build(c, schema, head, *options, **named)
            raise KeyboardInterrupt("killed before the swap")

        monkeypatch.setattr(engine, "build", dies_midway)
        with pytest.raises(KeyboardInterrupt):
            projector.rebuild(conn)
        monkeypatch.setattr(engine, "build", real_build)
        after = conn.execute("SELECT count(*), sum(balance_cents) FROM ledger_proj.customer_month").fetchone()
        assert after == before
        assert conn.execute("SELECT to_regnamespace('ledger_proj_next')").fetchone()[0] is None
        conn.commit()
        # a leftover next schema (a rebuild killed after committing it) is dropped by the next rebuild
        conn.execute("CREATE SCHEMA ledger_proj_next")
        conn.execute("CREATE TABLE ledger_proj_next.junk (x int)")
        conn.commit()
        report = projector.rebuild(conn)
        assert report.mode == "rebuild" and report.to_position == example_head
        assert conn.execute("SELECT count(*), sum(balance_cents) FROM ledger_proj.customer_month").fetchone() == before
        # the views built beside were committed by their own connection; the killed build left them, the next
        # build's side dropped them first
        assert conn.execute("SELECT to_regnamespace('ledger_proj_next_beside')").fetchone()[0] is None


def test_a_failed_build_beside_fails_the_rebuild_and_the_old_tables_serve(example_dsn, monkeypatch):
    """The views built on the second connection fail: the rebuild raises their error, swaps nothing, leaves no
    schema; and when the main build fails instead, the side's statement is cancelled and its work rolled back."""
    from ledger.projector import build as build_module

    with psycopg.connect(example_dsn) as conn:
        projector.project(conn)
        before = conn.execute("SELECT count(*), sum(units) FROM ledger_proj.usage_daily").fetchone()
        conn.commit()
        real_fill = build_module._fill

        def side_fails(c, target, models, *rest):
            if target.schema.endswith("_beside"):
                raise RuntimeError("the side build broke")
            return real_fill(c, target, models, *rest)

        monkeypatch.setattr(build_module, "_fill", side_fails)
        with pytest.raises(RuntimeError, match="the side build broke"):
            projector.rebuild(conn)

        def main_fails(c, target, models, *rest):
            if not target.schema.endswith("_beside"):
                c.execute("SELECT pg_sleep(0.3)")  # the side is at work meanwhile
                raise RuntimeError("the main build broke")
            return real_fill(c, target, models, *rest)

        monkeypatch.setattr(build_module, "_fill", main_fails)
        with pytest.raises(RuntimeError, match="the main build broke"):
            projector.rebuild(conn)
        monkeypatch.setattr(build_module, "_fill", real_fill)
        assert conn.execute("SELECT count(*), sum(units) FROM ledger_proj.usage_daily").fetchone() == before
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger_proj_%'").fetchall()
        assert schemas == []
        conn.commit()


def test_rebuild_then_incremental_then_check(example_dsn):
    with psycopg.connect(example_dsn) as conn:
        assert projector.rebuild(conn).mode == "rebuild"
        assert projector.project(conn).mode == "noop"
        assert all(r["equal"] for r in projector.check(conn).values())
        assert conn.execute("SELECT to_regnamespace('ledger_proj_check')").fetchone()[0] is None


def test_export_does_not_project(example_dsn):
    with psycopg.connect(example_dsn) as conn:
        from ledger.errors import NotFoundError

        with pytest.raises(NotFoundError):
            projector.export(conn, "customer-month", "csv", io.StringIO())
        assert conn.execute("SELECT to_regnamespace('ledger_proj')").fetchone()[0] is None


def test_facts_appended_while_projected_wait_for_the_next_run(replay):
    steps = example_steps()
    with psycopg.connect(replay.database.conninfo) as conn:
        replay.steps(steps[:5])
        middle = head_position(conn)
        first = projector.project(conn)
        replay.steps(steps[5:])
        head = head_position(conn)
        second = projector.project(conn)
        assert middle < head
        assert (first.to_position, second.from_position, second.to_position) == (middle, middle, head)
        assert first.facts_applied + second.facts_applied == facts_in_store(conn)


def facts_in_store(conn: psycopg.Connection) -> int:
    """Every fact the projector applies: a usage row, or an events row of another kind (not a usage batch's)."""
    return conn.execute("SELECT (SELECT count(*) FROM usage_facts) + (SELECT count(*) FROM ledger_events"
                        " WHERE topic <> 'ledger.UsageBatchRecorded')").fetchone()[0]


@pytest.mark.parametrize("older", ["other definitions", "no definitions recorded"])
def test_read_models_built_by_other_projection_files_are_rebuilt(example_dsn, example_head, older):
    with psycopg.connect(example_dsn) as conn:
        projector.project(conn)
        conn.commit()
        if older == "other definitions":
            conn.execute("UPDATE ledger_proj.definition SET sha256 = 'sha256 of another version'")
        else:  # read models of a version that recorded none
            conn.execute("DROP TABLE ledger_proj.definition")
        conn.commit()
        report = projector.project(conn)
        assert (report.mode, report.from_position, report.to_position) == ("rebuild", 0, example_head)
        assert report.reason == "the projection files changed since the read models were built"
        assert engine.built_by_current_definitions(conn, "ledger_proj")
        assert projector.project(conn).mode == "noop"


def test_a_build_writes_every_table_in_the_shape_its_create_section_declares(example_dsn):
    """Some fills replace their table by CREATE TABLE AS (which may run in parallel): the result must keep the
    columns, types, nullability and storage options that @create declares, which the increments rely on."""
    from ledger.projector import runner
    from ledger.projector.templates import Target

    def shape(conn, schema):
        columns = conn.execute(
            "SELECT table_name, ordinal_position, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = ANY(%s) ORDER BY 1, 2", (schema, list(engine.TABLES))).fetchall()
        options = conn.execute(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r' ORDER BY 1",
            (schema, list(engine.TABLES))).fetchall()
        return columns, options

    with psycopg.connect(example_dsn) as conn:
        head = runner._head_position(conn)
        engine.build(conn, "shape_built", head)
        conn.execute("CREATE SCHEMA shape_declared")
        for name in engine.TABLES:
            engine._run(conn, Target("shape_declared", head), name, "create")
        built, declared = shape(conn, "shape_built"), shape(conn, "shape_declared")
        assert len(declared[0]) > 100 and {r[0] for r in declared[0]} == set(engine.TABLES)
        assert built == declared
        conn.rollback()
