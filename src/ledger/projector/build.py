"""The full build: every declared read model filled from position 0 into a schema (rebuild, check)."""

from __future__ import annotations

import threading
from typing import Callable

import psycopg
from psycopg import sql

from .models import read_models
from .risk import Thresholds
from .steps import drop_stage, run_section, run_steps
from .templates import FULL, CutoffCase, Target, definition_digest, sections


class ClosesOf:
    """Renders `{cutoff[t]}` and `{cutoff.first}` from SCHEMA's period_close, read when first rendered (after
    period_close is built: every model that renders it depends on period_close)."""

    def __init__(self, conn: psycopg.Connection, schema: str):
        self.conn, self.schema, self.case = conn, schema, None

    def _closes(self) -> CutoffCase:
        if self.case is None:
            self.case = CutoffCase(self.conn.execute(sql.SQL("SELECT month_start, close_position FROM {}.period_close")
                                                     .format(sql.Identifier(self.schema))).fetchall())
        return self.case

    def __getitem__(self, t: str) -> str:
        return self._closes()[t]

    @property
    def first(self) -> int:
        return self._closes().first


# Built on a second connection beside Finance's chain when the caller gives one (`beside`): the Risk and Sales views
# that read no Finance table but link_range, which that connection builds again for itself (1.6-2.0 s on the wide
# shape, against 6-7 s for the three views). On two cores a build otherwise keeps one busy: most of its statements
# are INSERT ... SELECT, which PostgreSQL runs in one process.
BESIDE = ("usage_daily", "usage_first_day", "anomalies")
BESIDE_INPUTS = ("link_range",)


def build(conn: psycopg.Connection, schema: str, head: int, thresholds: Thresholds = Thresholds(),
          work_mem: str = "1GB", groups: tuple[str, ...] = ("finance", "risk"),
          beside: Callable[[], psycopg.Connection] | None = None) -> None:
    """Creates SCHEMA and fills every read model of GROUPS from position 0 through HEAD (inside the caller's
    transaction), walking the declarations in dependency order.

    WORK_MEM (LEDGER_BUILD_WORK_MEM) bounds each sort and hash table of the build: the day-grain aggregate of
    usage_daily sorts about one row per usage fact, and spills to disk below about 100 bytes per fact.
    GROUPS other than both (Finance's alone, say) is for measuring: the checkpoints then cover only those.
    BESIDE, a function opening another connection to the same database, builds the BESIDE views on it at the same
    time, committed into a schema of their own that this transaction then takes over (their tables moved into
    SCHEMA); the caller passes it only when every fact through HEAD is committed (another connection sees them).
    """
    target = Target(schema, head)
    _session(conn, work_mem)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    drop_stage(conn)
    models = [m for m in read_models() if m.group in ("stage", "rules") or m.group in groups]
    aside = [m.name for m in models if m.name in BESIDE] if beside is not None else []
    side_schema = f"{schema}_beside"
    side = _BesideBuild(beside, side_schema, head, thresholds, work_mem, aside) if aside else None
    if side is not None:
        side.start()
    else:  # committed by a side build whose build was killed before it took the tables over
        drop_schema(conn, side_schema)
    try:
        _fill(conn, target, [m for m in models if m.name not in aside], thresholds, ClosesOf(conn, schema))
        conn.execute(sql.SQL("CREATE TABLE {}.checkpoint (position bigint NOT NULL)").format(sql.Identifier(schema)))
    except BaseException:
        if side is not None:
            side.abandon()
        raise
    if side is not None:
        side.finish()
        _take_over(conn, side.schema, schema)
    conn.execute(sql.SQL("INSERT INTO {}.checkpoint VALUES (%s)").format(sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.risk_checkpoint AS SELECT %s::bigint AS position").format(
        sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.definition AS SELECT %s::text AS sha256").format(
        sql.Identifier(schema)), (definition_digest(),))
    drop_stage(conn)


def _session(conn: psycopg.Connection, work_mem: str) -> None:
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(work_mem)))
    conn.execute("SET LOCAL jit = off")
    # The fact views' rows are cheap to pass between processes next to decoding their JSON, which the planner
    # does not weigh: at the default (0.1) it decoded 600k link facts in one process (4.5 s), at 0.01 in three (1.6 s).
    conn.execute("SET LOCAL parallel_tuple_cost = 0.01")


