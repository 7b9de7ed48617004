"""`ledger demo` on the embedded default: a fresh LEDGER_HOME, no LEDGER_DATABASE_URL, end to end, twice."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import LEDGER_BIN


pytestmark = pytest.mark.slow  # two demo scenarios end to end

SECTIONS = ("== A generated scenario", "== Replaying", "== Projections brought up to date", "== Customer-months",
            "== Exceptions for reconciliation", "== Explore further", "ledger trace invoice", "ledger verify")


def run(home, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    env["LEDGER_HOME"] = str(home)
    return subprocess.run([LEDGER_BIN, *args], env=env, capture_output=True, text=True, timeout=600)


def test_the_demo_runs_end_to_end_twice_on_the_embedded_default(tmp_path):
    home = tmp_path / "home"
    first = run(home, "demo")
    assert first.returncode == 0, (first.stdout[-3000:], first.stderr[-3000:])
    for section in SECTIONS:
        assert section in first.stdout, section
    assert "period close 2026-02: refused (month_not_ended)" in first.stdout
    assert "refused (credit_exceeds_invoice)" in first.stdout
    assert (home / "pgdata" / "PG_VERSION").exists() and (home / "demo" / "seed-7" / "steps.json").exists()
    calc = first.stdout.split("== Calculations")[1].split("\n== ")[0]  # a mid-month plan change, diff, promotion
    assert "ledger calc define prorated --plan-rule daily_prorated: defined at position" in calc
    assert "ledger calc diff prorated (changes nothing): " in calc and " cents" in calc
    assert "ledger calc promote prorated: in force from position" in calc
    assert "recalculation restatements of" in calc
    restated = calc.split("restated month")[1]  # the table, its cause column cut to the terminal's width or not
    assert "recalculation  " in restated or "recalculati…" in restated
    top = first.stdout.split("== Customer-months")[1].split("==")[0]
    assert len([line for line in top.splitlines() if line.startswith("cus_")]) == 10
    # the report names its units: cents with the currency, never decimal amounts; exceptions summed per unit
    assert "every amount in USD cents" in top
    assert not any("." in line for line in top.splitlines() if line.startswith("cus_"))
    exceptions = first.stdout.split("== Exceptions for reconciliation")[1].split("==")[0].splitlines()
    assert exceptions[1].split()[-1] == "unit"
    units = {line.rsplit("  ", 1)[-1].strip() for line in exceptions[3:] if line.strip()}
    assert units and units <= {"units", "USD cents"}
    assert "(amounts in USD cents)" in first.stdout.split("== One invoice traced")[1]
    assert re.search(r"credits: [0-9]+ issued \([0-9,]+ USD cents\)", first.stdout)

    second = run(home, "demo")  # the same scenario again: all duplicates, nothing appended, same numbers
    assert second.returncode == 0, (second.stdout[-3000:], second.stderr[-3000:])
    assert "nothing new: this home already holds the demo scenario" in second.stdout
    assert "ledger calc promote prorated: in force already, nothing appended" in second.stdout
    assert second.stdout.split("closed months stay as they were")[1].split("== Customer-months")[0] == \
        first.stdout.split("closed months stay as they were")[1].split("== Customer-months")[0]
    assert second.stdout.split("== Customer-months")[1].split("== Exceptions")[0] == \
        first.stdout.split("== Customer-months")[1].split("== Exceptions")[0]

    verified = run(home, "verify", "--json")
    assert verified.returncode == 0, (verified.stdout[-3000:], verified.stderr[-3000:])
    assert json.loads(verified.stdout)["ok"] is True

    other = run(home, "demo", "--seed", "8")  # another scenario would mix with this one: refused, nothing appended
    assert other.returncode == 2 and "already holds other facts" in other.stderr
