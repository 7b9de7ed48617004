"""The CLI as a person and a script read it, in process: every command's human and JSON output on the basic
example, the refusals (one line on stderr; one JSON object on stdout under --json; the exit code unchanged), an
absent store, an empty one, and the help text."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from ledger.cli.main import app
from tests.conftest import with_dbname

INVOICE, CUSTOMER, MONTH = "in_202601_0001", "cus_0001", "2026-01"
PYTHON_LEAKS = ("{'", "True", "False", "None", "<bool>")


def invoke(env: dict, *args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120", "LEDGER_LOG_LEVEL": None, **env},
                              catch_exceptions=False)


@pytest.fixture
def cli(example_db_url, tmp_path):
    """`ledger ARGS` in process on a fresh copy of the basic example."""
    env = {"LEDGER_DATABASE_URL": example_db_url, "LEDGER_HOME": str(tmp_path / "home")}
    return lambda *args, **extra: invoke({**env, **extra}, *args)


@pytest.fixture
def empty_cli(db_url, tmp_path):
    """`ledger ARGS` in process on a migrated store without a fact."""
    env = {"LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "home")}
    return lambda *args: invoke(env, *args)


def human(result, exit_code: int = 0) -> str:
    """Human output: the exit code, no stderr off a terminal, no Python leaking into the text."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr == ""
    for leak in PYTHON_LEAKS:
        assert leak not in result.stdout, (leak, result.stdout)
    return result.stdout


def machine(result, exit_code: int = 0):
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr == ""
    return json.loads(result.stdout)


