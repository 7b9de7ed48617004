"""The shared example driven through the service: every step's status and counts as expected, and every export
equal, cell by cell, to the expected CSVs and to `ledger export` on the same store; pages and filters add up."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from tests.conftest import EXAMPLE, LEDGER_BIN
from tests.e2e.test_shared_example import EXPORTS, IGNORED

STATUS = {0: (200, 201), 2: (422, 409), 3: (200,)}


def run_step(service, step: dict):
    if step["op"] == "ingest":
        role = "finance" if step["kind"] == "credits" else "ingest"
        params = {"source": step["file"], **({"format": step["format"]} if step.get("format") else {})}
        with service.client(role) as client, (EXAMPLE / "input" / step["file"]).open("rb") as body:
            return client.post(f"/v1/facts/{step['kind']}", params=params, content=body)
    with service.client("finance") as client:
        return client.post(f"/v1/periods/{step['month']}/close")


@pytest.fixture(scope="module")
def example(service):
    steps = json.loads((EXAMPLE / "input" / "steps.json").read_text())
    expected = json.loads((EXAMPLE / "expected" / "expected_steps.json").read_text())
    return [(step, want, run_step(service, step)) for step, want in zip(steps, expected, strict=True)]


def test_every_step_as_the_cli(example):
    for step, want, response in example:
        assert response.status_code in STATUS[want["exit"]], (step, response.text)
        body = response.json()
        if want["exit"] == 2:
            assert response.headers["content-type"] == "application/problem+json"
            assert body["detail"].startswith("refused (") and body["rule"] in body["detail"]
            continue
        if step["op"] == "ingest":
            assert body["exit_code"] == want["exit"], (step, body)
            for key in ("read", "appended", "duplicates", "quarantined"):
                if key in want:
                    assert body[key] == want[key], (step, key, body)
            if body["quarantined"]:
                lines = [r["line_number"] for r in body["quarantined_records"]]
                assert len(lines) == body["quarantined"] and all(lines), body
        else:
            assert body["actor"] == "finance@example.com"


def test_exports_equal_the_expected_and_the_cli(example, service):
    env = {**service.env}
    with service.client("auditor") as client:
        for name in EXPORTS:
            response = client.get(f"/v1/exports/{name}", params={"format": "csv"})
            assert response.status_code == 200, response.text
            got = list(csv.DictReader(io.StringIO(response.text)))
            want = list(csv.DictReader((EXAMPLE / "expected" / f"{name}.csv").open()))
            # the columns this build exports, every row and cell (the expected files may carry columns of
            # read models still to come)
            columns = [c for c in got[0] if c not in IGNORED]
            assert set(columns) <= set(want[0]), name
            assert [{c: r[c] for c in columns} for r in got] == [{c: r[c] for c in columns} for r in want], name
            cli = subprocess.run([LEDGER_BIN, "export", name], env=env, capture_output=True, text=True, check=True)
            assert response.text == cli.stdout, name
            as_json = client.get(f"/v1/exports/{name}", params={"format": "json"}).text
            cli_json = subprocess.run([LEDGER_BIN, "export", name, "--format", "json"], env=env,
                                      capture_output=True, text=True, check=True).stdout
            assert as_json == cli_json, name


@pytest.mark.parametrize("name", EXPORTS)
def test_keyset_pages_add_up_to_the_export(example, service, name):
    with service.client("finance") as client:
        whole = client.get(f"/v1/exports/{name}", params={"format": "json"}).json()
        pages, cursor = [], None
        while True:
            params = {"format": "json", "limit": 4, **({"after": cursor} if cursor else {})}
            response = client.get(f"/v1/exports/{name}", params=params)
            assert response.status_code == 200, response.text
            pages.append(response.json())
            cursor = response.headers.get("Ledger-Next-Cursor")
            if cursor is None:
                break
            assert 'rel="next"' in response.headers["Link"]
        assert [row for page in pages for row in page] == whole
        assert all(len(page) == 4 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 4


def test_filters_by_customer_and_month(example, service):
    with service.client("finance") as client:
        whole = client.get("/v1/exports/customer-month-meter", params={"format": "json"}).json()
        customer, month = whole[0]["customer_id"], whole[0]["month"]
        one = client.get("/v1/exports/customer-month-meter",
                         params={"format": "json", "customer": customer, "month": month}).json()
        assert one == [r for r in whole if r["customer_id"] == customer and r["month"] == month] and one
        late = client.get("/v1/exports/late-adjustments", params={"format": "json", "month": "2026-01"}).json()
        everything = client.get("/v1/exports/late-adjustments", params={"format": "json"}).json()
        assert late == [r for r in everything if "2026-01" in (r["original_month"], r["posting_month"])]
        bad = client.get("/v1/exports/customer-month", params={"month": "2026-13"})
        assert bad.status_code == 422 and "month" in bad.json()["detail"]
        unknown = client.get("/v1/exports/nope")
        assert unknown.status_code == 404 and "unknown export 'nope'" in unknown.json()["detail"]
        cursor = client.get("/v1/exports/customer-month", params={"after": "garbage!"})
        assert cursor.status_code == 422 and cursor.json()["rule"] == "invalid_cursor"


def test_traces_as_the_cli(example, service):
    env = {**service.env}
    with service.client("auditor") as client:
        row = client.get("/v1/exports/customer-month", params={"format": "json"}).json()[0]
        got = client.get(f"/v1/trace/customers/{row['customer_id']}/months/{row['month']}")
        assert got.status_code == 200, got.text
        cli = subprocess.run([LEDGER_BIN, "trace", "customer", row["customer_id"], "--month", row["month"], "--json"],
                             env=env, capture_output=True, text=True, check=True)
        assert got.json() == json.loads(cli.stdout)
        invoice = json.loads((EXAMPLE / "input" / "invoices_2026_01.ndjson").read_text().splitlines()[0])["invoice_id"]
        got = client.get(f"/v1/trace/invoices/{invoice}")
        cli = subprocess.run([LEDGER_BIN, "trace", "invoice", invoice, "--json"], env=env, capture_output=True,
                             text=True, check=True)
        assert got.status_code == 200 and got.json() == json.loads(cli.stdout)
        missing = client.get("/v1/trace/invoices/inv_nope")
        assert missing.status_code == 404 and missing.json()["detail"] == "invoice 'inv_nope' does not exist"


def test_an_invoice_lines_facts_page_by_page_as_the_cli_lists_them(example, service):
    env = {**service.env}
    for text in (EXAMPLE / "input" / "invoices_2026_01.ndjson").read_text().splitlines():
        invoice = json.loads(text)["invoice_id"]
        cli = json.loads(subprocess.run([LEDGER_BIN, "trace", "invoice", invoice, "--events", "--json"], env=env,
                                        capture_output=True, text=True, check=True).stdout)
        usage_lines = [ln for ln in cli["lines"] if len(ln["events"]) >= 2]
        if usage_lines:
            break
    line = usage_lines[0]
    pages, after = [], None
    with service.client("auditor") as client:
        while True:
            got = client.get(f"/v1/trace/invoices/{invoice}/lines/{line['line_id']}/facts",
                             params={"limit": 1, **({"after": after} if after is not None else {})})
            assert got.status_code == 200, got.text
            pages.append(got.json())
            after = pages[-1]["next_after"]
            if after is None:
                break
        missing = client.get(f"/v1/trace/invoices/{invoice}/lines/no-such-line/facts")
    assert len(pages) == len(line["events"])
    facts = [fact for page in pages for fact in page["facts"]]
    assert [{k: v for k, v in f.items() if k != "h"} for f in facts] == line["events"]
    digest = 0
    for fact in facts:
        digest ^= fact["h"]
    assert f"{digest:016x}" == pages[0]["digest"] == line["usage"]["digest"]
    assert missing.status_code == 404 and missing.json()["rule"] == "unknown_line"
