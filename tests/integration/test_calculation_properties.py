"""Properties of closed months, restatements and calculations (SPEC §4.0, §4.2, §4.6, §6.2) over random small fact
sequences (hypothesis) in which attribute and price facts back-dated into closed months, and promotions of another
calculation, arrive between and after closes:

- rebuild equals incremental, and any batch split equals one incremental pass;
- every customer-month's plan, calculation and expected amounts are those of its pricing point E(m), and every late
  adjustment and restatement is the change of §4.2 / §4.6 at its position, each read directly from the rules below
  (`Oracle`), independently of the projector's SQL;
- for every closed customer-month and line, its amount at the close plus its late adjustments and restatements
  equals the amount recomputed now (§4.6's invariant);
- the pricing SQL prices every customer-month as the rule does under both plan rules, and daily_prorated equals
  month_start for the customer-months with one plan all month; `calc diff` lists exactly the lines that differ;
- no closed month's reported amounts, plan or calculation change when a later fact arrives.

The harness (facts, stores, splits) is test_projector_properties'. The slow tests take LEDGER_PROPERTY_EXAMPLES
examples each; `test_short_profile_*` runs every check on a few examples in the fast lane.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from fractions import Fraction

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import projector
from ledger.projector.calc_diff import diff
from ledger.projector.runner import LIVE_SCHEMA
from ledger.projector.templates import FULL, STAGE, Target, sections
from tests.integration.test_projector_properties import (  # noqa: F401  (new_store is a fixture)
    CALCULATIONS, CUSTOMERS, EFFECTIVE, METERS, MONTHS, PLANS, SOURCE_IDS, Facts, attr_op, checksums,
    credit_op, invoice_op, link_op, month_of, month_start, new_store, next_month, rows, run_split, usage_op,
)
from tests.scenarios import head_position

UTC = dt.timezone.utc
NEVER = float("inf")
SLOW = settings(max_examples=int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "20")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SHORT = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# prices for any month of the scenario, so that a price fact after a close can reach back into a closed month
price_op = st.tuples(st.just("price"), st.sampled_from(PLANS), st.sampled_from(["2025-12", "2026-01", "2026-02",
                                                                               "2026-03"]),
                     st.integers(0, 500),
                     st.dictionaries(st.sampled_from(METERS), st.tuples(st.integers(0, 20), st.integers(0, 5)),
                                     max_size=2))
# plan changes at month starts and strictly inside months (split months), back-dated or not
plan_op = st.tuples(st.just("attr"), st.sampled_from(CUSTOMERS), st.sampled_from(EFFECTIVE + [
                        dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 20, 6, tzinfo=UTC),
                        dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 3, 31, 23, tzinfo=UTC)]),
                    st.fixed_dictionaries({"plan": st.one_of(st.none(), st.sampled_from(PLANS))}))
promote_op = st.tuples(st.just("promote"), st.sampled_from(sorted(CALCULATIONS)))
body_op = st.one_of(usage_op, usage_op, usage_op, link_op, attr_op, plan_op, plan_op, price_op, price_op, invoice_op,
                    credit_op, promote_op)
# customers linked, on plans and priced, with usage; then two to four phases of facts, a close after each but the
# last: whatever a phase holds (back-dated plans and prices, promotions, late usage) arrives after closes
prelude = st.tuples(
    st.lists(st.sampled_from(CUSTOMERS), min_size=len(SOURCE_IDS), max_size=len(SOURCE_IDS)).map(
        lambda owners: [("link", sid, c, EFFECTIVE[0]) for sid, c in zip(SOURCE_IDS, owners)]),
    st.lists(plan_op, min_size=1, max_size=4), st.lists(price_op, min_size=1, max_size=3),
    st.lists(usage_op, min_size=2, max_size=6),
).map(lambda parts: [op for part in parts for op in part])
phases = st.lists(st.lists(body_op, max_size=6), min_size=2, max_size=4).map(
    lambda ps: [op for i, phase in enumerate(ps) for op in ([("close",)] if i else []) + phase])
scenarios = st.tuples(prelude, phases).map(lambda p: p[0] + p[1])
cut_lists = st.lists(st.booleans(), min_size=1, max_size=8)


# ------------------------------------------------------------------------------------------------ the rules read
class Oracle:
    """SPEC §4.0-§4.2 and §4.6 read directly from a sequence of facts and their positions (no SQL)."""

    def __init__(self, facts: Facts):
        self.closes = {m: pos for pos, m, *_ in facts.of("period_close_facts")}
        self.attrs = sorted(facts.of("attribute_facts"))            # (pos, customer, eff, attrs json)
        self.prices = facts.of("price_facts")                       # (pos, plan, month, fee, meters json)
        self.promotions = sorted(facts.of("calculation_promoted_facts"))  # (pos, name)
        self.positions = sorted(facts.positions)
        self.units = self._usage(facts)                             # (customer, month, day, meter, qty, a|None)

    # -- usage (SPEC §4.1) -----------------------------------------------------------------------------------
    def _usage(self, facts: Facts) -> list[tuple]:
        links = facts.of("identity_link_facts")  # (pos, source, scid, customer, eff)

        def resolve(src, scid, t, keep):
            cands = [lk for lk in links if (lk[1], lk[2]) == (src, scid) and lk[4] <= t and keep(lk[0])]
            return max(cands, key=lambda lk: lk[4])[3] if cands else None

        out = []
        for pos, _eid, src, scid, meter, qty, t in facts.of("usage_facts"):
            m, day = month_of(t), t.astimezone(UTC).day
            c = self.closes.get(m, NEVER)
            customer = resolve(src, scid, t, lambda p: p < c) if pos < c else None
            if customer is not None:
                out.append((customer, m, day, meter, qty, None))
                continue
            first = min((lk[0] for lk in links if (lk[1], lk[2]) == (src, scid) and lk[4] <= t), default=None)
            if m in self.closes and first is not None:
                a = max(pos, first)
                out.append((resolve(src, scid, t, lambda p: p <= a), m, day, meter, qty, a))
        return out

    # -- what is known at a position -------------------------------------------------------------------------
    def rule_at(self, q: int) -> tuple[str, str]:
        name = next((n for pos, n in reversed(self.promotions) if pos <= q), "v1")
        return name, CALCULATIONS[name]

    def closed_before(self, q: int) -> list[str]:
        return [m for m, pos in self.closes.items() if pos < q]

    def posting_month(self, q: int) -> str:
        """The earliest open month at q (SPEC §3.7); the scenario's first month while none is closed."""
        closed = self.closed_before(q)
        return next_month(max(closed)) if closed else MONTHS[0]

    def _state(self, customer: str, q: int, t: dt.datetime) -> dict | None:
        """The customer's attribute values in effect at instant t as known at q; None when no version is."""
        known = sorted((eff, pos, json.loads(a)) for pos, c, eff, a in self.attrs if c == customer and pos <= q)
        if not known or known[0][0] > t:
            return None
        state: dict = {}
        for eff, _pos, values in known:
            if eff <= t:
                state.update(values)
        return state

    def plans_by_day(self, customer: str, month: str, q: int, plan_rule: str) -> list[str | None]:
        """Each day's plan (SPEC §3.3, §4.0): the version in effect at the day's first instant (the month's first
        instant under month_start), else the first version that starts within the month."""
        starts = month_start(month)
        ends = month_start(next_month(month))
        days = (ends - starts).days
        known = sorted(eff for pos, c, eff, _ in self.attrs if c == customer and pos <= q)
        within = next((eff for eff in known if starts <= eff < ends), None)

        def plan_at(t: dt.datetime) -> str | None:
            state = self._state(customer, q, t)
            if state is None:
                state = self._state(customer, q, within) if within is not None else None
            return (state or {}).get("plan")

        if plan_rule == "month_start":
            return [plan_at(starts)] * days
        return [plan_at(starts + dt.timedelta(days=d)) for d in range(days)]

    def price(self, plan: str, month: str, q: int) -> tuple[int, dict]:
        known = [(m, fee, json.loads(meters)) for pos, p, m, fee, meters in self.prices
                 if p == plan and m <= month and pos <= q]
        if not known:
            return 0, {}
        _, fee, meters = max(known, key=lambda k: k[0])
        return fee, meters

    # -- amount(c, m, line, Q) (SPEC §4.0) ---------------------------------------------------------------------
    def units_by_day(self, customer: str, month: str, q: int, on_time_only: bool = False) -> dict[str, list[int]]:
        days = (month_start(next_month(month)) - month_start(month)).days
        out: dict[str, list[int]] = defaultdict(lambda: [0] * days)
        for c, m, day, meter, qty, a in self.units:
            if c == customer and m == month and (a is None or (not on_time_only and a <= q)):
                out[meter][day - 1] += qty
        return out

    def lines(self, customer: str, month: str, q: int, plan_rule: str | None = None, on_time_only: bool = False,
              meters: tuple = ()) -> dict[str, dict]:
        """Every line of (customer, month) at q: '' the base fee, and each meter with units or in METERS; each
        line's amount, included and overage units (None where no plan's price lists the meter), and whether it
        has a plan."""
        plan_rule = plan_rule or self.rule_at(q)[1]
        plans = self.plans_by_day(customer, month, q, plan_rule)
        days = len(plans)
        n = defaultdict(int)
        for plan in plans:
            if plan is not None:
                n[plan] += 1
        units = self.units_by_day(customer, month, q, on_time_only)
        fee = sum((Fraction(self.price(p, month, q)[0] * k, days) for p, k in n.items()), Fraction(0))
        out = {"": {"amount": round(fee) if n else 0, "included": None, "overage": None}}
        for meter in sorted(set(units) | set(meters)):
            by_day = units[meter]
            amount, included, overage, listed = 0, 0, 0, False
            for p, k in n.items():
                entry = self.price(p, month, q)[1].get(meter)
                if entry is None:
                    continue
                listed = True
                u = sum(x for x, plan in zip(by_day, plans) if plan == p)
                inc = entry["included_units"] * k // days
                amount += max(0, u - inc) * entry["unit_price_cents"]
                included += inc
                overage += max(0, u - inc)
            out[meter] = {"amount": amount, "included": included if listed else None,
                          "overage": overage if listed else None}
        out[""]["has_plan"] = bool(n)
        return out

    def amount(self, customer: str, month: str, line: str, q: int) -> int:
        return self.lines(customer, month, q).get(line, {"amount": 0})["amount"]

    # -- what posts after a close (SPEC §4.2, §4.6) --------------------------------------------------------------
    def pricing_points(self, month: str, head: int) -> int:
        """E(m): the position before the month's close, or the head while it is open."""
        return self.closes[month] - 1 if month in self.closes else head

    def late_adjustments(self) -> dict[tuple, list]:
        """(customer, original_month, meter, posting_month) -> [units, amount_cents, event_count, first, last]."""
        out: dict[tuple, list] = {}
        positions = defaultdict(lambda: defaultdict(list))
        for c, m, _day, meter, qty, a in self.units:
            if a is not None and c is not None:
                positions[(c, m, meter, self.posting_month(a))][a].append(qty)
        for key, by_a in positions.items():
            c, m, meter, _ = key
            amount = sum(self.amount(c, m, meter, a) - self.amount(c, m, meter, a - 1) for a in by_a)
            units = [q for qs in by_a.values() for q in qs]
            out[key] = [sum(units), amount, len(units), min(by_a), max(by_a)]
        return out

    def restatements(self, head: int) -> dict[tuple, list]:
        """(customer, original_month, meter, posting_month, cause) -> [amount_cents, change_count, first, last]."""
        causes = {pos: "repricing" for pos, *_ in self.attrs} | {pos: "repricing" for pos, *_ in self.prices}
        causes |= {pos: "recalculation" for pos, _ in self.promotions}
        out: dict[tuple, list] = {}
        for q in sorted(p for p in causes if p <= head):
            for month in self.closed_before(q):
                for customer in CUSTOMERS:
                    after, before = self.lines(customer, month, q), self.lines(customer, month, q - 1)
                    for line in sorted(set(after) | set(before)):
                        change = after.get(line, {"amount": 0})["amount"] - before.get(line, {"amount": 0})["amount"]
                        if change:
                            key = (customer, month, line, self.posting_month(q), causes[q])
                            got = out.setdefault(key, [0, 0, q, q])
                            got[0] += change
                            got[1] += 1
                            got[3] = q
        return out


