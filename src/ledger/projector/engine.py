"""Builds the read models: a full build into a schema (rebuild, check) and the incremental step (project).

Both run the same SQL files of `projections/`. The incremental step:

1. when the batch is only usage facts (the common case), resolves them with the current links and aggregates them
   in one statement (`usage_batch_stage`), adds the units of the groups on time in open months to the rows they
   reach (`@merge_batch`, `@add_on_time` sections), and stops there unless some facts are late or resolve
   nowhere: those alone go on through steps 2-3;
2. otherwise resolves the new usage facts one by one (and every fact of a source id that got a new identity link,
   whose rows it replaces) and adds them to `usage_on_time` / `usage_late`;
3. then restricts the customer-month read models to a scope (temporary tables of the customer-months,
   source ids, invoices and customers the new facts can change), deletes the scoped rows and re-inserts them
   with the rebuild's SQL (customer_month_meter: computes them with it and writes only the difference); a new
   price recomputes them whole.
A period close changes no existing row (facts before it keep their status) but the posting of later late facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..logging import get_logger
from .templates import FULL, SCOPED, STAGE, CutoffCase, Scope, Target, definition_digest, sections

# Risk and Sales views, with a checkpoint of their own: adoption (from Finance's usage_on_time) and anomalies (over
# a day-grain pre-aggregate and each pair's first usage day).
RISK_TABLES = ("usage_daily", "usage_first_day", "adoption", "anomalies")
# Tables in build order; every one of them is compared by check().
TABLES = (
    "period_close", "posting_window", "link_range",
    "usage_on_time", "usage_late",
    "invoice_resolved", "invoice_meter",
    "dim_customer", "calc_in_force", "restatements", "customer_month_attrs", "plan_month_fee", "plan_month_meter",
    "customer_month_priced", "late_adjustments", "customer_month_meter", "customer_month", "exceptions",
    *RISK_TABLES,
)
RISK_STEPS_BUILD = (("usage_daily", "fill"), ("usage_first_day", "fill"), ("adoption", "fill"), ("anomalies", "fill"),
                    ("anomalies", "fill_threshold"))
RISK_STEPS_INCREMENT = (("usage_daily", "delta"), ("usage_daily", "merge"), ("usage_first_day", "merge"),
                        ("adoption", "scope"), ("adoption", "delete"), ("adoption", "fill"), ("adoption", "next"),
                        ("anomalies", "merge"), ("anomalies", "delete"), ("anomalies", "refill"),
                        ("anomalies", "fill_threshold"))


@dataclass(frozen=True)
class Thresholds:
    """The anomaly rule's settings (LEDGER_ANOMALY_SCORE, LEDGER_ANOMALY_MIN_UNITS), passed down from Settings."""

    score: float = 6.0
    min_units: int = 100


# The anomalies' fill (rebuild) and refill (increment) come in two forms: `_sparse` reads each candidate day's
# baseline (units at least LEDGER_ANOMALY_MIN_UNITS) through usage_daily's key, `_dense` every day in one window
# pass. Sparse while candidates are under this share of the days. Measured at 10M facts (5.0M days, 5.6%
# candidates): rebuild sparse 8.5 s, dense 19.4 s, i.e. about 2 s + 23 us per candidate against 3.9 us per day:
# they cross near 15%. An increment of 100k facts over 20k customers (1.3M days in its ranges, 120k candidates):
# dense 5.05 s, sparse 2.70 s (the refill alone, rolled back and repeated).
SPARSE_ANOMALY_FILL_BELOW = 0.15
TWO_FORMS = {("anomalies", "fill"), ("anomalies", "refill")}
# Rows sampled for that share: a rebuild's choice weighs tens of seconds; an increment's a fraction of one, and a
# share near 5% is known to within about half a point from 20k rows (the 200k-row sample cost 0.13 s at 7.4M days).
CANDIDATE_SAMPLE_ROWS = {"fill": 200_000, "refill": 20_000}


