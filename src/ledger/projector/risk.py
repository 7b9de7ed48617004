"""The Risk and Sales views (read model: risk): their increment, the anomalies' two forms, month partitions.

They keep a checkpoint of their own (risk_checkpoint): Finance's read models (exports, traces) never wait on them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ledger.domain.facts import USAGE_BATCH

from .models import ReadModel, Step, read_models
from .steps import run_section, run_steps
from .templates import SCOPED, STAGE, Target


@dataclass(frozen=True)
class Thresholds:
    """The anomaly rule's settings (LEDGER_ANOMALY_SCORE, LEDGER_ANOMALY_MIN_UNITS), passed down from Settings."""

    score: float = 6.0
    min_units: int = 100

    def options(self) -> dict:
        return {"anomaly_score": float(self.score), "anomaly_min_units": int(self.min_units)}


# The anomalies' fill (rebuild) and refill (increment) come in two forms: `_sparse` reads each candidate day's
# baseline (units at least LEDGER_ANOMALY_MIN_UNITS) through usage_daily's key, `_dense` every day in one window
# pass. Sparse while candidates are under this share of the days. Measured at 10M facts (5.0M days, 5.6%
# candidates): rebuild sparse 8.5 s, dense 19.4 s, i.e. about 2 s + 23 us per candidate against 3.9 us per day:
# they cross near 15%. An increment of 100k facts over 20k customers (1.3M days in its ranges, 120k candidates):
# dense 5.05 s, sparse 2.70 s (the refill alone, rolled back and repeated).
SPARSE_ANOMALY_FILL_BELOW = 0.15
# Rows sampled for that share: a rebuild's choice weighs tens of seconds; an increment's a fraction of one, and a
# share near 5% is known to within about half a point from 20k rows (the 200k-row sample cost 0.13 s at 7.4M days).
CANDIDATE_SAMPLE_ROWS = {"fill": 200_000, "refill": 20_000}
# The day grain whose candidates decide the form.
DAY_GRAIN = "usage_daily"


def anomaly_form(conn: psycopg.Connection, target: Target, thresholds: int, section: str) -> str:
    """"sparse" or "dense": the candidates' share of the day grain's days, from a sample of its pages."""
    table = sql.SQL("{}.{}").format(sql.Identifier(target.schema), sql.Identifier(DAY_GRAIN))
    rows = conn.execute(  # its partitions' row counts as of their last ANALYZE
        "SELECT sum(greatest(c.reltuples, 0)) FROM pg_partition_tree(%s::regclass) p JOIN pg_class c ON c.oid = p.relid"
        " WHERE p.isleaf", (table.as_string(conn),)).fetchone()[0] or 0
    sample = CANDIDATE_SAMPLE_ROWS[section]
    percent = 100.0 if rows < sample else 100.0 * sample / rows
    share = conn.execute(sql.SQL(
        "SELECT count(*) FILTER (WHERE units >= %s)::float8 / greatest(count(*), 1) FROM {} TABLESAMPLE SYSTEM (%s)"
    ).format(table), (int(thresholds), percent)).fetchone()[0]
    return "sparse" if share < SPARSE_ANOMALY_FILL_BELOW else "dense"


def run_cheaper_form(conn: psycopg.Connection, target: Target, m: ReadModel, step: Step, options: dict) -> None:
    """A step declared `A_sparse|A_dense`: the form the candidates' share picks."""
    form = anomaly_form(conn, target, options["anomaly_min_units"], step.section)
    run_section(conn, target, m.name, f"{step.section}_{form}", options)


def run_per_month(conn: psycopg.Connection, target: Target, m: ReadModel, step: Step, options: dict) -> None:
    """A step declared `NAME per month`, on a table partitioned by month: a fill builds one partition at a time,
    any other step first adds the partitions that {stage}.risk_delta's days need."""
    if step.section == "fill":
        _fill_per_month(conn, target, m.name, options)
    else:
        _add_month_partitions(conn, target, m.name)
        run_section(conn, target, m.name, step.section, options)


# the newest usage fact at or before the head: the last fact of the last batch recorded there (one read from the end
# of the events' (topic, position) index, then one block range of usage_facts' position index)
_NEWEST_USAGE_FACT = f"""
SELECT u.event_time FROM usage_facts u
WHERE u.position = (SELECT (ledger_state(e.state) ->> 'last_position')::bigint FROM ledger_events e
                    WHERE e.topic = '{USAGE_BATCH.topic}' AND e.notification_id <= %s
                    ORDER BY e.notification_id DESC LIMIT 1)"""


# The day grain by hash (`@fill_grain`) when the usage facts are at least this many times its largest possible size
# (customers x meters x days): measured at 10M facts, 1,000 customers, 3 meters, 181 days (18 facts per possible
# day, 25 per actual one): 4.1-4.7 s against 12 s sorted. Where the grain is about as large as the facts (20,000
# customers: 0.9 facts per possible day, 2 per actual one) the hash costs what the sort does and the partitions
# still need their rows sorted: 11.3 s for the grain's 5.0M days plus 1.2 s a partition, against 18.1 s sorted.
HASHED_DAY_GRAIN_FROM = 4.0


# usage_facts' statistics as of its last ANALYZE: its rows, its meters (n_distinct, negative when a share of the rows)
# and the days between the first and last bound of event_time's histogram
_USAGE_STATISTICS = """
SELECT c.reltuples,
       (SELECT s.n_distinct FROM pg_stats s
        WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'meter'),
       (SELECT extract(epoch FROM b[cardinality(b)] - b[1]) / 86400
        FROM (SELECT s.histogram_bounds::text::timestamptz[] AS b FROM pg_stats s
              WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'event_time') h)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = 'usage_facts'::regclass"""