# ------------------------------------------------------------------------------------------------ the checks
def read_models_follow_the_rules(conn: psycopg.Connection, oracle: Oracle) -> None:
    """customer_month(_meter) at E(m), late_adjustments and restatements, each as the oracle reads the rules."""
    head = head_position(conn)
    for customer, month, plan, expected, calculation in rows(conn, """
            SELECT customer_id, month, plan, expected_cents, calculation FROM ledger_proj.customer_month"""):
        at = oracle.pricing_points(month, head)
        name, rule = oracle.rule_at(at)
        lines = oracle.lines(customer, month, at, on_time_only=True, meters=tuple(METERS))
        assert calculation == name, (customer, month)
        assert plan == (oracle.plans_by_day(customer, month, at, "month_start")[0]), (customer, month)
        want = sum(v["amount"] for v in lines.values()) if lines[""]["has_plan"] else None
        assert expected == want, (customer, month, at, rule, lines)
        for meter, included, overage, cents in rows(conn, f"""
                SELECT meter, included_units, overage_units, expected_cents FROM ledger_proj.customer_month_meter
                WHERE customer_id = '{customer}' AND month = '{month}'"""):
            line = lines[meter]
            if not lines[""]["has_plan"]:
                assert (included, overage, cents) == (None, None, None), (customer, month, meter)
                continue
            assert cents == line["amount"], (customer, month, meter, at, rule, lines)
            assert included == line["included"], (customer, month, meter)
            if included is not None:
                assert overage == line["overage"], (customer, month, meter)
    got_late = {tuple(r[:4]): list(r[4:]) for r in rows(conn, """
        SELECT customer_id, original_month, meter, posting_month, units, amount_cents, event_count, first_position,
               last_position FROM ledger_proj.late_adjustments""")}
    assert got_late == oracle.late_adjustments()
    got_restated = {tuple(r[:5]): list(r[5:]) for r in rows(conn, """
        SELECT customer_id, original_month, meter, posting_month, cause, amount_cents, change_count, first_position,
               last_position FROM ledger_proj.restatements""")}
    assert got_restated == oracle.restatements(head)
    # what the example exercised (--hypothesis-show-statistics)
    event(f"restatements: {sorted({k[4] for k in got_restated}) or 'none'}")
    event(f"late adjustments: {'some' if got_late else 'none'}; promotions: {len(oracle.promotions)}")