def _anomaly_form(conn: psycopg.Connection, target: "Target", thresholds: Thresholds, section: str) -> str:
    """"sparse" or "dense": the candidates' share of usage_daily's days, from a sample of its pages."""
    table = sql.SQL("{}.usage_daily").format(sql.Identifier(target.schema))
    rows = conn.execute(  # its partitions' row counts as of their last ANALYZE
        "SELECT sum(greatest(c.reltuples, 0)) FROM pg_partition_tree(%s::regclass) p JOIN pg_class c ON c.oid = p.relid"
        " WHERE p.isleaf", (table.as_string(conn),)).fetchone()[0] or 0
    sample = CANDIDATE_SAMPLE_ROWS[section]
    percent = 100.0 if rows < sample else 100.0 * sample / rows
    share = conn.execute(sql.SQL(
        "SELECT count(*) FILTER (WHERE units >= %s)::float8 / greatest(count(*), 1) FROM {} TABLESAMPLE SYSTEM (%s)"
    ).format(table), (int(thresholds.min_units), percent)).fetchone()[0]
    return "sparse" if share < SPARSE_ANOMALY_FILL_BELOW else "dense"


def _run_risk(conn: psycopg.Connection, target: "Target", steps, thresholds: Thresholds, scopes=FULL) -> None:
    options = {**scopes, "anomaly_score": float(thresholds.score), "anomaly_min_units": int(thresholds.min_units)}
    for name, section in steps:
        if (name, section) in TWO_FORMS:  # the cheaper form for this data
            section = f"{section}_{_anomaly_form(conn, target, thresholds, section)}"
        elif (name, section) == ("usage_daily", "fill"):
            _fill_usage_daily(conn, target, options)
            continue
        elif (name, section) == ("usage_daily", "merge"):
            _add_day_partitions(conn, target)
        _run(conn, target, name, section, options)


def _fill_usage_daily(conn: psycopg.Connection, target: "Target", options: dict) -> None:
    """usage_daily's rebuild, one partition at a time: the history (every day before the newest usage fact's
    month), that month, and any later month with facts (dated after the newest one's month: usually none, found
    through usage_facts' BRIN index on event_time)."""
    row = conn.execute("SELECT event_time FROM usage_facts WHERE position <= %s ORDER BY position DESC LIMIT 1",
                       (target.head,)).fetchone()
    latest = (row[0] if row else dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).date().replace(day=1)
    later = conn.execute(
        "SELECT DISTINCT date_trunc('month', event_time AT TIME ZONE 'UTC')::date FROM usage_facts"
        " WHERE position <= %s AND event_time >= %s::date::timestamp AT TIME ZONE 'UTC' ORDER BY 1",
        (target.head, _month_after(latest))).fetchall()

    def instant(day: dt.date) -> str:
        return f"'{day}'::timestamp AT TIME ZONE 'UTC'"

    _run(conn, target, "usage_daily", "fill", {**options, "part": "history", "since": "'-infinity'::timestamptz",
                                               "until": instant(latest), "from": "MINVALUE", "to": f"'{latest}'"})
    for month in (latest, *(m for (m,) in later)):
        end = _month_after(month)
        _run(conn, target, "usage_daily", "fill", {**options, "part": f"p{month:%Y%m}", "since": instant(month),
                                                   "until": instant(end), "from": f"'{month}'", "to": f"'{end}'"})
    _run(conn, target, "usage_daily", "analyze")


def _month_after(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _add_day_partitions(conn: psycopg.Connection, target: "Target") -> None:
    """Adds the partitions of usage_daily that {stage}.risk_delta's days need: one per month after the latest
    partition's it reaches (the history partition holds every day before the build's latest month)."""
    parent = sql.SQL("{}.usage_daily").format(sql.Identifier(target.schema)).as_string(conn)
    names = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (parent,))}
    first = min(dt.date(int(n[-6:-2]), int(n[-2:]), 1) for n in names if n.startswith("usage_daily_p"))
    months = conn.execute(f"SELECT DISTINCT date_trunc('month', day)::date FROM {STAGE}.risk_delta WHERE day >= %s",
                          (first,)).fetchall()
    for (month,) in months:
        if f"usage_daily_p{month:%Y%m}" not in names:
            _run(conn, target, "usage_daily", "partition", {"month": month, "month_end": _month_after(month)})