def _fill(conn: psycopg.Connection, target: Target, models: list, thresholds: Thresholds, closes) -> None:
    """MODELS' tables created, their rebuild steps run in order, then the indexes their rebuild does not list."""
    for m in models:
        if m.group != "stage":
            run_section(conn, target, m.name, "create")
    options = {**FULL, **thresholds.options(), "cutoff": closes}
    for m in models:
        run_steps(conn, target, m, m.rebuild, options)
    for m in models:  # the indexes a rebuild does not list come last, after every fill
        if m.group != "stage" and not any(s.section == "index" for s in m.rebuild):
            if "index" in sections(m.name):
                run_section(conn, target, m.name, "index")


def drop_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _take_over(conn: psycopg.Connection, side: str, schema: str) -> None:
    """Moves the side schema's tables (partitions included, their indexes with them) but its own inputs, and its
    functions (the anomalies' score), into SCHEMA; drops the rest."""
    for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relname = ANY(%s) ORDER BY c.relname",
            (side, list(BESIDE_INPUTS))).fetchall():
        conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
            sql.Identifier(side), sql.Identifier(name), sql.Identifier(schema)))
    for (signature,) in conn.execute("SELECT p.oid::regprocedure::text FROM pg_proc p"
                                     " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
                                     (side,)).fetchall():
        conn.execute(sql.SQL("ALTER FUNCTION {} SET SCHEMA {}").format(sql.SQL(signature), sql.Identifier(schema)))
    drop_schema(conn, side)


class _BesideBuild:
    """The BESIDE views (and their inputs) built and committed on a connection of their own, in a thread."""

    def __init__(self, connect: Callable[[], psycopg.Connection], schema: str, head: int, thresholds: Thresholds,
                 work_mem: str, names: list[str]):
        self.connect, self.schema, self.head, self.thresholds, self.work_mem = connect, schema, head, thresholds, work_mem
        self.names = [*BESIDE_INPUTS, *names]
        self.conn: psycopg.Connection | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ledger-build-beside", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.connect() as conn:
                self.conn = conn
                with conn.transaction():
                    _session(conn, self.work_mem)
                    # a killed build's side schema is dropped here, not by the build: the build's transaction would
                    # hold the name until its commit, which waits for this one
                    drop_schema(conn, self.schema)
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
                    drop_stage(conn)
                    models = [m for m in read_models() if m.name in self.names]
                    _fill(conn, Target(self.schema, self.head), models, self.thresholds, ClosesOf(conn, self.schema))
                    drop_stage(conn)
        except BaseException as error:  # raised again by finish(), in the build's thread
            self.error = error

    def finish(self) -> None:
        """Waits for the side build; raises its error."""
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """The build failed before it touched the side's tables: cancel the side's statement (its transaction then
        rolls back), or drop what it committed. (Whatever a kill leaves, the next side build drops first.)"""
        if self.thread.is_alive() and self.conn is not None:
            try:
                self.conn.cancel_safe()
            except psycopg.Error:
                pass
        self.thread.join()
        if self.error is None:
            try:
                with self.connect() as conn:
                    drop_schema(conn, self.schema)
            except psycopg.Error:
                pass


def built_by_current_definitions(conn: psycopg.Connection, schema: str) -> bool:
    """Whether SCHEMA's read models were built by the projection files of this version (else: rebuild them)."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", (f"{schema}.definition",)).fetchone()[0]:
        return False
    row = conn.execute(sql.SQL("SELECT sha256 FROM {}.definition").format(sql.Identifier(schema))).fetchone()
    return row is not None and row[0] == definition_digest()


def count_built_facts(conn: psycopg.Connection, schema: str, head: int) -> int:
    """The facts a full build applied: usage from the built tables (usage_on_time's event counts + usage_late), the
    attribute facts from attribute_key (one row each), the other relations counted directly (links and invoices are
    typed rows; the rest are few). No fact's JSON is decoded for the count."""
    q = sql.Identifier(schema).as_string(conn)
    others = " + ".join(f"(SELECT count(*) FROM {rel} WHERE position <= %(head)s)"
                        for rel in (f"{q}.attribute_key", "identity_link_facts", "invoice_facts", "price_facts",
                                    "credit_facts", "period_close_facts", "calculation_defined_facts",
                                    "calculation_promoted_facts"))
    row = conn.execute(
        f"SELECT (SELECT coalesce(sum(event_count), 0) FROM {q}.usage_on_time)"
        f" + (SELECT count(*) FROM {q}.usage_late) + {others}", {"head": head}).fetchone()
    return int(row[0])


__all__ = ["build", "built_by_current_definitions", "count_built_facts", "drop_schema"]