def refusal(result, exit_code: int = 2, *, as_json: bool = False) -> tuple[str, dict | None]:
    """A refusal: the exit code, exactly one line on stderr, and under --json exactly one JSON object on stdout."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if not as_json:
        assert result.stdout == ""
        return lines[0], None
    body = json.loads(result.stdout)
    assert body["exit_code"] == exit_code and body["message"] == lines[0].removeprefix("error: ")
    return lines[0], body


def store_named(text: str, facts: int | None = None) -> None:
    first = text.splitlines()[0]
    assert first.startswith("store: ") and "(LEDGER_DATABASE_URL)" in first, first
    if facts is not None:
        assert first.endswith(f", {facts:,} fact{'s' * (facts != 1)}"), first


# -- every command's output on the example ------------------------------------------------------------
def test_project_human_and_json(cli):
    text = human(cli("project"))
    store_named(text)
    assert " facts applied, positions " in text
    report = machine(cli("project", "--json"))
    assert report["mode"] == "noop" and report["facts_applied"] == 0


def test_export_csv_and_json_keep_their_shapes(cli):
    csv_text = human(cli("export", "exceptions"))
    header, first = csv_text.splitlines()[:2]
    assert header.endswith(",difference,unit") and first.split(",")[-1] in ("cents", "units")
    rows = machine(cli("export", "exceptions", "--format", "json"))
    assert {r["unit"] for r in rows} <= {"cents", "units"}
    assert {r["unit"] for r in rows if r["kind"] in ("invoice_total_mismatch", "unattributed_invoice")} <= {"cents"}


def test_trace_invoice_human_names_every_unit(cli):
    text = human(cli("trace", "invoice", INVOICE))
    store_named(text)
    assert f"invoice {INVOICE}" in text and "(amounts in USD cents)" in text
    assert "units included" in text and "cents a unit beyond" in text  # a price entry in words, not a mapping
    assert "metered on time" in text and " units in " in text
    trace = machine(cli("trace", "invoice", INVOICE, "--json"))
    assert trace["invoice"]["invoice_id"] == INVOICE and all("unit" in e for e in trace["exceptions"])


def test_trace_invoice_events_are_aligned_columns(cli):
    text = human(cli("trace", "invoice", INVOICE, "--events"))
    blocks = text.split("contributing usage facts\n")[1:]
    assert blocks
    for block in blocks:
        header, rule, *rows = block.splitlines()
        rows = rows[:rows.index(next(r for r in rows if "digest recomputed" in r))]
        assert header.split() == ["position", "event_id", "source:source_customer_id", "event_time", "units"]
        end = len(rule.rstrip())  # the units column ends where the rule ends: numbers right-aligned
        assert rows and all(len(r) == end and r[-1].isdigit() for r in rows)
    assert "DOES NOT MATCH" not in text


def test_trace_customer_human_and_json(cli):
    text = human(cli("trace", "customer", CUSTOMER, "--month", MONTH))
    store_named(text)
    assert "(amounts in USD cents)" in text and "expected" in text and "units on time" in text
    assert "open exceptions (difference = actual − expected, in the unit named)" in text
    exception_rows = text.split("in the unit named):\n")[1].splitlines()[1:]
    assert exception_rows and all(row.split()[-1] in ("cents", "units") for row in exception_rows)
    trace = machine(cli("trace", "customer", CUSTOMER, "--month", MONTH, "--json"))
    assert trace["customer_month"]["customer_id"] == CUSTOMER


def test_quarantine_list_pages_and_says_so(cli):
    text = human(cli("quarantine", "list"))
    store_named(text)
    total = int(text.splitlines()[-1].split()[0])
    assert text.splitlines()[-1] == f"{total} quarantined records" and total > 5
    page = human(cli("quarantine", "list", "--limit", "5"))
    assert page.splitlines()[-1] == f"5 of {total} quarantined records; --limit/--offset for more"
    rest = human(cli("quarantine", "list", "--limit", "5", "--offset", str(total - 2)))
    assert rest.splitlines()[-1] == f"{total - 1:,}–{total:,} of {total} quarantined records"
    rows = machine(cli("quarantine", "list", "--json", "--limit", "5"))
    assert len(rows) == 5 and machine(cli("quarantine", "list", "--format", "json", "--limit", "5")) == rows
    usage_only = machine(cli("quarantine", "list", "--kind", "usage", "--json"))
    assert usage_only and {r["kind"] for r in usage_only} == {"usage"}


def test_tables_fit_the_terminal_and_json_keeps_the_full_text(cli):
    text = human(cli("quarantine", "list", COLUMNS="60"))
    assert all(len(line) <= 60 for line in text.splitlines()[1:-1]), text
    assert "…" in text
    rows = machine(cli("quarantine", "list", "--json", COLUMNS="60"))
    assert any(len(r["source_file"]) > 40 for r in rows)  # cut on the screen, whole in JSON


def test_verify_human_and_json(cli):
    text = human(cli("verify", "--skip-projections"))
    store_named(text)
    assert "chain: ok" in text and text.splitlines()[-1] == "ok"
    report = machine(cli("verify", "--skip-projections", "--json"))
    assert report["ok"] is True and report["facts"] == int(text.splitlines()[1].split()[1].replace(",", ""))


def test_the_store_line_counts_the_store_facts(cli, example_db_url):
    with psycopg.connect(example_db_url) as conn:
        facts = conn.execute("SELECT (SELECT count(*) FROM usage_facts) + (SELECT count(*) FROM ledger_events"
                             " WHERE topic <> 'ledger.UsageBatchRecorded')").fetchone()[0]
    store_named(human(cli("calc", "list")), facts)


def test_anomalies_calc_tokens_access_human_and_json(cli):
    text = human(cli("anomalies"))
    store_named(text)
    assert text.splitlines()[-1].endswith(("anomaly", "anomalies"))
    assert isinstance(machine(cli("anomalies", "--json")), list)
    listing = human(cli("calc", "list"))
    assert "in force: v1" in listing
    assert machine(cli("calc", "list", "--json"))["in_force"] == "v1"
    created = machine(cli("token", "create", "--name", "feeder", "--role", "ingest", "--json"))
    tokens = human(cli("token", "list"))
    assert created["token_id"] in tokens and tokens.splitlines()[-1] == "1 token"
    assert [t["token_id"] for t in machine(cli("token", "list", "--json"))] == [created["token_id"]]
    access = human(cli("access", "list"))
    assert access.splitlines()[-1] == "0 requests"
    assert machine(cli("access", "list", "--json")) == []


def test_commands_that_append_human_and_json(cli, tmp_path):
    before = machine(cli("verify", "--skip-projections", "--json"))["facts"]
    credit = ["credit", "issue", "--customer", CUSTOMER, "--amount-cents", "1234", "--reason", "goodwill",
              "--actor", "ana@fin", "--invoice", INVOICE]
    text = human(cli(*credit, "--idempotency-key", "cli-human"))
    assert "1,234 USD cents to cus_0001" in text
    issued = machine(cli(*credit, "--idempotency-key", "cli-json", "--json"))
    assert issued["amount_cents"] == 1234 and issued["created"] is True
    again = human(cli(*credit, "--idempotency-key", "cli-json"))
    assert "idempotent repeat; nothing appended" in again
    closed = machine(cli("period", "close", "2026-01", "--actor", "ana@fin", "--json"))
    assert closed["created"] is False and closed["appended"] == 0
    assert "was already closed at position" in human(cli("period", "close", "2026-01", "--actor", "ana@fin"))
    path = tmp_path / "links.ndjson"
    path.write_text(json.dumps({"source": "billing", "source_customer_id": "bc_cli", "customer_id": "cus_cli",
                                "effective_from": "2026-01-01T00:00:00Z"}) + "\n")
    text = human(cli("ingest", "identities", str(path)))
    assert "read 1 record, appended 1 fact, 0 duplicates, 0 conflicts, 0 quarantined" in text
    assert machine(cli("ingest", "identities", str(path), "--json"))["duplicates"] == 1
    assert machine(cli("verify", "--skip-projections", "--json"))["facts"] == before + 3


def test_anchor_and_migrate_human_and_json(cli):
    signed = machine(cli("anchor", "--json"))
    assert signed["position"] > 0
    assert "migrations up to date" in human(cli("migrate"))
    assert machine(cli("migrate", "--json"))["migrations"] > 0


# -- refusals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (("trace", "customer", CUSTOMER, "--month", "2026-13"), "is not a month"),
    (("trace", "customer", CUSTOMER, "--month", "January"), "is not a month"),
    (("trace", "invoice", ""), "is empty"),
    (("quarantine", "list", "--kind", "nope"), "is not one of usage, identities"),
    (("quarantine", "list", "--limit", "0"), "is not a positive number"),
    (("export", "nope"), "'nope' is not one of customer-month"),
    (("anomalies", "--since", "31/01/2026"), "is not a day"),
    (("access", "list", "--since", "yesterday"), "is not an instant"),
    (("ingest", "nope", "x.ndjson"), "'nope' is not one of usage"),
    (("credit", "issue", "--customer", CUSTOMER, "--amount-cents", "5", "--reason", "goodwill", "--actor", "a",
      "--idempotency-key", ""), "missing_idempotency_key"),
    (("credit", "issue", "--customer", CUSTOMER, "--amount-cents", "5", "--reason", "goodwill", "--actor", "a",
      "--idempotency-key", "k", "--bogus"), "No such option: --bogus"),
    (("trace", "invoice", "in_nope"), "does not exist"),
])
def test_refusals_are_one_line_and_one_json_object(cli, example_db_url, args, words):
    facts = machine(cli("verify", "--skip-projections", "--json"))["facts"]
    line, _ = refusal(cli(*args))
    assert words in line
    as_json = [*args, "--format", "json"] if args[0] == "export" else [*args, "--json"]
    line, body = refusal(cli(*as_json), as_json=True)
    assert words in body["message"] and body["error"].endswith("Error")
    assert machine(cli("verify", "--skip-projections", "--json"))["facts"] == facts  # nothing appended


def test_a_refusal_carries_its_rule_and_typed_fields(cli):
    _, body = refusal(cli("trace", "customer", CUSTOMER, "--month", "2026-13", "--json"), as_json=True)
    assert body["error"] == "InvalidArgumentError" and body["option"] == "--month" and body["value"] == "2026-13"
    _, body = refusal(cli("credit", "issue", "--customer", CUSTOMER, "--amount-cents", "0", "--reason", "goodwill",
                          "--actor", "a", "--idempotency-key", "k0", "--json"), as_json=True)
    assert body["rule"] == "amount_not_positive" and body["amount_cents"] == 0


def test_an_argument_that_is_not_utf8_is_a_clean_refusal(cli):
    line, _ = refusal(cli("trace", "invoice", "in_\udcff"))
    assert "argument 3" in line and "is not valid UTF-8" in line and "\\xff" in line


# -- no store, an empty store ---------------------------------------------------------------------------
READ_COMMANDS = [("export", "customer-month"), ("verify",), ("quarantine", "list"), ("trace", "invoice", INVOICE),
                 ("trace", "customer", CUSTOMER, "--month", MONTH), ("anomalies",), ("project",), ("calc", "list"),
                 ("calc", "diff", "v1"), ("token", "list"), ("access", "list"), ("anchor",), ("server", "status"),
                 ("server", "stop"), ("credit", "issue", "--customer", CUSTOMER, "--amount-cents", "5", "--reason",
                                      "goodwill", "--actor", "a", "--idempotency-key", "k")]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_absent_home_is_named_and_never_created(tmp_path, args):
    home = tmp_path / "mistyped"
    env = {"LEDGER_DATABASE_URL": None, "LEDGER_HOME": str(home)}
    line, _ = refusal(invoke(env, *args))
    assert f"no ledger store at LEDGER_HOME={home}" in line
    if args[0] not in ("export", "calc") or args[:2] == ("calc", "list"):
        _, body = refusal(invoke(env, *args, "--json"), as_json=True)
        assert body["error"] == "StoreNotFoundError" and body["variable"] == "LEDGER_HOME"
    assert not home.exists()


def test_a_home_without_a_store_is_not_made_one(tmp_path):
    home = tmp_path / "empty-dir"
    home.mkdir()
    line, _ = refusal(invoke({"LEDGER_DATABASE_URL": None, "LEDGER_HOME": str(home)}, "verify"))
    assert "holds no store" in line and list(home.iterdir()) == []


def test_an_unmigrated_database_is_not_made_a_store(pg_admin):
    name = f"ledger_bare_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_dbname(pg_admin, name)
        line, _ = refusal(invoke({"LEDGER_DATABASE_URL": url}, "export", "customer-month"))
        assert "no ledger store at LEDGER_DATABASE_URL=" in line and "never migrated" in line
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unreachable_database_url_is_named():
    env = {"LEDGER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nowhere"}
    line, _ = refusal(invoke(env, "quarantine", "list"))
    assert line.startswith("error: cannot reach the database at 127.0.0.1:1/nowhere (LEDGER_DATABASE_URL)")


def test_an_empty_store_reports_zero_and_exits_zero(empty_cli):
    text = human(empty_cli("quarantine", "list"))
    store_named(text, 0)
    assert text.splitlines()[-1] == "0 quarantined records"
    assert human(empty_cli("export", "customer-month")).startswith("customer_id,month,")
    verified = human(empty_cli("verify", "--skip-projections"))
    assert "verified 0 facts" in verified and verified.splitlines()[-1] == "ok"
    assert human(empty_cli("anomalies")).splitlines()[-1] == "0 anomalies"


# -- help ---------------------------------------------------------------------------------------------
def _commands(command, path=()):
    sub = getattr(command, "commands", None)
    if sub:
        for name, child in sub.items():
            yield from _commands(child, (*path, name))
    else:
        yield path, command


def test_every_option_and_argument_has_help_and_no_bool_metavar():
    root = typer.main.get_command(app)
    seen = 0
    for path, command in _commands(root):
        seen += 1
        assert command.help, path
        for param in command.params:
            assert getattr(param, "help", None), (path, param.name)
        text = invoke({}, *path, "--help").stdout
        assert "<bool>" not in text and "Usage: ledger " in text, (path, text)
    assert seen >= 30


def test_the_demo_report_names_its_units(example_db_url, tmp_path):
    """The demo's customer-month and exception tables: cents with the currency named, units kept apart."""
    from ledger import projector
    from ledger.cli.output import table
    from ledger.demo.run import DemoUI, _customer_months, _exceptions
    from ledger.settings import Settings

    said: list[str] = []
    ui = DemoUI(say=said.append, table=lambda h, r: table(h, r, width=200), progress=None)
    with psycopg.connect(example_db_url, autocommit=True) as conn:
        projector.project(conn, Settings(database_url=example_db_url, home=tmp_path))
        _customer_months(conn, ui, "USD")
        _exceptions(conn, ui, "USD")
    assert "every amount in USD cents" in said[0]
    month_rows = said[1].splitlines()[2:]
    assert month_rows and not any("." in row for row in month_rows)  # whole cents, never a decimal amount
    header, _, *rows = said[3].splitlines()
    assert header.split()[-1] == "unit"
    units = {row.rsplit("  ", 1)[-1].strip() for row in rows}
    assert units <= {"units", "USD cents"} and "units" in units