# Read models whose scoped refill in an increment is applied as a difference (their @apply section): @fill's rows
# for the scope go into {stage}.NAME_new instead of the table, and @apply updates only what changed.
APPLIED_AS_DIFFERENCE = ("customer_month_meter",)
STAGE_TABLES = ("usage_group_stage", "usage_fact_stage", "usage_fact_resolved", "usage_batch_stage", "on_time_delta",
                "customer_month_meter_change", "invoice_line_stage", *(f"{n}_new" for n in APPLIED_AS_DIFFERENCE),
                # the pricing rule's (pricing.sql) and its callers'
                "version_pair", "version_fact", "cm_attr_key", "price_req", "req_version", "req_run", "req_plan_days",
                "req_multi", "req_price", "req_price_meter", "req_plan_units", "price_line", "late_segment",
                "restatement_candidate", "restatement_change")
SCOPE_TABLES = {
    "scope_cm": "customer_id text, month text",
    "scope_cm_posting": "customer_id text, month text",
    "scope_src": "source text, source_customer_id text",
    "scope_inv": "invoice_id text",
    "scope_cust": "customer_id text",
    "relink_source": "source text, source_customer_id text, since timestamptz",
}
FACT_RELATIONS = (
    "usage_facts", "identity_link_facts", "attribute_facts", "price_facts", "invoice_facts",
    "invoice_line_facts", "credit_facts", "period_close_facts", "calculation_defined_facts",
    "calculation_promoted_facts",
)


def _run(conn: psycopg.Connection, target: Target, name: str, section: str, scopes=FULL) -> None:
    text = sections(name).get(section)
    if text:
        conn.execute(target.render(text, scopes))


def _drop_stage(conn: psycopg.Connection) -> None:
    names = ", ".join(f"{STAGE}.{t}" for t in (*STAGE_TABLES, "usage_group_resolved", *SCOPE_TABLES))
    conn.execute(f"DROP TABLE IF EXISTS {names}")


@contextmanager
def _coarse_statistics(conn: psycopg.Connection) -> Iterator[None]:
    """ANALYZE inside takes a small sample: the joins that follow need row counts and rough distinct counts only.
    (The default sample cost 0.12 s of a 100k-fact increment for its 78k-row stage table.)"""
    previous = conn.execute("SHOW default_statistics_target").fetchone()[0]
    conn.execute("SET LOCAL default_statistics_target = 10")
    yield
    conn.execute(sql.SQL("SET LOCAL default_statistics_target = {}").format(sql.Literal(int(previous))))


def _analyze(conn: psycopg.Connection, target: Target, *tables: str) -> None:
    with _coarse_statistics(conn):
        for t in tables:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(target.schema), sql.Identifier(t)))