def day_grain_adds_up(conn: psycopg.Connection, oracle: Oracle) -> None:
    """usage_on_time_day holds, for exactly the customer-months an attribute fact takes effect strictly inside, their
    on-time units by meter and UTC day (what the pricing rule reads instead of the facts)."""
    split = set()
    for _pos, customer, eff, _attrs in oracle.attrs:
        eff = eff.astimezone(UTC)
        if eff != eff.replace(day=1, hour=0, minute=0, second=0, microsecond=0):
            split.add((customer, month_of(eff)))
    assert set(rows(conn, "SELECT customer_id, month FROM ledger_proj.split_month")) == split
    expected: dict = defaultdict(int)
    for customer, month, day, meter, qty, attributed in oracle.units:
        if attributed is None and (customer, month) in split:
            expected[(customer, month, meter, day)] += qty
    got = dict(((c, m, meter, day), units) for c, m, meter, day, units in rows(
        conn, "SELECT customer_id, month, meter, day, sum(units)::bigint FROM ledger_proj.usage_on_time_day"
              " GROUP BY 1, 2, 3, 4"))
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}


def closed_months_add_up(conn: psycopg.Connection, oracle: Oracle) -> None:
    """SPEC §4.6's invariant: for every closed customer-month and line, the amount at E(m) plus every late adjustment
    and restatement of it equals the amount at the head, with the reported amounts where a row reports them."""
    head = head_position(conn)
    posted = defaultdict(int)
    for customer, month, meter, cents in rows(conn, """
            SELECT customer_id, original_month, meter, amount_cents FROM ledger_proj.late_adjustments
            UNION ALL
            SELECT customer_id, original_month, meter, amount_cents FROM ledger_proj.restatements"""):
        posted[(customer, month, meter)] += cents
    reported = {(c, m, k): v for c, m, k, v in rows(conn, """
        SELECT customer_id, month, meter, expected_cents FROM ledger_proj.customer_month_meter
        WHERE expected_cents IS NOT NULL""")}
    for customer, month, base in rows(conn, """
            SELECT cm.customer_id, cm.month, cm.expected_cents - coalesce(sum(cmm.expected_cents), 0)
            FROM ledger_proj.customer_month cm
            LEFT JOIN ledger_proj.customer_month_meter cmm USING (customer_id, month)
            WHERE cm.expected_cents IS NOT NULL GROUP BY 1, 2, cm.expected_cents"""):
        reported[(customer, month, "")] = base
    for month in oracle.closes:
        at = oracle.closes[month] - 1
        for customer in CUSTOMERS:
            now = oracle.lines(customer, month, head)
            then = oracle.lines(customer, month, at, on_time_only=True)
            for line in set(now) | set(then):
                at_close = reported.get((customer, month, line))  # the row's figure where one reports it
                if at_close is None:
                    at_close = then.get(line, {"amount": 0})["amount"]
                assert at_close + posted[(customer, month, line)] == now.get(line, {"amount": 0})["amount"], (
                    customer, month, line)


