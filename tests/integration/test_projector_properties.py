"""Properties of the projector over random small fact sequences (hypothesis).

- rebuild equals incremental, for any split of the facts into projected batches;
- incremental in any batch split equals one incremental pass;
- usage resolution (SPEC §4.1) equals a direct Python reading of the rule, fact by fact;
- SCD2 versions (SPEC §3.3) equal a direct Python reading, never overlap and leave no gaps;
- a closed month's on-time units never change after its close;
- customer_month: balance = invoiced - credits + late adjustments, each from its own facts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import projector
from ledger.projector import engine, runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projector_fixtures import scratch_database  # noqa: E402

UTC = dt.timezone.utc
SOURCE_IDS = [("billing", "b1"), ("billing", "b2"), ("product", "p1")]
CUSTOMERS = ["c1", "c2", "c3"]
METERS = ["m1", "m2"]
MONTHS = ["2026-01", "2026-02", "2026-03"]
PLANS = ["pa", "pb"]
EFFECTIVE = [dt.datetime(2025, 12, 1, tzinfo=UTC), dt.datetime(2026, 1, 15, tzinfo=UTC),
             dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 2, 20, 12, tzinfo=UTC),
             dt.datetime(2026, 3, 10, tzinfo=UTC)]
OFFSETS = [dt.timedelta(0), dt.timedelta(days=1), dt.timedelta(days=14, hours=3), dt.timedelta(days=19),
           dt.timedelta(days=28, microseconds=-1)]
ATTRS = ("name", "segment", "owner", "plan", "region")
SETTINGS = settings(max_examples=int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "20")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def month_start(month: str) -> dt.datetime:
    return dt.datetime(int(month[:4]), int(month[5:]), 1, tzinfo=UTC)


def month_of(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m")


def next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:])
    return f"{y + m // 12}-{m % 12 + 1:02d}"


# ------------------------------------------------------------------------------------------------ fact ops
usage_op = st.tuples(st.just("usage"), st.sampled_from(SOURCE_IDS), st.sampled_from(METERS),
                     st.sampled_from(MONTHS + ["2026-04"]), st.sampled_from(OFFSETS), st.integers(0, 30))
link_op = st.tuples(st.just("link"), st.sampled_from(SOURCE_IDS), st.sampled_from(CUSTOMERS), st.sampled_from(EFFECTIVE))
attr_op = st.tuples(st.just("attr"), st.sampled_from(CUSTOMERS), st.sampled_from(EFFECTIVE),
                    st.dictionaries(st.sampled_from(["segment", "plan", "region"]),
                                    st.one_of(st.none(), st.sampled_from(["x", "y"] + PLANS)), max_size=3))
price_op = st.tuples(st.just("price"), st.sampled_from(PLANS), st.sampled_from(["2025-12", "2026-02"]),
                     st.integers(0, 500),
                     st.dictionaries(st.sampled_from(METERS), st.tuples(st.integers(0, 20), st.integers(0, 5)),
                                     max_size=2))
invoice_op = st.tuples(st.just("invoice"), st.sampled_from(SOURCE_IDS), st.sampled_from(MONTHS),
                       st.integers(0, 100), st.dictionaries(st.sampled_from(METERS), st.integers(0, 40), max_size=2))
credit_op = st.tuples(st.just("credit"), st.sampled_from(CUSTOMERS), st.sampled_from(MONTHS + ["2026-04"]),
                      st.integers(1, 50))
close_op = st.just(("close",))
fact_ops = st.lists(st.one_of(usage_op, usage_op, usage_op, link_op, link_op, attr_op, price_op, invoice_op, credit_op,
                              close_op, close_op), min_size=1, max_size=30)


@dataclass
class Facts:
    """The facts of one generated sequence, by relation, each row starting with its position."""

    rows: list[tuple[str, tuple]] = field(default_factory=list)

    @classmethod
    def from_ops(cls, ops: list[tuple]) -> "Facts":
        facts, keys, closed, n = cls(), set(), [], 0
        for op in ops:
            kind = op[0]
            if kind == "usage":
                _, (src, scid), meter, month, offset, qty = op
                row = ("usage_facts", (f"e{len(facts.rows)}", src, scid, meter, qty, month_start(month) + offset))
            elif kind == "link":
                _, (src, scid), customer, eff = op
                if (src, scid, eff) in keys:
                    continue
                keys.add((src, scid, eff))
                row = ("identity_link_facts", (src, scid, customer, eff))
            elif kind == "attr":
                _, customer, eff, attrs = op
                if (customer, eff) in keys:
                    continue
                keys.add((customer, eff))
                row = ("attribute_facts", (customer, eff, json.dumps(attrs)))
            elif kind == "price":
                _, plan, month, fee, meters = op
                if (plan, month) in keys:
                    continue
                keys.add((plan, month))
                meters = {m: {"included_units": inc, "unit_price_cents": p} for m, (inc, p) in meters.items()}
                row = ("price_facts", (plan, month, fee, json.dumps(meters)))
            elif kind == "invoice":
                _, (src, scid), period, fee, lines = op
                n += 1
                total = fee + sum(lines.values()) * 2 + (n % 2)  # every other invoice mismatches its lines
                row = ("invoice_facts", (f"in{n}", src, scid, period, month_start(next_month(period)), "USD", total),
                       [(f"in{n}", 1, "L1", "subscription", None, None, fee)]
                       + [(f"in{n}", i + 2, f"L{i + 2}", "usage", m, q, q * 2) for i, (m, q) in enumerate(lines.items())])
            elif kind == "credit":
                _, customer, month, amount = op
                n += 1
                row = ("credit_facts", (f"cr{n}", customer, None, amount, "goodwill", None, "prop",
                                        month_start(month) + dt.timedelta(days=2)))
            else:
                month = next((m for m in MONTHS if m not in closed), None)
                if month is None:
                    continue
                closed.append(month)
                row = ("period_close_facts", (month, "prop", month_start(next_month(month))))
            facts.rows.append(row)
        return facts

    def insert(self, conn: psycopg.Connection, start: int, stop: int) -> None:
        """Appends facts [start, stop) at positions start+1 .. stop (position = index + 1)."""
        with conn.cursor() as cur:
            for i in range(start, stop):
                table, values, *lines = self.rows[i]
                marks = ", ".join(["%s"] * (len(values) + 1))
                cur.execute(f"INSERT INTO {table} VALUES ({marks})", (i + 1, *values))
                if table != "usage_facts":  # as in the store: every other fact is an events row
                    cur.execute("INSERT INTO ledger_events VALUES (%s)", (i + 1,))
                for line in (lines[0] if lines else []):
                    cur.execute("INSERT INTO invoice_line_facts VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (i + 1, *line))
        conn.commit()

    def of(self, table: str) -> list[tuple]:
        return [(i + 1, *r[1]) for i, r in enumerate(self.rows) if r[0] == table]


# ------------------------------------------------------------------------------------------------ harness
@pytest.fixture(scope="module")
def dsn():
    with scratch_database("proj_dev_prop") as dsn:
        yield dsn


def reset(conn: psycopg.Connection) -> None:
    conn.execute("DROP SCHEMA IF EXISTS ledger_proj CASCADE")
    conn.execute("TRUNCATE ledger_events, " + ", ".join(engine.FACT_RELATIONS))
    conn.commit()


def checksums(conn: psycopg.Connection) -> dict[str, str]:
    return {t: runner.table_checksum(conn, runner.LIVE_SCHEMA, t) for t in engine.TABLES}


def run_split(conn: psycopg.Connection, facts: Facts, cuts: list[bool], on_batch=None) -> list[str | None]:
    """Projects an empty store, then appends the facts batch by batch (a cut after fact i), projecting each;
    returns each batch's path through Finance's read models."""
    projector.project(conn)
    start = 0
    paths = []
    for i in range(len(facts.rows)):
        if i == len(facts.rows) - 1 or cuts[i % len(cuts)]:
            facts.insert(conn, start, i + 1)
            report = projector.project(conn)
            assert report.to_position == i + 1 and report.from_position == start
            paths.append(report.path)
            start = i + 1
            if on_batch:
                on_batch(start)
    return paths


def rows(conn: psycopg.Connection, query: str) -> list[tuple]:
    return conn.execute(query).fetchall()


# ------------------------------------------------------------------------------------------------ properties
@SETTINGS
@given(ops=fact_ops, cuts=st.lists(st.booleans(), min_size=1, max_size=8))
def test_rebuild_equals_incremental_for_any_split(dsn, ops, cuts):
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        run_split(conn, facts, cuts)
        report = projector.check(conn)
        assert report and all(r["equal"] for r in report.values()), {t: r for t, r in report.items() if not r["equal"]}


@SETTINGS
@given(ops=fact_ops, cuts=st.lists(st.booleans(), min_size=1, max_size=8))
def test_incremental_batch_split_equals_one_pass(dsn, ops, cuts):
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        run_split(conn, facts, [False])  # one incremental pass over every fact
        one_pass = checksums(conn)
        reset(conn)
        run_split(conn, facts, cuts)
        assert checksums(conn) == one_pass


def expected_resolution(facts: Facts):
    """SPEC §4.1 read directly: on-time units per (customer, month, meter) and each other fact's outcome."""
    links = facts.of("identity_link_facts")  # (pos, source, scid, customer, eff)
    closes = {m: pos for pos, m, *_ in facts.of("period_close_facts")}

    def resolve(src, scid, t, keep):
        cands = [lk for lk in links if (lk[1], lk[2]) == (src, scid) and lk[4] <= t and keep(lk[0])]
        return max(cands, key=lambda lk: lk[4])[3] if cands else None

    on_time, late = defaultdict(int), {}
    for pos, _eid, src, scid, meter, qty, t in facts.of("usage_facts"):
        m = month_of(t)
        c = closes.get(m, float("inf"))
        customer = resolve(src, scid, t, lambda p: p < c) if pos < c else None
        if customer is not None:
            on_time[(customer, m, meter)] += qty
            continue
        first = min((lk[0] for lk in links if (lk[1], lk[2]) == (src, scid) and lk[4] <= t), default=None)
        if m not in closes or first is None:
            late[pos] = (None, None, None)
            continue
        a = max(pos, first)
        latest_closed = max(month for month, p in closes.items() if p < a)
        late[pos] = (resolve(src, scid, t, lambda p: p <= a), a, next_month(latest_closed))
    return dict(on_time), late