# ------------------------------------------------------------------------------------------------ full build
def build(conn: psycopg.Connection, schema: str, head: int, thresholds: Thresholds = Thresholds(),
          work_mem: str = "1GB") -> None:
    """Creates SCHEMA and fills every read model from position 0 through HEAD (inside the caller's transaction).

    WORK_MEM (LEDGER_BUILD_WORK_MEM) bounds each sort and hash table of the build: the day-grain aggregate of
    usage_daily sorts about one row per usage fact, and spills to disk below about 100 bytes per fact.
    """
    target = Target(schema, head)
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(work_mem)))
    conn.execute("SET LOCAL jit = off")
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    _drop_stage(conn)
    for name in TABLES:
        _run(conn, target, name, "create")
    conn.execute(sql.SQL("CREATE TABLE {}.checkpoint (position bigint NOT NULL)").format(sql.Identifier(schema)))

    for name in ("period_close", "posting_window", "link_range"):
        _run(conn, target, name, "fill")
        _run(conn, target, name, "index")
    _analyze(conn, target, "period_close", "link_range")

    # The one pass over usage_facts. Without extended statistics on usage_facts the planner takes the month
    # expression for one group per fact and sorts every fact; a hash aggregate is right (a few groups per
    # source id). With them (see usage_group_stage.sql) it also runs in parallel.
    _run(conn, target, "usage_group_stage", "create")
    closes = conn.execute(sql.SQL("SELECT month_start, close_position FROM {}.period_close").format(
        sql.Identifier(schema))).fetchall()
    conn.execute("SET LOCAL enable_sort = off")
    with_cutoff = {**FULL, "cutoff": CutoffCase(closes)}
    _run(conn, target, "usage_group_stage", "fill", with_cutoff)
    conn.execute("RESET enable_sort")
    _run(conn, target, "usage_fact_stage", "fill_rebuild", with_cutoff)
    _run(conn, target, "usage_fact_resolved", "create")
    _run(conn, target, "usage_fact_resolved", "fill")
    _run(conn, target, "usage_on_time", "fill_rebuild")
    _run(conn, target, "usage_late", "fill")
    _analyze(conn, target, "usage_on_time", "usage_late")

    joined_later = {"invoice_resolved", "dim_customer", "customer_month_attrs", "plan_month_fee",
                    "plan_month_meter", "customer_month_meter", "customer_month_priced", "restatements"}
    for name in ("invoice_resolved", "invoice_meter", "dim_customer", "calc_in_force", "restatements",
                 "customer_month_attrs", "plan_month_fee", "plan_month_meter", "customer_month_priced",
                 "late_adjustments", "customer_month_meter", "customer_month", "exceptions"):
        _run(conn, target, name, "fill")
        if name in joined_later:
            _analyze(conn, target, name)
    _run_risk(conn, target, RISK_STEPS_BUILD, thresholds)
    for name in TABLES:
        _run(conn, target, name, "index")
    conn.execute(sql.SQL("INSERT INTO {}.checkpoint VALUES (%s)").format(sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.risk_checkpoint AS SELECT %s::bigint AS position").format(
        sql.Identifier(schema)), (head,))
    conn.execute(sql.SQL("CREATE TABLE {}.definition AS SELECT %s::text AS sha256").format(
        sql.Identifier(schema)), (definition_digest(),))
    _drop_stage(conn)


# ------------------------------------------------------------------------------------------------ incremental
@dataclass(frozen=True)
class NewFacts:
    """How many facts of each relation lie in (checkpoint, head]."""

    counts: dict[str, int]

    def __getitem__(self, relation: str) -> int:
        return self.counts.get(relation, 0)

    @property
    def total(self) -> int:
        # invoice lines share their invoice's position: they are not facts of their own
        return sum(n for rel, n in self.counts.items() if rel != "invoice_line_facts")