def _price_all(conn: psycopg.Connection, head: int) -> dict[tuple, int]:
    """Every customer-month of the scenario's customers, priced at the head by projections/pricing.sql under both
    plan rules, in a transaction rolled back: (customer, month, plan_rule, line) -> amount_cents. Each is also
    priced for each meter alone (a request with a meter, as the late adjustments price), in the same run: that
    request's lines must be exactly the whole month's line of its meter."""
    target = Target(LIVE_SCHEMA, head)
    with conn.transaction(force_rollback=True):
        conn.execute(f"DROP TABLE IF EXISTS {STAGE}.price_req")
        conn.execute(f"""
            CREATE TABLE {STAGE}.price_req AS
            SELECT row_number() OVER () AS req, c AS customer_id, m AS month, {head}::bigint AS q, r AS plan_rule,
                   {head}::bigint AS late_through, meter
            FROM unnest(%s::text[]) c, unnest(%s::text[]) m, unnest(%s::text[]) r,
                 unnest(%s::text[]) meter""",
                     (CUSTOMERS, MONTHS + ["2026-04"], sorted(set(CALCULATIONS.values())), [None, *METERS]))
        conn.execute(target.render(sections("pricing")["price"], FULL))
        whole, alone = {}, {}
        for c, m, rule, meter, line, cents in conn.execute(f"""
                SELECT r.customer_id, r.month, r.plan_rule, r.meter, l.meter, l.amount_cents
                FROM {STAGE}.price_line l JOIN {STAGE}.price_req r USING (req)"""):
            if meter is None:
                whole[(c, m, rule, line)] = cents
            else:
                assert line == meter, (c, m, rule, meter, line)
                alone[(c, m, rule, line)] = cents
        assert alone == {k: v for k, v in whole.items() if k[3] in METERS}
        return whole


