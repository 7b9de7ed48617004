"""The pages in headless Chromium on the basic example: sign-in per role, an invoice down to its facts (against
`ledger trace --json --events`), the customer 360's charts, the reconciliation queue, role-dependent forms."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import date

import psycopg
import pytest

from ledger.store.principals import ROLES
from tests.conftest import LEDGER_BIN
from tests.web.conftest import facts_count, sign_in

INVOICE = "in_202601_0001"


def trace_json(service, invoice_id: str) -> dict:
    result = subprocess.run([LEDGER_BIN, "trace", "invoice", invoice_id, "--json", "--events"], env=service.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def money(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


@pytest.mark.parametrize("role", ROLES)
def test_sign_in_as_each_role(basic_pages, basic_service, browser, role):
    context = browser.new_context(base_url=basic_service.url)
    page = context.new_page()
    try:
        page.goto("/web/invoices/" + INVOICE)
        assert "/web/signin" in page.url  # no session: off to sign in, and back after it
        page.fill("#token", basic_service.tokens[role])
        page.click("#signin")
        page.wait_for_load_state()
        assert page.inner_text("#principal").startswith(f"{role}@example.com")
        cookie = next(c for c in context.cookies() if c["name"] == "ledger_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert basic_service.tokens[role] not in cookie["value"]
        if role in ("finance", "auditor"):
            assert page.url.endswith(f"/web/invoices/{INVOICE}")
            assert page.inner_text("#invoice-id") == INVOICE
        else:
            assert page.locator("#error-detail").count() == 1, page.content()
            assert "finance, auditor" in page.inner_text("#error-detail")
            page.goto("/web/")
            if role == "admin":
                assert page.url.endswith("/web/access") and page.locator("#access tbody tr").count() > 0
        basic_pages.shot(page, f"signed-in-{role}")
    finally:
        context.close()
    with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
        logged = conn.execute("SELECT role, status FROM api_access_log WHERE principal = %s AND path = %s",
                              (f"{role}@example.com", f"/web/invoices/{INVOICE}")).fetchall()
    assert logged and logged[-1] == (role, 200 if role in ("finance", "auditor") else 403)


def test_sign_in_refuses_a_bad_or_revoked_token(basic_service, browser, basic_pages):
    context = browser.new_context(base_url=basic_service.url)
    page = context.new_page()
    try:
        for token, reason in (("lgr_nope_nope", "unknown token"), (basic_service.tokens["revoked"], "revoked"),
                              (basic_service.tokens["expired"], "expired")):
            sign_in(page, token)
            assert reason in page.inner_text("#signin-error")
            assert not [c for c in context.cookies() if c["name"] == "ledger_session"]
        basic_pages.shot(page, "signin-refused")
        response = page.request.post("/web/signin", form={"token": basic_service.tokens["finance"]})
        assert response.status == 403  # a sign-in form not from this site (no CSRF pair)
    finally:
        context.close()


def test_invoice_lineage_down_to_the_facts_matches_the_trace(basic_pages, basic_service):
    trace = trace_json(basic_service, INVOICE)
    page = basic_pages.page("auditor")
    page.goto(f"/web/invoices/{INVOICE}")
    inv = trace["invoice"]
    assert page.inner_text("#invoice-total").startswith(money(inv["total_cents"]))
    assert page.inner_text("#invoice-customer") == inv["customer_id"]
    assert str(trace["resolution"]["position"]) in page.inner_text("#invoice-resolution")
    assert "verified" in page.inner_text("#verify-badge") and "FAILED" not in page.inner_text("#verify-badge")
    basic_pages.shot(page, "invoice-lineage")
    usage_lines = [line for line in trace["lines"] if line["kind"] == "usage" and line["usage"]["fact_count"]]
    assert usage_lines
    for line in usage_lines:
        u = line["usage"]
        block = page.locator(f'tr.usage[data-line="{line["line_id"]}"]')
        assert block.locator(".fact-count").inner_text() == f"{u['fact_count']:,}"
        assert block.locator(".units").inner_text() == f"{u['units']:,}"
        assert block.locator(".digest").inner_text() == u["digest"]
        assert block.locator(".positions").inner_text() == f"{u['first_position']} – {u['last_position']}"
        assert block.locator(".expected").inner_text() == money(u["expected_cents"])
        assert block.locator(".billed-vs-metered").inner_text() == f"{u['billed_vs_metered_units']:,}"
        assert str(u["price_entry"]["position"]) in block.locator(".price-entry").inner_text()
    line = usage_lines[0]
    page.locator(f'tr.usage[data-line="{line["line_id"]}"] a.fact-count').click()
    page.wait_for_load_state()
    assert page.inner_text("#summary-count") == f"{line['usage']['fact_count']:,}"
    assert page.inner_text("#summary-digest") == line["usage"]["digest"]
    basic_pages.shot(page, "invoice-facts")
    shown = []
    while True:
        for row in page.locator("#facts tr.fact").all():
            shown.append((int(row.locator(".position").inner_text()), row.locator(".event-id").inner_text(),
                          int(row.locator(".fact-units").inner_text())))
        if page.locator("#next-page").count() == 0:
            break
        page.click("#next-page")
        page.wait_for_load_state()
    assert shown == [(e["position"], e["event_id"], e["units"]) for e in line["events"]]
    assert sum(units for _, _, units in shown) == line["usage"]["units"]


def test_facts_are_paged_by_position(basic_pages, basic_service):
    trace = trace_json(basic_service, INVOICE)
    line = next(l for l in trace["lines"] if l["kind"] == "usage" and len(l["events"]) > 2)
    middle = line["events"][1]["position"]
    page = basic_pages.page("finance")
    page.goto(f"/web/facts?customer={trace['invoice']['customer_id']}&month={trace['invoice']['period']}"
              f"&meter={line['meter']}&after={middle}")
    positions = [int(p) for p in page.locator("#facts .position").all_inner_texts()]
    assert positions == [e["position"] for e in line["events"] if e["position"] > middle][:100]


def flagged_customer(db_url: str) -> str:
    """The customer with the most anomalous days, once the service's follower has built the Risk views."""
    deadline = time.monotonic() + 60
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            if conn.execute("SELECT to_regclass('ledger_proj.anomalies') IS NOT NULL").fetchone()[0]:
                row = conn.execute("SELECT customer_id FROM ledger_proj.anomalies GROUP BY 1"
                                   " ORDER BY count(*) DESC, customer_id LIMIT 1").fetchone()
                if row:
                    return row[0]
            assert time.monotonic() < deadline, "the follower built no anomalies"
            time.sleep(0.5)