@SETTINGS
@given(ops=fact_ops, cuts=st.lists(st.booleans(), min_size=1, max_size=8))
def test_usage_resolution_follows_the_rule_fact_by_fact(dsn, ops, cuts):
    facts = Facts.from_ops(ops)
    on_time, late = expected_resolution(facts)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        run_split(conn, facts, cuts)
        got_on_time = {(c, m, k): int(u) for c, m, k, u in rows(
            conn, "SELECT customer_id, month, meter, sum(units) FROM ledger_proj.usage_on_time GROUP BY 1, 2, 3")}
        got_late = {p: (c, a, pm) for p, c, a, pm in rows(
            conn, "SELECT position, customer_id, attribution_position, posting_month FROM ledger_proj.usage_late")}
    assert got_on_time == on_time
    assert got_late == late


def expected_versions(facts: Facts) -> dict[str, list[tuple]]:
    by_customer = defaultdict(list)
    for _pos, customer, eff, attrs in facts.of("attribute_facts"):
        by_customer[customer].append((eff, json.loads(attrs)))
    versions = {}
    for customer, fs in by_customer.items():
        fs.sort(key=lambda f: f[0])
        out: list[list] = []
        for i, (eff, _) in enumerate(fs):
            state = {}
            for _, attrs in fs[: i + 1]:
                state.update(attrs)
            values = tuple(state.get(a) for a in ATTRS)
            if not out or out[-1][1] != values:
                out.append([eff, values])
        versions[customer] = [(n + 1, eff, out[n + 1][0] if n + 1 < len(out) else None, *vals)
                              for n, (eff, vals) in enumerate(out)]
    return versions