def built_by_current_definitions(conn: psycopg.Connection, schema: str) -> bool:
    """Whether SCHEMA's read models were built by the projection files of this version (else: rebuild them)."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", (f"{schema}.definition",)).fetchone()[0]:
        return False
    row = conn.execute(sql.SQL("SELECT sha256 FROM {}.definition").format(sql.Identifier(schema))).fetchone()
    return row is not None and row[0] == definition_digest()


def count_new_facts(conn: psycopg.Connection, checkpoint: int, head: int) -> NewFacts:
    parts = " UNION ALL ".join(
        f"SELECT '{rel}', count(*) FROM {rel} WHERE position > %(cp)s AND position <= %(head)s"
        for rel in FACT_RELATIONS
    )
    rows = conn.execute(parts, {"cp": checkpoint, "head": head}).fetchall()
    return NewFacts({rel: int(n) for rel, n in rows})


def count_built_facts(conn: psycopg.Connection, schema: str, head: int) -> int:
    """The facts a full build applied, counted from the built tables where they hold one row per fact.

    Usage: usage_on_time's event counts + usage_late; links: link_range's versions (one per link);
    invoices: invoice_resolved. The other relations are small and are counted directly.
    """
    q = sql.Identifier(schema).as_string(conn)
    others = " + ".join(f"(SELECT count(*) FROM {rel} WHERE position <= %(head)s)"
                        for rel in ("attribute_facts", "price_facts", "credit_facts", "period_close_facts",
                                    "calculation_defined_facts", "calculation_promoted_facts"))
    row = conn.execute(
        f"SELECT (SELECT coalesce(sum(event_count), 0) FROM {q}.usage_on_time)"
        f" + (SELECT count(*) FROM {q}.usage_late)"
        f" + (SELECT count(*) FROM (SELECT DISTINCT source, source_customer_id, known_after FROM {q}.link_range) v)"
        f" + (SELECT count(*) FROM {q}.invoice_resolved) + {others}", {"head": head}).fetchone()
    return int(row[0])


def apply_increment(conn: psycopg.Connection, schema: str, checkpoint: int, head: int, new: NewFacts,
                    thresholds: Thresholds = Thresholds()) -> str:
    """Applies the facts in (CHECKPOINT, HEAD] to the read models of SCHEMA (inside the caller's transaction).

    Returns the path it took: "additive" (usage facts only, every one on time in an open month: added in place),
    "additive+scoped" (usage facts only: those added in place, the others, late or resolving nowhere, through
    scoped refills) or "scoped" (scoped refills for everything; a new price refills the customer-month models whole).
    """
    t = Target(schema, head, checkpoint, _relinked_since(conn, checkpoint, head) if new["identity_link_facts"] else None)
    q = sql.Identifier(schema).as_string(conn)
    conn.execute("SET LOCAL work_mem = '256MB'")
    conn.execute("SET LOCAL jit = off")
    _drop_stage(conn)
    for table, columns in SCOPE_TABLES.items():
        conn.execute(f"CREATE TABLE {STAGE}.{table} ({columns}) ON COMMIT DROP")
    window = {"cp": checkpoint, "head": head}

    if new["identity_link_facts"] or new["period_close_facts"]:
        for name in ("period_close", "posting_window", "link_range"):
            _run(conn, t, name, "delete")
            _run(conn, t, name, "fill")
        conn.execute(  # each relinked source id with the instant from which its facts may resolve otherwise
            f"INSERT INTO {STAGE}.relink_source SELECT source, source_customer_id, min(effective_from) "
            "FROM identity_link_facts WHERE position > %(cp)s AND position <= %(head)s GROUP BY 1, 2", window)
        # its size, for the one pass over usage_facts that follows (unanalysed, the planner took a merge join on
        # `source` alone through the (source, event_id) key: 16 s at 10M facts instead of a 2 s hash join)
        conn.execute(f"ANALYZE {STAGE}.relink_source")

    path = "scoped"
    usage_applied = False
    if new["usage_facts"] and new.total == new["usage_facts"]:
        try:
            with conn.transaction():  # a savepoint: a split that does not add up leaves nothing behind
                path = _apply_usage_batch(conn, t, new["usage_facts"])
            usage_applied = True
        except SplitMismatch as error:  # never expected; the general path below is the reference
            get_logger().error("usage_batch_split_mismatch", detail=str(error))
        if usage_applied and _scope_daily_priced(conn, t):
            path = "additive+scoped"
        if path == "additive":
            conn.execute(f"UPDATE {q}.checkpoint SET position = %s", (head,))
            _drop_stage(conn)
            return path
    if not usage_applied and (new["usage_facts"] or new["identity_link_facts"]):
        _resolve_usage(conn, t, relinked=bool(new["identity_link_facts"]))
        _apply_usage(conn, t)

    if new["invoice_facts"] or new["identity_link_facts"]:
        # new invoices, and the invoices of relinked source ids (resolved with every link known now)
        conn.execute(
            f"INSERT INTO {STAGE}.scope_inv SELECT invoice_id FROM invoice_facts "
            "WHERE position > %(cp)s AND position <= %(head)s "
            f"UNION SELECT i.invoice_id FROM {q}.invoice_resolved i "
            f"JOIN {STAGE}.relink_source r USING (source, source_customer_id) WHERE i.issued_at >= r.since", window)
        for name in ("invoice_resolved", "invoice_meter"):
            _run(conn, t, name, "delete", SCOPED)
            _run(conn, t, name, "fill", SCOPED)
            _run(conn, t, name, "touched", SCOPED)

    if new["credit_facts"]:
        conn.execute(
            f"INSERT INTO {STAGE}.scope_cm SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') "
            "FROM credit_facts WHERE position > %(cp)s AND position <= %(head)s", window)
    if new["attribute_facts"]:
        conn.execute(
            f"INSERT INTO {STAGE}.scope_cust SELECT DISTINCT customer_id FROM attribute_facts "
            "WHERE position > %(cp)s AND position <= %(head)s", window)
        _run(conn, t, "dim_customer", "delete", SCOPED)
        _run(conn, t, "dim_customer", "fill", SCOPED)
        # a customer's attributes reach every month it is reported for
        conn.execute(
            f"INSERT INTO {STAGE}.scope_cm SELECT a.customer_id, a.month FROM {q}.customer_month_attrs a "
            f"JOIN {STAGE}.scope_cust s USING (customer_id)")

    if new["period_close_facts"]:
        # a month just closed is priced at its close from now on (SPEC §4.0): its rows say so
        conn.execute(
            f"INSERT INTO {STAGE}.scope_cm SELECT a.customer_id, a.month FROM {q}.customer_month_attrs a "
            f"JOIN {q}.period_close p USING (month) WHERE p.close_position > %(cp)s AND p.close_position <= %(head)s",
            window)
    if new["calculation_promoted_facts"]:
        _run(conn, t, "calc_in_force", "delete")
        _run(conn, t, "calc_in_force", "fill")
    if new["attribute_facts"] or new["price_facts"] or new["calculation_promoted_facts"]:
        # what these facts change in closed months posts as restatements to the earliest open month (SPEC §4.6)
        _run(conn, t, "restatements", "fill", SCOPED)
        _run(conn, t, "restatements", "touched", SCOPED)

    # A new price can change any customer-month of its plan, a promotion any open month: recompute the
    # customer-month read models whole.
    marts = FULL if new["price_facts"] or new["calculation_promoted_facts"] else SCOPED
    for table in ("scope_cm", "scope_src", "scope_inv", "scope_cust"):
        conn.execute(f"ANALYZE {STAGE}.{table}")
    _apply_marts(conn, t, marts)
    conn.execute(f"UPDATE {q}.checkpoint SET position = %s", (head,))
    _drop_stage(conn)
    return path


def apply_risk_increment(conn: psycopg.Connection, schema: str, checkpoint: int, head: int,
                         thresholds: Thresholds = Thresholds()) -> None:
    """Folds the facts in (CHECKPOINT, HEAD] into the Risk and Sales views (usage_daily, adoption, anomalies).

    They keep their own checkpoint: Finance's read models (exports, traces) never wait on them. Runs after the
    Finance step of the same transaction, so period_close and link_range are current through HEAD.
    """
    conn.execute("SET LOCAL work_mem = '256MB'")
    conn.execute("SET LOCAL jit = off")
    _run_risk(conn, Target(schema, head, checkpoint, _relinked_since(conn, checkpoint, head)), RISK_STEPS_INCREMENT,
              thresholds, SCOPED)
    conn.execute(sql.SQL("UPDATE {}.risk_checkpoint SET position = %s").format(sql.Identifier(schema)), (head,))


def _relinked_since(conn: psycopg.Connection, checkpoint: int, head: int):
    """The earliest effective_from of the identity links in (CHECKPOINT, HEAD], or None: the facts before it keep
    their resolution, and the relinked source ids' facts are read from there on (usage_facts' BRIN index on
    event_time skips the blocks written before it)."""
    return conn.execute("SELECT min(effective_from) FROM identity_link_facts WHERE position > %s AND position <= %s",
                        (checkpoint, head)).fetchone()[0]


@dataclass(frozen=True)
class Rest:
    """The facts of a usage-only batch left out of the in-place addition: how many, and their digest (bit_xor of
    hashint8extended(position, quantity), as usage_on_time keeps it)."""

    facts: int
    digest: int


def _resolve_usage(conn: psycopg.Connection, t: Target, relinked: bool, fill: str = "fill_incremental") -> None:
    """Resolves the new usage facts (FILL: all of them, or `fill_incremental_rest`: those a split batch did not add
    in place), and every fact of a relinked source id, one by one (SPEC §4.1)."""
    for name in ("usage_fact_stage", "usage_fact_resolved"):
        _run(conn, t, name, "create")
    _run(conn, t, "usage_fact_stage", fill)
    if relinked:
        _run(conn, t, "usage_fact_stage", "fill_relinked")
    conn.execute(f"ANALYZE {STAGE}.usage_fact_stage")
    _run(conn, t, "usage_fact_resolved", "fill")


class SplitMismatch(RuntimeError):
    """The facts left out of a batch's in-place addition are not exactly those staged one by one."""


