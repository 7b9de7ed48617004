"""Finance's commands: credits and period closes, validated, idempotent, attributed, never applied twice."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from freezegun import freeze_time
from typer.testing import CliRunner

from ledger.cli.main import app
from tests.builders import invoice, line, link, usage
from tests.conftest import LEDGER_BIN, write_lines


@pytest.fixture
def cli(db_url, tmp_path):
    runner = CliRunner()
    env = {"LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "home")}

    def run(*args: str):
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def billed(replay):
    """cus_1 (billing id bc_1) with a 1,000-cent January invoice in_1 (ingested in process)."""
    replay.ingest("identities", [link("billing", "bc_1", "cus_1"), link("billing", "bc_2", "cus_2")])
    replay.ingest("invoices", [invoice()])


def credit(cli, *extra, amount="300", key="k1", customer="cus_1", invoice_id="in_1", actor="ana@fin"):
    args = ["credit", "issue", "--customer", customer, "--amount-cents", amount, "--reason", "goodwill",
            "--idempotency-key", key, "--json"]
    if actor:
        args += ["--actor", actor]
    if invoice_id:
        args += ["--invoice", invoice_id]
    return cli(*args, *extra)


def credits(conn):
    return conn.execute("SELECT credit_id, amount_cents, actor, issued_at FROM credit_facts ORDER BY position").fetchall()


@freeze_time("2026-03-03T09:30:00Z")
def test_a_credit_records_actor_and_time_and_posts_to_its_month(cli, billed, conn):
    result = credit(cli)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["created"] and out["actor"] == "ana@fin" and out["issued_at"].startswith("2026-03-03T09:30:00")
    (row,) = credits(conn)
    assert row[:3] == ("k1", 300, "ana@fin") and row[3].month == 3


def test_the_same_key_and_arguments_returns_the_first_credit(cli, billed, conn):
    first = json.loads(credit(cli).stdout)
    again = credit(cli)
    assert again.exit_code == 0 and json.loads(again.stdout)["position"] == first["position"]
    assert not json.loads(again.stdout)["created"]
    assert len(credits(conn)) == 1


def test_the_same_key_with_other_arguments_is_refused(cli, billed, conn):
    credit(cli)
    result = credit(cli, amount="301")
    assert result.exit_code == 2 and "idempotency_key_reused" in result.stderr and "amount_cents" in result.stderr
    assert len(credits(conn)) == 1


@pytest.mark.parametrize("kwargs,rule", [
    ({"customer": "cus_nobody", "invoice_id": None}, "unknown_customer"),
    ({"invoice_id": "in_nope"}, "unknown_invoice"),
    ({"customer": "cus_2"}, "invoice_customer_mismatch"),
    ({"amount": "0"}, "amount_not_positive"),
    ({"amount": "-5"}, "amount_not_positive"),
    ({"amount": str(2**53)}, "amount_too_large"),
    ({"amount": "1001"}, "credit_exceeds_invoice"),
    ({"actor": None}, "missing_actor"),
])
def test_every_refusal_exits_2_with_one_line_and_appends_nothing(cli, billed, conn, kwargs, rule):
    before = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
    result = credit(cli, **kwargs)
    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("{")]  # JSON lines are the log
    assert len(errors) == 1 and errors[0].startswith("error: refused (") and rule in errors[0]
    assert "Traceback" not in result.stderr
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0] == before


def test_the_refusal_names_the_remaining_amount(cli, billed):
    credit(cli, amount="700", key="a")
    result = credit(cli, amount="301", key="b")
    assert result.exit_code == 2
    assert "remaining creditable amount of 300 cents" in result.stderr and "credited 700" in result.stderr


@pytest.mark.slow  # many processes at once
def test_credits_from_many_processes_never_exceed_the_invoice(billed, db_url, conn, tmp_path):
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url}
    # 20 processes, 150 cents each, against a 1,000-cent invoice: at most 6 can succeed.
    # Two processes share each key: one of each pair must return the other's credit.
    procs = [subprocess.Popen([LEDGER_BIN, "credit", "issue", "--customer", "cus_1", "--amount-cents", "150",
                               "--reason", "goodwill", "--actor", "ana@fin", "--invoice", "in_1",
                               "--idempotency-key", f"key-{i // 2}", "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(20)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    rows = credits(conn)
    assert sum(r[1] for r in rows) <= 1000
    assert len(rows) == 6
    assert len({r[0] for r in rows}) == len(rows)  # each idempotency key appears once
    accepted = [json.loads(out) for code, out, _ in results if code == 0]
    refused = [err for code, _, err in results if code == 2]
    assert len(accepted) + len(refused) == 20
    assert all("credit_exceeds_invoice" in err for err in refused)
    assert {a["credit_id"] for a in accepted} == {r[0] for r in rows}


# -- period close -------------------------------------------------------------------------------------
def close(cli, month, actor="fin@close"):
    args = ["period", "close", month, "--json"] + (["--actor", actor] if actor else [])
    return cli(*args)


@freeze_time("2026-01-31T23:59:59Z")
def test_a_month_that_has_not_ended_cannot_close(cli, conn):
    result = close(cli, "2026-01")
    assert result.exit_code == 2 and "month_not_ended" in result.stderr and "2026-02-01" in result.stderr
    assert conn.execute("SELECT count(*) FROM period_close_facts").fetchone()[0] == 0


@freeze_time("2026-02-01T00:00:00Z")
def test_a_month_closes_at_the_first_instant_of_the_next(cli, conn):
    out = json.loads(close(cli, "2026-01").stdout)
    assert out["created"] and out["actor"] == "fin@close"
    assert conn.execute("SELECT month, actor FROM period_close_facts").fetchall() == [("2026-01", "fin@close")]


@freeze_time("2026-04-02T00:00:00Z")
def test_closing_a_closed_month_appends_nothing(cli, conn):
    first = json.loads(close(cli, "2026-01").stdout)
    again = close(cli, "2026-01", actor="someone@else")
    assert again.exit_code == 0
    out = json.loads(again.stdout)
    assert not out["created"] and out["position"] == first["position"] and out["actor"] == "fin@close"
    assert conn.execute("SELECT count(*) FROM period_close_facts").fetchone()[0] == 1


@freeze_time("2026-04-02T00:00:00Z")
def test_an_earlier_month_with_usage_must_close_first(cli, ledger, conn, tmp_path):
    ledger("ingest", "usage", str(write_lines(tmp_path / "u.ndjson", [
        line(usage(1, event_time="2026-02-10T00:00:00Z"))])), check_exit=0)
    result = close(cli, "2026-03")
    assert result.exit_code == 2 and "earlier_month_open" in result.stderr and "2026-02" in result.stderr
    # January has no usage: it does not block
    assert close(cli, "2026-02").exit_code == 0
    assert close(cli, "2026-03").exit_code == 0


@freeze_time("2026-04-02T00:00:00Z")
def test_close_needs_an_actor_and_a_month(cli, conn):
    assert "missing_actor" in close(cli, "2026-01", actor=None).stderr
    assert "invalid_month" in close(cli, "2026-13").stderr
    assert conn.execute("SELECT count(*) FROM period_close_facts").fetchone()[0] == 0


# -- other facts -------------------------------------------------------------------------------------
def test_invoices_in_another_currency_are_quarantined(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "i.ndjson", [json.dumps(invoice("in_eur", currency="EUR")),
                                               json.dumps(invoice("in_ok"))])
    result = ledger("ingest", "invoices", str(path), "--json")
    assert result.returncode == 3
    field, reason = conn.execute("SELECT field, reason FROM quarantine").fetchone()
    assert field == "currency" and "EUR" in reason and "USD" in reason


def test_invoice_line_rules(ledger, conn, tmp_path):
    bad_usage_line = invoice("in_a", lines=[{"line_id": "L1", "kind": "usage", "amount_cents": 5}])
    meter_on_subscription = invoice("in_b", lines=[{"line_id": "L1", "kind": "subscription", "meter": "api_calls",
                                                    "amount_cents": 5}])
    twice = invoice("in_c", lines=[{"line_id": "L1", "kind": "other", "amount_cents": 5},
                                   {"line_id": "L1", "kind": "other", "amount_cents": 5}])
    mismatch = invoice("in_d", total_cents=999)  # header total ≠ lines: accepted, reported as an exception
    path = write_lines(tmp_path / "i.ndjson", [json.dumps(x) for x in (bad_usage_line, meter_on_subscription,
                                                                       twice, mismatch)])
    r = json.loads(ledger("ingest", "invoices", str(path), "--json").stdout)
    assert (r["appended"], r["quarantined"]) == (1, 3)
    reasons = [x for (x,) in conn.execute("SELECT reason FROM quarantine ORDER BY line_number")]
    assert "requires meter" in reasons[0] and "must not have meter" in reasons[1] and "appears twice" in reasons[2]


def test_a_credit_under_the_same_key_committed_between_the_commands_reads_is_returned_not_doubled(
        billed, db_url, conn, monkeypatch):
    """Another process commits the same key's credit just after this command's first read of the store: whichever
    read that is, the command returns the other's credit and appends nothing (20 concurrent API requests hit this)."""
    import psycopg

    from ledger.commands import credits as credit_command
    from ledger.domain.commands import IssueCredit
    from ledger.ingest.records import RecordContext
    from ledger.store import queries

    command = IssueCredit("cus_1", 300, "goodwill", "ana@fin", "k-race", "in_1", None)
    ctx = RecordContext("pytest", datetime_now(), "USD")
    reads = {"count": 0}

    def after_first_read(read):
        def wrapped(*args, **kwargs):
            result = read(*args, **kwargs)
            reads["count"] += 1
            if reads["count"] == 1:  # the rival commits between this command's two reads
                with psycopg.connect(db_url, autocommit=True) as rival:
                    credit_command.issue_credit(rival, command, now=datetime_now(), ctx=ctx)
            return result
        return wrapped

    monkeypatch.setattr(queries, "credit_by_id", after_first_read(queries.credit_by_id))
    monkeypatch.setattr(queries, "invoice_state", after_first_read(queries.invoice_state))
    with psycopg.connect(db_url, autocommit=True) as mine:
        result = credit_command.issue_credit(mine, command, now=datetime_now(), ctx=ctx)
    assert not result.created
    assert [row[0] for row in credits(conn)] == ["k-race"]


def datetime_now():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)