def pricing_follows_both_rules(conn: psycopg.Connection, oracle: Oracle) -> None:
    """The pricing SQL equals the rule under month_start and daily_prorated for every customer-month; the two are
    equal where the month has one plan all month; `calc diff` lists exactly the lines that differ."""
    head = head_position(conn)
    sql = _price_all(conn, head)
    for customer in CUSTOMERS:
        for month in MONTHS + ["2026-04"]:
            priced = {}
            for rule in sorted(set(CALCULATIONS.values())):
                lines = oracle.lines(customer, month, head, rule)
                priced[rule] = {k: v["amount"] for k, v in lines.items()}
                for line in set(lines) | {k[3] for k in sql if k[:3] == (customer, month, rule)}:
                    assert sql.get((customer, month, rule, line), 0) == priced[rule].get(line, 0), (
                        customer, month, rule, line)
            if len(set(oracle.plans_by_day(customer, month, head, "daily_prorated"))) == 1:
                assert priced["month_start"] == priced["daily_prorated"], (customer, month)
    in_force = oracle.rule_at(head)
    for name, rule in CALCULATIONS.items():
        got = diff(conn, in_force=in_force, candidate=(name, rule), head=head)
        listed = {(c, m, k): (status, old, new) for c, m, k, status, old, new, d in got.rows if d == new - old}
        reported = {(c, m) for c, m in rows(conn, "SELECT customer_id, month FROM ledger_proj.customer_month")}
        want = {}
        for customer in CUSTOMERS:
            for month in MONTHS + ["2026-04"]:
                if month not in oracle.closes and (customer, month) not in reported:
                    continue  # an open month's lines are those of its customer-month rows
                old = oracle.lines(customer, month, head, in_force[1])
                new = oracle.lines(customer, month, head, rule)
                for line in set(old) | set(new):
                    a, b = old.get(line, {"amount": 0})["amount"], new.get(line, {"amount": 0})["amount"]
                    if a != b:
                        want[(customer, month, line)] = ("closed" if month in oracle.closes else "open", a, b)
        assert listed == want, name


FROZEN = {
    "customer_month": "SELECT customer_id, month, segment, owner, plan, region, usage_units, expected_cents, "
                      "calculation FROM ledger_proj.customer_month",
    "customer_month_meter": "SELECT customer_id, month, meter, on_time_units, included_units, overage_units, "
                            "expected_cents FROM ledger_proj.customer_month_meter",
    "unpriced_meter": "SELECT customer_id, month, meter, actual FROM ledger_proj.exceptions "
                      "WHERE kind = 'unpriced_meter'",
}


