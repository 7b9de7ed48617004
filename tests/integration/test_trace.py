"""`ledger trace`: the facts behind an invoice's numbers, against the basic example's expected exports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.builders import invoice, line, link, usage
from tests.conftest import EXAMPLE, write_lines


def expected(name: str) -> list[dict]:
    return list(csv.DictReader((EXAMPLE / "expected" / f"{name}.csv").open()))


def test_trace_of_every_example_invoice_matches_the_expected_exports(example_ledger):
    meters = {(r["customer_id"], r["month"], r["meter"]): r for r in expected("customer-month-meter")}
    traced_lines = 0
    for inv in ["in_202601_0001", "in_202601_0002", "in_202601_0011", "in_202602_0001", "in_202602_0006"]:
        trace = json.loads(example_ledger("trace", "invoice", inv, "--json", check_exit=0).stdout)
        head = trace["invoice"]
        assert head["invoice_id"] == inv and head["position"] > 0
        for item in trace["lines"]:
            if item["kind"] != "usage":
                assert item["usage"] is None
                continue
            row = meters[(head["customer_id"], head["period"], item["meter"])]
            assert item["usage"]["units"] == int(row["on_time_units"])
            assert item["usage"]["expected_cents"] == int(row["expected_cents"])
            assert item["usage"]["billed_vs_metered_units"] == item["quantity"] - int(row["on_time_units"])
            if item["usage"]["fact_count"]:
                assert item["usage"]["first_position"] <= item["usage"]["last_position"]
                assert len(item["usage"]["digest"]) == 16
            traced_lines += 1
    assert traced_lines >= 10


def test_trace_names_the_resolution_credits_adjustments_and_exceptions(example_ledger):
    trace = json.loads(example_ledger("trace", "invoice", "in_202601_0011", "--json", check_exit=0).stdout)
    assert trace["invoice"]["customer_id"] == "cus_0011"
    assert trace["resolution"]["customer_id"] == "cus_0011" and trace["resolution"]["position"] > 0
    kinds = {e["kind"] for e in trace["exceptions"]}
    assert "invoice_total_mismatch" in kinds  # 5188 billed against lines summing to 4938
    late = {(a["original_month"], a["meter"], a["posting_month"]): a for a in trace["late_adjustments"]}
    assert late[("2026-01", "fraud_checks", "2026-02")]["amount_cents"] == 325
    credited = json.loads(example_ledger("trace", "invoice", "in_202601_0001", "--json", check_exit=0).stdout)
    assert [(c["credit_id"], c["amount_cents"], c["actor"]) for c in credited["credits"]] == [
        ("cr_000", 500, "fin.ops@example.com")]
    text = example_ledger("trace", "invoice", "in_202601_0001", check_exit=0).stdout
    assert "via identity link at position" in text and "cr_000" in text


def test_events_list_the_contributing_facts_and_reproduce_the_digest(example_ledger):
    trace = json.loads(example_ledger("trace", "invoice", "in_202601_0001", "--json", "--events",
                                      check_exit=0).stdout)
    for item in trace["lines"]:
        if item["kind"] == "usage" and item["usage"]["fact_count"]:
            events = item["events"]
            assert len(events) == item["usage"]["fact_count"]
            assert sum(e["units"] for e in events) == item["usage"]["units"]
            assert [e["position"] for e in events] == sorted(e["position"] for e in events)
            # each fact names the file and line it was read from
            assert all(e["recorded_from"].endswith(".ndjson") and e["recorded_line"] >= 1 for e in events)
    text = example_ledger("trace", "invoice", "in_202601_0001", "--events", check_exit=0).stdout
    assert "DOES NOT MATCH" not in text and text.count("matches") >= 2


def test_trace_customer_month(example_ledger):
    trace = json.loads(example_ledger("trace", "customer", "cus_0002", "--month", "2026-02", "--json",
                                      check_exit=0).stdout)
    want = next(r for r in expected("customer-month") if r["customer_id"] == "cus_0002" and r["month"] == "2026-02")
    assert trace["customer_month"]["balance_cents"] == int(want["balance_cents"])
    assert trace["attribute_version"]["owner"] == "zed"
    assert {u["meter"] for u in trace["usage"]} >= {"api_calls", "fraud_checks"}


def test_unknown_invoice_is_one_line_exit_2(ledger):
    result = ledger("trace", "invoice", "in_nope")
    assert result.returncode == 2 and "in_nope" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # 200k usage facts
def test_events_of_a_large_line_stream_with_bounded_memory(ledger, tmp_path, db_url):
    n = 200_000
    ledger("ingest", "identities", str(write_lines(tmp_path / "l.ndjson", [
        json.dumps(link("product", "pr_1", "cus_1")), json.dumps(link("billing", "bc_1", "cus_1"))])), check_exit=0)
    ledger("ingest", "usage", str(write_lines(tmp_path / "u.ndjson", [
        line(usage(i, event_time=f"2026-01-{1 + i % 28:02d}T10:00:00Z")) for i in range(n)])), check_exit=0)
    lines = [{"line_id": "L1", "kind": "usage", "meter": "api_calls", "quantity": n, "amount_cents": 0}]
    ledger("ingest", "invoices", str(write_lines(tmp_path / "i.ndjson", [
        json.dumps(invoice(scid="bc_1", total_cents=0, lines=lines))])), check_exit=0)
    ledger("project", check_exit=0)
    def peak_kb(*args: str) -> tuple[int, str]:
        """Run the command in a Python that reports its own peak memory when it exits."""
        probe = (f"import atexit, resource, sys; sys.argv = ['ledger', *{list(args)!r}];"
                 "atexit.register(lambda: sys.stderr.write('MAXRSS_KB=%d\\n' % "
                 "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss));"
                 "from ledger.cli.main import run; run()")
        proc = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "LEDGER_DATABASE_URL": db_url},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stderr.rsplit("MAXRSS_KB=", 1)[1].split()[0]), proc.stdout

    summary_kb, _ = peak_kb("trace", "invoice", "in_1")
    events_kb, out = peak_kb("trace", "invoice", "in_1", "--events")
    assert out.count("  evt-") == n and "matches" in out
    # 200k facts held as rows would add well over 100 MB; streamed, listing them costs a few MB
    assert events_kb - summary_kb < 30 * 1024, (summary_kb, events_kb)