def _apply_usage_batch(conn: psycopg.Connection, t: Target, usage_facts: int) -> str:
    """A usage-only batch: its on-time facts of open months added in place; the others (late ones, ones that
    resolve nowhere) resolved one by one and folded in, for the scoped refills that follow. Returns the path."""
    with _coarse_statistics(conn):  # for the stage tables of the additive path
        rest = _split_batch(conn, t)
        if rest.facts < usage_facts:
            _add_on_time(conn, t)
    if not rest.facts:
        return "additive"
    # The customer-months the addition made are complete: they leave the scope (the refills would only write them
    # again).
    conn.execute(f"DELETE FROM {STAGE}.scope_cm")
    _resolve_usage(conn, t, relinked=False, fill="fill_incremental_rest")
    # Exactly the facts the addition left, or a fact would count twice or not at all.
    staged = Rest(*conn.execute(f"SELECT count(*), coalesce(bit_xor(hashint8extended(position, quantity)), 0)"
                                f" FROM {STAGE}.usage_fact_stage").fetchone())
    if staged != rest:
        raise SplitMismatch(f"usage facts in ({t.checkpoint}, {t.head}] left out of the in-place addition: {rest},"
                            f" but staged one by one: {staged}")
    _apply_usage(conn, t)
    return "additive+scoped" if rest.facts < usage_facts else "scoped"