def day_grain_by_hash(conn: psycopg.Connection, target: Target) -> bool:
    """Whether the usage facts outnumber every possible (customer, meter, day) of the grain HASHED_DAY_GRAIN_FROM
    times over: the customers exactly (link_range's latest version), the rest from usage_facts' statistics (never
    analyzed: sorted)."""
    facts, meters, days = conn.execute(_USAGE_STATISTICS).fetchone()
    if not facts or facts <= 0 or meters is None or meters <= 0 or days is None:
        return False  # never analyzed, or as many meters as a share of the facts
    customers = conn.execute(sql.SQL("SELECT count(DISTINCT customer_id) FROM {}.link_range"
                                     " WHERE known_through = 9223372036854775807")
                             .format(sql.Identifier(target.schema))).fetchone()[0]
    return customers > 0 and facts >= HASHED_DAY_GRAIN_FROM * customers * meters * (float(days) + 1)


def _fill_per_month(conn: psycopg.Connection, target: Target, name: str, options: dict) -> None:
    """The rebuild, one partition at a time: the history (every day before the newest usage fact's month), that
    month, and any later month with facts (dated after the newest one's month: usually none). Each partition sorted
    from usage_facts (later months found through its BRIN index on event_time), or, when the day grain is much
    smaller than the facts, sliced from the grain hashed in one pass (`day_grain_by_hash`)."""
    row = conn.execute(_NEWEST_USAGE_FACT, (target.head,)).fetchone()
    latest = (row[0] if row else dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).date().replace(day=1)
    hashed = day_grain_by_hash(conn, target)
    if hashed:
        run_section(conn, target, name, "fill_grain",
                    {**options, "since": "'-infinity'::timestamptz", "until": "'infinity'::timestamptz"})
        later = conn.execute(f"SELECT DISTINCT date_trunc('month', day)::date FROM {STAGE}.usage_daily_grain"
                             " WHERE day >= %s ORDER BY 1", (_month_after(latest),)).fetchall()
    else:
        later = conn.execute(
            "SELECT DISTINCT date_trunc('month', event_time AT TIME ZONE 'UTC')::date FROM usage_facts"
            " WHERE position <= %s AND event_time >= %s::date::timestamp AT TIME ZONE 'UTC' ORDER BY 1",
            (target.head, _month_after(latest))).fetchall()

    def bounds(since: dt.date | None, until: dt.date) -> dict:
        """A partition's bounds: as instants (sorted fill), as dates (from the grain), as partition bounds."""
        return {"since": "'-infinity'::timestamptz" if since is None else f"'{since}'::timestamp AT TIME ZONE 'UTC'",
                "until": f"'{until}'::timestamp AT TIME ZONE 'UTC'",
                "day_since": "'-infinity'::date" if since is None else f"'{since}'::date",
                "day_until": f"'{until}'::date",
                "from": "MINVALUE" if since is None else f"'{since}'", "to": f"'{until}'"}

    section = "fill_from_grain" if hashed else "fill"
    run_section(conn, target, name, section, {**options, "part": "history", **bounds(None, latest)})
    for month in (latest, *(m for (m,) in later)):
        run_section(conn, target, name, section, {**options, "part": f"p{month:%Y%m}",
                                                  **bounds(month, _month_after(month))})
    if hashed:
        conn.execute(f"DROP TABLE {STAGE}.usage_daily_grain")


def _month_after(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _add_month_partitions(conn: psycopg.Connection, target: Target, name: str) -> None:
    """Adds the partitions of NAME that {stage}.risk_delta's days need: one per month after the latest
    partition's it reaches (the history partition holds every day before the build's latest month)."""
    parent = sql.SQL("{}.{}").format(sql.Identifier(target.schema), sql.Identifier(name)).as_string(conn)
    names = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (parent,))}
    prefix = f"{name}_p"
    first = min(dt.date(int(n[-6:-2]), int(n[-2:]), 1) for n in names if n.startswith(prefix))
    months = conn.execute(f"SELECT DISTINCT date_trunc('month', day)::date FROM {STAGE}.risk_delta WHERE day >= %s",
                          (first,)).fetchall()
    for (month,) in months:
        if f"{prefix}{month:%Y%m}" not in names:
            run_section(conn, target, name, "partition", {"month": month, "month_end": _month_after(month)})


def apply_risk_increment(conn: psycopg.Connection, schema: str, checkpoint: int, head: int,
                         thresholds: Thresholds = Thresholds()) -> None:
    """Folds the facts in (CHECKPOINT, HEAD] into the Risk and Sales views (usage_daily, adoption, anomalies).

    HEAD is Finance's checkpoint as the caller's transaction sees it (runner.project_risk: a REPEATABLE READ
    snapshot), so the Finance tables it reads (period_close, link_range, usage_on_time, adoption_pending) are
    those of HEAD while Finance's later runs commit beside it.
    """
    conn.execute("SET LOCAL work_mem = '256MB'")
    conn.execute("SET LOCAL jit = off")
    since = conn.execute("SELECT min(effective_from) FROM identity_link_facts WHERE position > %s AND position <= %s",
                         (checkpoint, head)).fetchone()[0]
    target = Target(schema, head, checkpoint, since)
    options = {**SCOPED, **thresholds.options()}
    for m in read_models():
        if m.group == "risk":
            run_steps(conn, target, m, m.increment, options)
    conn.execute(sql.SQL("UPDATE {}.risk_checkpoint SET position = %s").format(sql.Identifier(schema)), (head,))