def closed_months_stand_still(conn: psycopg.Connection, frozen: dict) -> None:
    """Each closed month's reported amounts, plan, attributes and calculation as first seen closed: a later fact
    never changes them (a row may appear later, e.g. a customer's first late usage, but then keeps its values).
    No row with on-time usage goes away; a row without it may, when the invoice that made it moves to another
    customer: an invoice's customer is its source id resolved at `issued_at` with the links known at the head
    (§3.5), and invoices are summed as they arrive (§4.0)."""
    closed = {m for (m,) in rows(conn, "SELECT month FROM ledger_proj.period_close")}
    seen = set()
    for name, query in FROZEN.items():
        for row in rows(conn, query):
            if row[1] in closed:
                key = (name,) + tuple(row[:2 if name == "customer_month" else 3])
                seen.add(key)
                assert frozen.setdefault(key, row) == row, key
    gone = {key for key in set(frozen) - seen if _units_on_time(key, frozen[key])}
    assert not gone, gone


def _units_on_time(key: tuple, row: tuple) -> int:
    return {"customer_month": row[6], "customer_month_meter": row[3], "unpriced_meter": row[3]}[key[0]] or 0


# ------------------------------------------------------------------------------------------------ properties
def _projected(new_store, ops, cuts, on_batch=None):
    facts = Facts.from_ops(ops)
    store, conn = new_store()
    run_split(store, conn, facts, cuts, on_batch=(lambda _: on_batch(conn)) if on_batch else None)
    return facts, store, conn


def _all_equal(report: dict) -> None:
    assert report and all(r["equal"] for r in report.values()), {t: r for t, r in report.items() if not r["equal"]}


@pytest.mark.slow  # a fresh store per example
@SLOW
@given(ops=scenarios, cuts=cut_lists)
def test_rebuild_equals_incremental_with_backdated_facts_and_promotions(new_store, ops, cuts):
    _facts, _store, conn = _projected(new_store, ops, cuts)
    _all_equal(projector.check(conn))


@pytest.mark.slow  # two fresh stores per example
@SLOW
@given(ops=scenarios, cuts=cut_lists)
def test_any_batch_split_equals_one_pass_with_backdated_facts_and_promotions(new_store, ops, cuts):
    store, conn = new_store()
    run_split(store, conn, Facts.from_ops(ops), cuts, project_each=False)
    one_pass = checksums(conn)
    store, conn = new_store()
    run_split(store, conn, Facts.from_ops(ops), cuts)
    assert checksums(conn) == one_pass


@pytest.mark.slow  # a fresh store per example
@SLOW
@given(ops=scenarios, cuts=cut_lists)
def test_read_models_follow_the_pricing_rules_at_every_batch(new_store, ops, cuts):
    facts = Facts.from_ops(ops)
    store, conn = new_store()

    def each_batch(_count):
        oracle = Oracle(facts)  # the facts appended so far
        read_models_follow_the_rules(conn, oracle)
        closed_months_add_up(conn, oracle)
        day_grain_adds_up(conn, oracle)

    run_split(store, conn, facts, cuts, on_batch=each_batch)


@pytest.mark.slow  # a fresh store per example
@SLOW
@given(ops=scenarios, cuts=cut_lists)
def test_pricing_follows_both_plan_rules_and_calc_diff_lists_the_difference(new_store, ops, cuts):
    facts, _store, conn = _projected(new_store, ops, cuts)
    pricing_follows_both_rules(conn, Oracle(facts))


@pytest.mark.slow  # a fresh store per example
@SLOW
@given(ops=scenarios, cuts=cut_lists)
def test_no_closed_month_moves_when_later_facts_arrive(new_store, ops, cuts):
    frozen: dict = {}
    _projected(new_store, ops, cuts, on_batch=lambda conn: closed_months_stand_still(conn, frozen))


@SHORT
@given(ops=scenarios, cuts=cut_lists)
def test_short_profile_of_every_calculation_property(new_store, ops, cuts):
    """The fast lane's few examples: every check above on one store, and rebuild equals incremental."""
    facts = Facts.from_ops(ops)
    frozen: dict = {}
    store, conn = new_store()

    def each_batch(_count):
        closed_months_stand_still(conn, frozen)
        closed_months_add_up(conn, Oracle(facts))  # the facts appended so far
        day_grain_adds_up(conn, Oracle(facts))

    run_split(store, conn, facts, cuts, on_batch=each_batch)
    oracle = Oracle(facts)
    read_models_follow_the_rules(conn, oracle)
    pricing_follows_both_rules(conn, oracle)
    _all_equal(projector.check(conn))