def _split_batch(conn: psycopg.Connection, t: Target) -> Rest:
    """Fills usage_batch_stage with the new usage facts' groups that are on time in an open month (to add in
    place); returns what the other groups hold."""
    _run(conn, t, "usage_batch_stage", "fill")
    conn.execute(f"ANALYZE {STAGE}.usage_batch_stage")
    return Rest(*conn.execute(t.render(sections("usage_batch_stage")["split"], FULL)).fetchone())


def _add_on_time(conn: psycopg.Connection, t: Target) -> None:
    """The common case, additively: on-time units of open months add to the rows they reach.

    Nothing else can move: no link, attribute, price, invoice or credit fact is new, and on-time units change no
    late posting (late facts of the same batch are refilled by scope afterwards). New customer-months get their
    attributes first; plan prices are recomputed whole (tiny).
    """
    _run(conn, t, "usage_on_time", "delta", SCOPED)
    _run(conn, t, "usage_on_time", "merge_batch", SCOPED)
    _run(conn, t, "customer_month_attrs", "fill", SCOPED)  # only customer-months it did not hold
    for name in ("plan_month_fee", "plan_month_meter"):
        _run(conn, t, name, "delete")
        _run(conn, t, name, "fill")
    for name in ("customer_month_meter", "customer_month", "exceptions"):
        _run(conn, t, name, "add_on_time", SCOPED)


