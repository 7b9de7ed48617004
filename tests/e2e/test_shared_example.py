"""The basic example (tests/fixtures/examples/basic, a copy of Finance's), run through the `ledger` command: every step's exit code
and counts as expected, and every export equal to the independently computed CSVs, cell by cell."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import EXAMPLE

pytestmark = pytest.mark.slow  # every step a `ledger` process (the projector's example tests run it in process)

IGNORED = {"first_position", "last_position"}
EXPORTS = ["customer-month", "customer-month-meter", "late-adjustments", "dim-customer", "exceptions"]


def step_command(step: dict) -> list[str]:
    if step["op"] == "ingest":
        args = ["ingest", step["kind"], str(EXAMPLE / "input" / step["file"]), "--json"]
        return args + (["--format", step["format"]] if step.get("format") else [])
    if step["op"].startswith("close"):
        return ["period", "close", step["month"], "--actor", step["actor"], "--json"]
    args = ["credit", "issue", "--customer", step["customer"], "--amount-cents", str(step["amount_cents"]),
            "--reason", step["reason"], "--actor", step["actor"], "--idempotency-key", step["idempotency_key"],
            "--json"]
    return args + (["--invoice", step["invoice"]] if step.get("invoice") else [])


@pytest.fixture
def example_store(ledger):
    steps = json.loads((EXAMPLE / "input" / "steps.json").read_text())
    expected = json.loads((EXAMPLE / "expected" / "expected_steps.json").read_text())
    outcomes = []
    for step, want in zip(steps, expected, strict=True):
        result = ledger(*step_command(step))
        outcomes.append((step, want, result))
    return outcomes


def test_the_example_end_to_end(example_store, ledger):
    # every step: the exit code and the counts of expected_steps.json
    for step, want, result in example_store:
        assert result.returncode == want["exit"], (step, result.stderr)
        if result.returncode in (0, 3):
            got = json.loads(result.stdout)
            for key in ("read", "appended", "duplicates", "quarantined"):
                if key in want:
                    assert got[key] == want[key], (step, key, got)
    # every export: the columns in order, and every row and cell, in the same order
    strip = lambda rows: [{k: v for k, v in r.items() if k not in IGNORED} for r in rows]
    for name in EXPORTS:
        result = ledger("export", name, "--format", "csv", check_exit=0)
        got = list(csv.DictReader(io.StringIO(result.stdout)))
        want = list(csv.DictReader((EXAMPLE / "expected" / f"{name}.csv").open()))
        assert list(got[0].keys()) == list(want[0].keys()), name
        assert strip(got) == strip(want), name
    # JSON carries the same rows, numbers as numbers
    rows = json.loads(ledger("export", "customer-month", "--format", "json", check_exit=0).stdout)
    want = list(csv.DictReader((EXAMPLE / "expected" / "customer-month.csv").open()))
    assert len(rows) == len(want) and isinstance(rows[0]["usage_units"], int)
    # rebuild equals incremental, table by table, and a rebuild changes no export
    check = ledger("project", "--check", "--json", check_exit=0)
    assert all(t["equal"] for t in json.loads(check.stdout).values())
    before = {name: ledger("export", name, check_exit=0).stdout for name in EXPORTS}
    ledger("project", "--rebuild", check_exit=0)
    assert {name: ledger("export", name, check_exit=0).stdout for name in EXPORTS} == before