@SETTINGS
@given(ops=fact_ops, cuts=st.lists(st.booleans(), min_size=1, max_size=8))
def test_scd2_versions_follow_the_rule_and_never_overlap_or_gap(dsn, ops, cuts):
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        run_split(conn, facts, cuts)
        got = defaultdict(list)
        for r in rows(conn, "SELECT customer_id, version, valid_from, valid_to, name, segment, owner, plan, region "
                            "FROM ledger_proj.dim_customer ORDER BY customer_id, version"):
            got[r[0]].append(tuple(r[1:]))
    assert dict(got) == expected_versions(facts)
    for versions in got.values():
        assert [v[0] for v in versions] == list(range(1, len(versions) + 1))
        for before, after in zip(versions, versions[1:]):
            assert before[2] == after[1]            # no gap, no overlap
            assert before[3:] != after[3:]          # maximal intervals
        assert versions[-1][2] is None


@SETTINGS
@given(ops=fact_ops, cuts=st.lists(st.booleans(), min_size=1, max_size=8))
def test_closed_month_on_time_units_never_change_after_close(dsn, ops, cuts):
    facts = Facts.from_ops(ops)
    frozen: dict[str, list] = {}
    query = ("SELECT month, customer_id, meter, sum(units) FROM ledger_proj.usage_on_time "
             "WHERE month IN (SELECT month FROM ledger_proj.period_close) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")

    with psycopg.connect(dsn) as conn:
        def observe(_position):
            by_month = defaultdict(list)
            for month, *rest in rows(conn, query):
                by_month[month].append(tuple(rest))
            closed = [r[0] for r in rows(conn, "SELECT month FROM ledger_proj.period_close")]
            for month in closed:
                snapshot = by_month.get(month, [])
                assert frozen.setdefault(month, snapshot) == snapshot, month

        reset(conn)
        run_split(conn, facts, cuts, on_batch=observe)