def _scope_daily_priced(conn: psycopg.Connection, t: Target) -> bool:
    """After an in-place addition: the customer-months it reached that are priced day by day (daily_prorated with
    more than one plan in the month) go into the scope, to be refilled; the addition priced them with one plan."""
    if conn.execute(f"SELECT to_regclass('{STAGE}.on_time_delta') IS NULL").fetchone()[0]:
        return False
    q = sql.Identifier(t.schema).as_string(conn)
    return conn.execute(
        f"INSERT INTO {STAGE}.scope_cm SELECT DISTINCT d.customer_id, d.month FROM {STAGE}.on_time_delta d"
        f" JOIN {q}.customer_month_attrs a ON a.customer_id = d.customer_id AND a.month = d.month"
        " WHERE a.is_split AND a.plan_rule = 'daily_prorated'").rowcount > 0


def _apply_usage(conn: psycopg.Connection, t: Target) -> None:
    """Folds the resolved usage facts in: relinked source ids replaced, new facts added."""
    for name in ("usage_on_time", "usage_late"):
        _run(conn, t, name, "delete", SCOPED)
    _run(conn, t, "usage_on_time", "merge", SCOPED)
    _run(conn, t, "usage_late", "fill", SCOPED)
    for name in ("usage_on_time", "usage_late"):
        _run(conn, t, name, "touched", SCOPED)


def _apply_marts(conn: psycopg.Connection, t: Target, scopes: dict[str, Scope]) -> None:
    """Re-derives the customer-month read models for the scope (everything when SCOPES is FULL)."""
    _run(conn, t, "customer_month_attrs", "delete", scopes)
    _run(conn, t, "customer_month_attrs", "fill", scopes)
    for name in ("plan_month_fee", "plan_month_meter"):
        _run(conn, t, name, "delete")
        _run(conn, t, name, "fill")
    _run(conn, t, "customer_month_priced", "delete", scopes)
    _run(conn, t, "customer_month_priced", "fill", scopes)
    _run(conn, t, "late_adjustments", "delete", scopes)
    _run(conn, t, "late_adjustments", "fill", scopes)
    if scopes is not FULL:
        # late postings moved by this run change the customer_month rows of their posting months
        _run(conn, t, "late_adjustments", "touched", scopes)
        conn.execute(f"INSERT INTO {STAGE}.scope_cm SELECT customer_id, month FROM {STAGE}.scope_cm_posting")
    for name in ("customer_month_meter", "customer_month", "exceptions"):
        if name in APPLIED_AS_DIFFERENCE and scopes is not FULL:
            _refill_as_difference(conn, t, name, scopes)
            continue
        _run(conn, t, name, "delete", scopes)
        _run(conn, t, name, "fill", scopes)


def _refill_as_difference(conn: psycopg.Connection, t: Target, name: str, scopes: dict[str, Scope]) -> None:
    """NAME's @fill for the scope into {stage}.NAME_new (a copy of the table's columns), then its @apply."""
    into = f"INSERT INTO {{schema}}.{name}\n"
    fill = sections(name)["fill"]
    if not fill.startswith(into) or fill.count("INSERT INTO") != 1:
        raise ValueError(f"{name}.sql @fill must be one INSERT INTO {{schema}}.{name} to be applied as a difference")
    conn.execute(sql.SQL("CREATE TABLE {}.{} (LIKE {}.{})").format(
        sql.Identifier(STAGE), sql.Identifier(f"{name}_new"), sql.Identifier(t.schema), sql.Identifier(name)))
    conn.execute(t.render(f"INSERT INTO {{stage}}.{name}_new\n" + fill[len(into):], scopes))
    _run(conn, t, name, "apply", scopes)
