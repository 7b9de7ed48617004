"""A batch of usage facts only, split: its on-time facts of open months added in place (the `added in place` steps
of the read models), the others - late ones, ones that resolve nowhere - resolved one by one and left to the
scoped refills of the increment (increment.py)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .models import model, read_models
from .steps import coarse_statistics, probing_joins, run_section, run_steps
from .templates import FULL, SCOPED, STAGE, BatchMonths, Target, sections

# The stage of the split: the new facts aggregated by (customer, month, meter, source id), resolved with every link
# known now (@fill), and what is left out of the addition (@split).
BATCH = "usage_batch_stage"
# An addition whose groups number at most 1/PROBE_SHARE of customer_month_meter's rows finds the rows it adds to by
# index probes, one per key (steps.probing_joins); a larger one (a catch-up after a pause) keeps the planner's joins,
# which read the open months' rows of each table it adds to. Wide benchmark shape, 15M facts, 844k rows: a 40k-fact
# batch (12k keys) added in 0.8 s by probes against 1.6 s by the planner's hash and merge joins; an 80k-fact batch
# (1% late) about even, 2.8 s against 2.9 s.
PROBE_SHARE = 32
# The read models whose additions probe: each of their joins has an index on its inner side (customer_month_attrs'
# additions, for one, join every customer's latest attribute, which has none: a loop over it per new customer-month).
PROBED = frozenset({"usage_on_time", "customer_month_meter", "customer_month", "exceptions"})


@dataclass(frozen=True)
class Rest:
    """The facts of a usage-only batch left out of the in-place addition: how many, and their digest (bit_xor of
    hashint8extended(position, quantity), as usage_on_time keeps it)."""

    facts: int
    digest: int


class SplitMismatch(RuntimeError):
    """The facts left out of a batch's in-place addition are not exactly those staged one by one."""


def apply_usage_batch(conn: psycopg.Connection, t: Target, usage_facts: int) -> str:
    """The on-time facts of open months added in place; the others resolved one by one and folded into the
    usage read models. Returns the path: "additive", "additive+scoped" or "scoped"."""
    with coarse_statistics(conn):  # for the stage tables of the additive path
        rest = split_batch(conn, t)
        if rest.facts < usage_facts:
            add_on_time(conn, t)
    if not rest.facts:
        return "additive"
    # The customer-months the addition made are complete: they leave the scope (the refills would only write them
    # again).
    conn.execute(f"DELETE FROM {STAGE}.scope_cm")
    resolved = _resolve_rest(conn, t)
    # Exactly the facts the addition left, or a fact would count twice or not at all.
    staged = Rest(*conn.execute(f"SELECT count(*), coalesce(bit_xor(hashint8extended(position, quantity)), 0)"
                                f" FROM {STAGE}.usage_fact_stage").fetchone())
    if staged != rest:
        raise SplitMismatch(f"usage facts in ({t.checkpoint}, {t.head}] left out of the in-place addition: {rest},"
                            f" but staged one by one: {staged}")
    for m in read_models():  # the usage read models that the resolved facts feed
        if m.group == "finance" and set(m.depends_on) & resolved:
            run_steps(conn, t, m, m.increment, SCOPED)
    return "additive+scoped" if rest.facts < usage_facts else "scoped"


def _resolve_rest(conn: psycopg.Connection, t: Target) -> set[str]:
    """Stages the facts the split left out (@fill_incremental_rest: those of a closed month and those that
    resolve nowhere) and resolves them with usage_fact_resolved's increment steps; returns the two stage models."""
    run_section(conn, t, "usage_fact_stage", "create")
    run_section(conn, t, "usage_fact_stage", "fill_incremental_rest")
    conn.execute(f"ANALYZE {STAGE}.usage_fact_stage")
    resolved = model("usage_fact_resolved")
    run_steps(conn, t, resolved, resolved.increment, SCOPED)
    return {"usage_fact_stage", resolved.name}


def split_batch(conn: psycopg.Connection, t: Target) -> Rest:
    """Fills usage_batch_stage with the new usage facts' groups that are on time in an open month (to add in
    place); returns what the other groups hold."""
    run_section(conn, t, BATCH, "fill")
    conn.execute(f"ANALYZE {STAGE}.{BATCH}")
    return Rest(*conn.execute(t.render(sections(BATCH)["split"], FULL)).fetchone())


def add_on_time(conn: psycopg.Connection, t: Target) -> None:
    """The common case, additively: on-time units of open months add to the rows they reach (each read model's
    `added in place` steps, in dependency order).

    Nothing else can move: no link, attribute, price, invoice or credit fact is new, and on-time units change no
    late posting (late facts of the same batch are refilled by scope afterwards). New customer-months get their
    attributes first; plan prices are recomputed whole (tiny).
    """
    probes = _probes_pay(conn, t)
    for m in read_models():
        if m.group == "finance":
            probing = probes and m.name in PROBED
            with probing_joins(conn, probing):
                run_steps(conn, t, m, m.added_in_place, dict(SCOPED, batch_months=BatchMonths(probing)))


def _probes_pay(conn: psycopg.Connection, t: Target) -> bool:
    """Whether the batch's groups are few enough beside customer_month_meter's rows to be added by index probes."""
    q = sql.Identifier(t.schema).as_string(conn)
    groups, rows = conn.execute(
        f"SELECT (SELECT count(*) FROM {STAGE}.{BATCH}),"
        " (SELECT reltuples FROM pg_class WHERE oid = %s::regclass)", (f"{q}.customer_month_meter",)).fetchone()
    return groups * PROBE_SHARE <= rows


def scope_daily_priced(conn: psycopg.Connection, t: Target) -> bool:
    """After an in-place addition: the customer-months it reached that are priced day by day (daily_prorated with
    more than one plan in the month) go into the scope, to be refilled; the addition priced them with one plan."""
    if conn.execute(f"SELECT to_regclass('{STAGE}.on_time_delta') IS NULL").fetchone()[0]:
        return False
    q = sql.Identifier(t.schema).as_string(conn)
    return conn.execute(
        f"INSERT INTO {STAGE}.scope_cm SELECT DISTINCT d.customer_id, d.month FROM {STAGE}.on_time_delta d"
        f" JOIN {q}.customer_month_attrs a ON a.customer_id = d.customer_id AND a.month = d.month"
        " WHERE a.is_split AND a.plan_rule = 'daily_prorated'").rowcount > 0