@SETTINGS
@given(ops=fact_ops)
def test_customer_month_balance_is_invoiced_minus_credits_plus_late_adjustments(dsn, ops):
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        run_split(conn, facts, [True, False])
        bad = rows(conn, """
            WITH inv AS (SELECT customer_id, period AS month, sum(total_cents) AS v FROM ledger_proj.invoice_resolved
                         WHERE customer_id IS NOT NULL GROUP BY 1, 2),
                 cr AS (SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
                               sum(amount_cents) AS v FROM credit_facts GROUP BY 1, 2),
                 la AS (SELECT customer_id, posting_month AS month, sum(amount_cents) AS v
                        FROM ledger_proj.late_adjustments GROUP BY 1, 2)
            SELECT cm.* FROM ledger_proj.customer_month cm
            LEFT JOIN inv USING (customer_id, month) LEFT JOIN cr USING (customer_id, month)
            LEFT JOIN la USING (customer_id, month)
            WHERE cm.balance_cents <> cm.invoiced_cents - cm.credits_cents + cm.late_adjustment_cents
               OR cm.invoiced_cents <> coalesce(inv.v, 0) OR cm.credits_cents <> coalesce(cr.v, 0)
               OR cm.late_adjustment_cents <> coalesce(la.v, 0)""")
        missing = rows(conn, """
            SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM credit_facts
            EXCEPT SELECT customer_id, month FROM ledger_proj.customer_month""")
    assert bad == [] and missing == []


