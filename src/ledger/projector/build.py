"""The full build: every declared read model filled from position 0 into a schema (rebuild, check)."""

from __future__ import annotations

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


def build(conn: psycopg.Connection, schema: str, head: int, thresholds: Thresholds = Thresholds(),
          work_mem: str = "1GB", groups: tuple[str, ...] = ("finance", "risk")) -> None:
    """Creates SCHEMA and fills every read model of GROUPS from position 0 through HEAD (inside the caller's
    transaction), walking the declarations in dependency order.

    WORK_MEM (LEDGER_BUILD_WORK_MEM) bounds each sort and hash table of the build: the day-grain aggregate of
    usage_daily sorts about one row per usage fact, and spills to disk below about 100 bytes per fact.
    GROUPS other than both (Finance's alone, say) is for measuring: the checkpoints then cover only those.
    """
    target = Target(schema, head)
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(work_mem)))
    conn.execute("SET LOCAL jit = off")
    # The fact views' rows are cheap to pass between processes next to decoding their JSON, which the planner
    # does not weigh: at the default (0.1) it decoded 600k link facts in one process (4.5 s), at 0.01 in three (1.6 s).
    conn.execute("SET LOCAL parallel_tuple_cost = 0.01")
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    drop_stage(conn)
    models = [m for m in read_models() if m.group in ("stage", "rules") or m.group in groups]
    for m in models:
        if m.group != "stage":
            run_section(conn, target, m.name, "create")
    conn.execute(sql.SQL("CREATE TABLE {}.checkpoint (position bigint NOT NULL)").format(sql.Identifier(schema)))

    options = {**FULL, **thresholds.options(), "cutoff": ClosesOf(conn, schema)}
    for m in models:
        run_steps(conn, target, m, m.rebuild, options)
    for m in models:  # the indexes a rebuild does not list come last, after every fill
        if m.group != "stage" and not any(s.section == "index" for s in m.rebuild):
            if "index" in sections(m.name):
                run_section(conn, target, m.name, "index")
    conn.execute(sql.SQL("INSERT INTO {}.checkpoint VALUES (%s)").format(sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.risk_checkpoint AS SELECT %s::bigint AS position").format(
        sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.definition AS SELECT %s::text AS sha256").format(
        sql.Identifier(schema)), (definition_digest(),))
    drop_stage(conn)


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


__all__ = ["build", "built_by_current_definitions", "count_built_facts"]
