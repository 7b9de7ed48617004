"""`ledger trace` on the calculations example: the calculation that priced a month, and its restatements with the
facts that caused them (SPEC §4.0, §4.6)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.scenarios import Replay, expected_csv


@pytest.fixture
def calc_ledger(db_url, tmp_path, ledger):
    """The `ledger` command on a database holding the calculations example, replayed through the real commands."""
    work = tmp_path / "replay"
    work.mkdir()
    with Replay(db_url, work, example="calculations") as feeding:
        outcomes = feeding.steps()
    assert all(o.exit in (0, 2) for o in outcomes)
    return ledger


def expected_restatements(customer: str) -> list[dict]:
    return [r for r in csv.DictReader(io.StringIO(expected_csv("restatements", "calculations")))
            if r["customer_id"] == customer]


def test_trace_names_the_calculation_in_force_at_each_months_pricing_point(calc_ledger):
    priced = {}
    for month in ("2026-01", "2026-03", "2026-04"):
        trace = json.loads(calc_ledger("trace", "customer", "cus_b", "--month", month, "--json",
                                       check_exit=0).stdout)
        priced[month] = trace["pricing"]
        assert trace["pricing"]["calculation"] == trace["customer_month"]["calculation"]
    assert priced["2026-01"]["calculation"] == "v1" and priced["2026-01"]["promotion"] is None
    assert priced["2026-01"]["status"] == "closed"
    assert priced["2026-01"]["priced_at_position"] == priced["2026-01"]["close_position"] - 1
    march = priced["2026-03"]  # closed while prorated was in force
    assert (march["calculation"], march["plan_rule"]) == ("prorated", "daily_prorated")
    assert march["promotion"]["actor"] == "fin.pricing@example.com"
    assert march["promotion"]["reason"] == "Finance approved proration"
    april = priced["2026-04"]  # open: priced now, under v1 promoted back
    assert april["status"] == "open" and april["priced_at_position"] is None
    assert april["calculation"] == "v1" and april["promotion"]["reason"] == "back to month_start"


def test_trace_lists_restatements_with_the_facts_that_caused_them(calc_ledger):
    trace = json.loads(calc_ledger("trace", "customer", "cus_d", "--month", "2026-01", "--json",
                                   check_exit=0).stdout)
    got = {(r["meter"], r["posting_month"], r["cause"]): r for r in trace["restatements"]}
    want = expected_restatements("cus_d")
    assert {(r["meter"], r["posting_month"], r["cause"]): int(r["amount_cents"]) for r in want} == {
        k: r["amount_cents"] for k, r in got.items()}
    for r in got.values():  # the back-dated plan change of cus_d, appended after January closed
        [fact] = r["caused_by"]
        assert fact["kind"] == "attributes" and fact["position"] == r["first_position"]
        assert fact["fact"]["attributes"] == {"plan": "pro"}
        assert fact["fact"]["effective_from"].startswith("2026-01-01") and fact["recorded_at"]

    posted = json.loads(calc_ledger("trace", "customer", "cus_b", "--month", "2026-03", "--json",
                                    check_exit=0).stdout)  # February's recalculation posts to March
    recalculated = [r for r in posted["restatements"] if r["cause"] == "recalculation"]
    assert {(r["original_month"], r["meter"]) for r in recalculated} == {
        ("2026-02", ""), ("2026-02", "api_calls"), ("2026-02", "fraud_checks")}
    assert sum(r["amount_cents"] for r in recalculated) == posted["customer_month"]["restatement_cents"]
    for r in recalculated:
        [fact] = r["caused_by"]
        assert fact["kind"] == "calculation promotion"
        assert fact["fact"]["name"] == "prorated" and fact["fact"]["reason"] == "Finance approved proration"


def test_trace_text_names_the_calculation_and_the_causes(calc_ledger):
    text = calc_ledger("trace", "customer", "cus_d", "--month", "2026-01", check_exit=0).stdout
    assert "by calculation v1 (month_start), in force since the store's start" in text
    assert "2026-01 base fee → posted 2026-02: +6,910 cents, repricing" in text
    assert "caused by attributes fact at position" in text and "cus_d from 2026-01-01" in text
    march = calc_ledger("trace", "customer", "cus_b", "--month", "2026-03", check_exit=0).stdout
    assert "by calculation prorated (daily_prorated), in force since position" in march
    assert "caused by calculation promotion fact" in march and "Finance approved proration" in march


def test_invoice_trace_carries_the_pricing_and_restatements(example_ledger):
    trace = json.loads(example_ledger("trace", "invoice", "in_202601_0001", "--json", check_exit=0).stdout)
    assert trace["pricing"]["calculation"] == "v1" and trace["pricing"]["status"] == "closed"
    assert trace["restatements"] == []  # the basic example restates nothing
    text = example_ledger("trace", "invoice", "in_202601_0001", check_exit=0).stdout
    assert "by calculation v1 (month_start)" in text and "restatements: none" in text
    streamed = json.loads(example_ledger("trace", "invoice", "in_202601_0001", "--json", "--events",
                                         check_exit=0).stdout)
    assert streamed["pricing"] == trace["pricing"] and streamed["restatements"] == []