def test_on_time_usage_of_open_months_takes_the_additive_path_and_equals_rebuild(dsn):
    ops = [("link", SOURCE_IDS[0], "c1", EFFECTIVE[0]), ("link", SOURCE_IDS[1], "c2", EFFECTIVE[0]),
           ("attr", "c1", EFFECTIVE[0], {"plan": "pa"}), ("price", "pa", "2025-12", 100, {"m1": (3, 2)}),
           ("invoice", SOURCE_IDS[0], "2026-02", 100, {"m1": 4}),
           ("usage", SOURCE_IDS[0], "m1", "2026-01", OFFSETS[1], 2), ("close",),
           ("usage", SOURCE_IDS[0], "m1", "2026-02", OFFSETS[1], 5),   # additive: open month, linked
           ("usage", SOURCE_IDS[0], "m2", "2026-02", OFFSETS[2], 1),
           ("usage", SOURCE_IDS[1], "m1", "2026-03", OFFSETS[0], 7),
           ("usage", SOURCE_IDS[0], "m1", "2026-02", OFFSETS[3], 4)]
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        paths = run_split(conn, facts, [False] * 6 + [True, False, True, False])
        assert paths == ["scoped", "additive", "additive"]
        report = projector.check(conn)
        assert all(r["equal"] for r in report.values()), {t: r for t, r in report.items() if not r["equal"]}


@pytest.mark.parametrize("odd_one_out", [
    ("usage", SOURCE_IDS[2], "m1", "2026-02", OFFSETS[0], 3),   # open month, but its source id has no link
    ("usage", SOURCE_IDS[0], "m2", "2026-01", OFFSETS[4], 6),   # a fact of the closed month: late
    ("usage", SOURCE_IDS[1], "m1", "2026-02", OFFSETS[0], 2),   # open month, before its source id's first link
])
def test_a_usage_batch_adds_its_on_time_facts_in_place_and_refills_for_the_others(dsn, odd_one_out):
    ops = [("link", SOURCE_IDS[0], "c1", EFFECTIVE[0]), ("link", SOURCE_IDS[1], "c2", EFFECTIVE[3]),
           ("attr", "c1", EFFECTIVE[0], {"plan": "pa"}), ("price", "pa", "2025-12", 100, {"m1": (3, 2)}),
           ("usage", SOURCE_IDS[0], "m1", "2026-01", OFFSETS[1], 2), ("close",),
           ("usage", SOURCE_IDS[0], "m1", "2026-02", OFFSETS[1], 5),   # on time in an open month ...
           odd_one_out,                                                # ... in one batch with this fact
           ("usage", SOURCE_IDS[0], "m1", "2026-03", OFFSETS[2], 4),   # additive again, on its own
           odd_one_out[:4] + (OFFSETS[3], 1)]                          # and a batch of only such a fact
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        paths = run_split(conn, facts, [False] * 5 + [True, False, True, True, False])
        assert paths == ["scoped", "additive+scoped", "additive", "scoped"]
        report = projector.check(conn)
        assert all(r["equal"] for r in report.values()), {t: r for t, r in report.items() if not r["equal"]}


def test_a_split_that_does_not_add_up_falls_back_to_the_general_path(dsn, monkeypatch):
    """The facts left out of the in-place addition are checked against those staged one by one; a mismatch (a
    bug, never expected) rolls the split back and the batch goes the general way, with an error in the log."""
    from structlog.testing import capture_logs

    real = engine._split_batch

    def miscounted(conn, t):
        rest = real(conn, t)
        return engine.Rest(rest.facts, rest.digest ^ 1) if rest.facts else rest

    monkeypatch.setattr(engine, "_split_batch", miscounted)
    ops = [("link", SOURCE_IDS[0], "c1", EFFECTIVE[0]), ("attr", "c1", EFFECTIVE[0], {"plan": "pa"}),
           ("price", "pa", "2025-12", 100, {"m1": (3, 2)}),
           ("usage", SOURCE_IDS[0], "m1", "2026-01", OFFSETS[1], 2), ("close",),
           ("usage", SOURCE_IDS[0], "m1", "2026-02", OFFSETS[1], 5),   # on time in an open month ...
           ("usage", SOURCE_IDS[0], "m1", "2026-01", OFFSETS[4], 6)]   # ... and late into the closed one
    facts = Facts.from_ops(ops)
    with psycopg.connect(dsn) as conn:
        reset(conn)
        with capture_logs() as logs:
            paths = run_split(conn, facts, [False] * 4 + [True, False])
        assert paths == ["scoped", "scoped"]
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["usage_batch_split_mismatch"]
        report = projector.check(conn)
        assert all(r["equal"] for r in report.values()), {t: r for t, r in report.items() if not r["equal"]}