def test_customer_360_draws_its_charts_from_the_read_models(basic_pages, basic_service):
    customer = flagged_customer(basic_service.db_url)
    page = basic_pages.page("auditor")
    page.goto(f"/web/customers/{customer}")
    page.wait_for_function("() => window.Chart && ['chart-usage', 'chart-money', 'chart-daily']"
                           ".every(id => Chart.getChart(document.getElementById(id)))")
    charts = page.evaluate("""() => Object.fromEntries(['chart-usage', 'chart-money', 'chart-daily'].map(id => {
        const chart = Chart.getChart(document.getElementById(id));
        return [id, {labels: chart.data.labels, width: chart.canvas.width, height: chart.canvas.height,
                     datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))}];
    }))""")
    with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
        meters = conn.execute("SELECT month, meter, on_time_units FROM ledger_proj.customer_month_meter"
                              " WHERE customer_id = %s", (customer,)).fetchall()
        months = conn.execute("SELECT month, expected_cents, invoiced_cents, balance_cents"
                              " FROM ledger_proj.customer_month WHERE customer_id = %s ORDER BY month",
                              (customer,)).fetchall()
        daily = conn.execute("SELECT day, sum(units) FROM ledger_proj.usage_daily WHERE customer_id = %s"
                             " GROUP BY day ORDER BY day", (customer,)).fetchall()
        flagged = [str(d) for (d,) in conn.execute(
            "SELECT DISTINCT day FROM ledger_proj.anomalies WHERE customer_id = %s ORDER BY day", (customer,))]
        versions = conn.execute("SELECT count(*) FROM ledger_proj.dim_customer WHERE customer_id = %s",
                                (customer,)).fetchone()[0]
    for chart in charts.values():
        assert chart["width"] > 0 and chart["height"] > 0
    usage = charts["chart-usage"]
    assert usage["labels"] == sorted({m for m, _, _ in meters} | {m for m, *_ in months})
    plotted = {(month, d["label"]): v for d in usage["datasets"] for month, v in zip(usage["labels"], d["data"])}
    assert {k: v for k, v in plotted.items() if v} == {(m, meter): u for m, meter, u in meters if u}
    money_chart = charts["chart-money"]
    assert money_chart["labels"] == [m for m, *_ in months]
    by_label = {d["label"]: d["data"] for d in money_chart["datasets"]}
    for i, column in enumerate(("expected", "invoiced", "balance"), start=1):
        assert by_label[column] == [None if r[i] is None else r[i] / 100 for r in months], column
    daily_chart = charts["chart-daily"]
    assert daily_chart["labels"] == [str(d) for d, _ in daily]
    sums = [sum(values) for values in zip(*(d["data"] for d in daily_chart["datasets"] if d["label"] != "anomaly"))]
    assert sums == [int(s) for _, s in daily]
    marked = next(d["data"] for d in daily_chart["datasets"] if d["label"] == "anomaly")
    assert flagged and [p["x"] for p in marked] == flagged
    assert all(p["y"] == sums[daily_chart["labels"].index(p["x"])] for p in marked)
    assert page.locator("#customer-anomalies tbody tr").count() >= len(flagged)
    assert page.locator("#versions li").count() == versions
    assert page.locator("#customer-links tbody tr").count() >= 1
    basic_pages.shot(page, "customer-360")


def test_reconciliation_queue_filters_sorts_and_links_to_traces(basic_pages, basic_service):
    with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
        by_kind = dict(conn.execute("SELECT kind, count(*) FROM ledger_proj.exceptions GROUP BY kind").fetchall())
        largest = conn.execute("SELECT max(abs(difference)) FROM ledger_proj.exceptions").fetchone()[0]
    page = basic_pages.page("auditor")
    page.goto("/web/reconciliation")
    assert page.locator("#queue tr.exception").count() == min(sum(by_kind.values()), 100)
    first = page.locator("#queue tr.exception .difference").first.inner_text()
    assert abs(int(first.replace(",", ""))) == largest  # the default order: largest difference first
    totals = {}
    for row in page.locator("#queue-totals tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        totals[cells[0]] = totals.get(cells[0], 0) + int(cells[3].replace(",", ""))
    assert totals == by_kind
    basic_pages.shot(page, "reconciliation")
    kind = "invoice_total_mismatch"
    page.select_option("#queue-filters select[name=kind]", kind)
    page.click("#queue-filters button")
    page.wait_for_load_state()
    kinds = page.locator("#queue tr.exception").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds == [kind] * by_kind[kind]
    page.locator("#queue a.trace").first.click()
    page.wait_for_load_state()
    assert "/web/invoices/" in page.url and page.locator("#invoice-lines").count() == 1
    page.goto("/web/reconciliation?kind=billed_vs_metered&sort=customer&order=asc")
    customers = page.locator("#queue tr.exception td:nth-child(3)").all_inner_texts()
    assert customers == sorted(customers)
    page.locator("#queue a.trace").first.click()
    page.wait_for_load_state()
    assert "/months/" in page.url and page.locator("#month-usage").count() == 1
    basic_pages.shot(page, "customer-month")


def test_search_finds_customers_source_ids_and_invoices(basic_pages):
    page = basic_pages.page("finance")
    page.goto("/web/")
    assert "verified" in page.inner_text("#verify-badge")
    basic_pages.shot(page, "home")
    page.fill("#home-search", INVOICE)
    page.press("#home-search", "Enter")
    page.wait_for_load_state()
    assert page.url.endswith(f"/web/invoices/{INVOICE}")
    page.goto("/web/search?q=cus_000")
    assert page.locator("#found-customers tbody tr").count() >= 9
    basic_pages.shot(page, "search")
    page.goto("/web/search?q=cus_0001")
    assert page.url.endswith("/web/customers/cus_0001")


def test_an_auditor_sees_no_finance_forms_and_the_server_refuses_them(basic_pages, basic_service):
    auditor = basic_pages.page("auditor")
    for path, form in ((f"/web/invoices/{INVOICE}", "#credit-form"), ("/web/reconciliation", "#close-form"),
                       ("/web/calculations", "#define-form")):
        auditor.goto(path)
        assert auditor.locator(form).count() == 0, path
        assert auditor.locator("form[method=post]:not([action='/web/signout'])").count() == 0, path
    auditor.goto("/web/calculations/v1/promote")
    assert "may not promote" in auditor.inner_text("#error-detail")
    finance = basic_pages.page("finance")
    finance.goto(f"/web/invoices/{INVOICE}")
    assert finance.locator("#credit-form").count() == 1
    basic_pages.shot(finance, "invoice-finance")
    finance.goto("/web/reconciliation")
    assert finance.locator("#close-form").count() == 1
    before = facts_count(basic_service.db_url)
    auditor.goto("/web/")
    csrf = auditor.locator("input[name=csrf]").first.input_value()  # the auditor's own, valid CSRF token
    posts = ((f"/web/invoices/{INVOICE}/credits", {"amount_cents": "100", "reason": "goodwill",
                                                    "idempotency_key": "k-auditor"}),
             ("/web/periods/close", {"month": "2026-03", "confirm": "2026-03"}),
             ("/web/calculations", {"name": "sneaky", "plan_rule": "daily_prorated"}),
             ("/web/calculations/v1/promote", {"reason": "no", "difference_cents": "0", "lines": "0"}))
    for path, fields in posts:
        response = auditor.request.post(path, form={**fields, "csrf": csrf}, max_redirects=0)
        assert response.status == 403, (path, response.status)
        assert "auditor may not" in response.text()
    # and Finance's own session without the form's CSRF token
    response = finance.request.post(f"/web/invoices/{INVOICE}/credits", max_redirects=0,
                                    form={"amount_cents": "100", "reason": "goodwill", "idempotency_key": "k-f"})
    assert response.status == 403 and "CSRF" in response.text()
    assert facts_count(basic_service.db_url) == before


def test_finance_issues_a_credit_from_the_invoice(basic_pages, basic_service):
    page = basic_pages.page("finance")
    page.goto(f"/web/invoices/{INVOICE}")
    rows_before = page.locator("#invoice-credits tbody tr").count()
    credits_before = "none" not in page.locator("#invoice-credits tbody").inner_text()
    page.fill("#credit-form input[name=amount_cents]", "250")
    page.select_option("#credit-form select[name=reason]", "goodwill")
    page.fill("#credit-form input[name=memo]", "from the lineage page")
    page.click("#credit-form button")
    page.wait_for_load_state()
    credits = page.locator("#invoice-credits tbody tr").all_inner_texts()
    assert any("2.50" in row and "from the lineage page" in row and "finance@example.com" in row for row in credits)
    with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
        actor = conn.execute("SELECT actor FROM credit_facts WHERE invoice_id = %s AND memo = %s",
                             (INVOICE, "from the lineage page")).fetchall()
        on_invoice = conn.execute("SELECT count(*) FROM credit_facts WHERE invoice_id = %s", (INVOICE,)).fetchone()[0]
    assert actor == [("finance@example.com",)]
    assert len(credits) == on_invoice == (rows_before + 1 if credits_before else 1)
    basic_pages.shot(page, "invoice-credited")


def test_pages_send_no_external_asset_and_a_strict_policy(basic_pages):
    page = basic_pages.page("auditor")
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    response = page.goto("/web/customers/cus_0001")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("networkidle")
    assert requested and all(u.startswith(basic_pages.service.url) for u in requested), requested
    assert date.today()  # the page drew with no network beyond the service


def test_signing_out_or_revoking_the_token_ends_the_session(basic_service, browser):
    from datetime import datetime, timezone

    from ledger.store.principals import create_token, revoke_token

    with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
        token, row = create_token(conn, name="temp@example.com", role="auditor", created_by="pytest",
                                  now=datetime.now(timezone.utc))
    for ending in ("sign out", "revoke"):
        context = browser.new_context(base_url=basic_service.url)
        page = context.new_page()
        try:
            sign_in(page, token if ending == "revoke" else basic_service.tokens["auditor"], f"/web/invoices/{INVOICE}")
            assert page.inner_text("#invoice-id") == INVOICE
            if ending == "sign out":
                page.click("form[action='/web/signout'] button")
                page.wait_for_load_state()
            else:
                with psycopg.connect(basic_service.db_url, autocommit=True) as conn:
                    revoke_token(conn, row["token_id"], revoked_by="pytest", now=datetime.now(timezone.utc))
            page.goto(f"/web/invoices/{INVOICE}")
            assert "/web/signin" in page.url, ending
        finally:
            context.close()
