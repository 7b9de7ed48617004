"""Finance's calculation pages in headless Chromium, on the calculations example before its candidate is defined:
define it, read the diff (the download equals the example's expected diff), confirm the promotion that names the
amounts, and see the restatements it posted."""

from __future__ import annotations

import csv
import io

import psycopg

from tests.scenarios import EXAMPLES
from tests.web.conftest import facts_count

EXPECTED_DIFF = EXAMPLES / "calculations" / "expected" / "calc-diff-14.csv"


def money(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def test_finance_defines_promotes_and_sees_the_restatements(calculations_pages, calculations_service):
    service = calculations_service
    expected = list(csv.DictReader(EXPECTED_DIFF.open()))
    total = sum(int(r["difference_cents"]) for r in expected)
    closed = sum(int(r["difference_cents"]) for r in expected if r["status"] == "closed")

    # an auditor reads the calculations, with no form to change them
    auditor = calculations_pages.page("auditor")
    auditor.goto("/web/calculations")
    assert auditor.locator("#define-form").count() == 0
    assert auditor.inner_text("#in-force") == "v1"

    page = calculations_pages.page("finance")
    page.goto("/web/calculations")
    page.fill("#define-form input[name=name]", "prorated")
    page.select_option("#define-form select[name=plan_rule]", "daily_prorated")
    page.fill("#define-form input[name=note]", "prorate mid-month plan changes by day")
    page.click("#define-form button")
    page.wait_for_load_state()
    assert page.url.endswith("/web/calculations/prorated")
    assert page.inner_text("#diff-lines") == str(len(expected))
    assert page.inner_text("#diff-customers") == str(len({r["customer_id"] for r in expected}))
    assert page.inner_text("#diff-total") == money(total)
    by_month = {}
    for r in expected:
        by_month[r["month"]] = by_month.get(r["month"], 0) + int(r["difference_cents"])
    shown = [row.split("\t") for row in page.locator("#diff-by-month tbody tr").all_inner_texts()]
    assert shown == [[m, money(c)] for m, c in sorted(by_month.items())]
    calculations_pages.shot(page, "calculation-diff")

    with page.expect_download() as download:
        page.click("#diff-download")
    assert download.value.path().read_text() == EXPECTED_DIFF.read_text()

    # the auditor may read the same diff but neither promote nor reach the confirmation
    auditor.goto("/web/calculations/prorated")
    assert auditor.locator("#promote-link").count() == 0
    assert auditor.inner_text("#diff-total") == money(total)

    before = facts_count(service.db_url)
    page.click("#promote-link")
    page.wait_for_load_state()
    amounts = page.inner_text("#promote-amounts")
    assert money(closed) in amounts and money(total) in amounts
    assert money(total) in page.inner_text("#promote-confirm")
    calculations_pages.shot(page, "promote-confirmation")
    assert facts_count(service.db_url) == before  # confirming shows, it appends nothing
    page.fill("#promote-form input[name=reason]", "Finance approved proration")
    page.click("#promote-confirm")
    page.wait_for_load_state()
    assert "Promotion recorded at position" in page.inner_text("#promoted-notice")
    calculations_pages.shot(page, "promoted-restatements")

    with psycopg.connect(service.db_url, autocommit=True) as conn:
        promoted = conn.execute("SELECT name, actor, reason FROM calculation_promoted_facts").fetchall()
        restated = conn.execute(
            "SELECT customer_id, original_month, coalesce(meter, ''), amount_cents FROM ledger_proj.restatements"
            " WHERE cause = 'recalculation' ORDER BY customer_id, original_month, meter").fetchall()
    assert promoted == [("prorated", "finance@example.com", "Finance approved proration")]
    assert facts_count(service.db_url) == before + 1
    assert restated and sum(r[3] for r in restated) == closed
    rows = [row.split("\t") for row in page.locator("#restatements tbody tr").all_inner_texts()]
    assert [(r[0], r[1], r[2] if r[2] != "(base fee)" else "", r[5]) for r in rows] == \
        [(c, m, meter, money(a)) for c, m, meter, a in restated]

    page.goto("/web/calculations")
    assert page.inner_text("#in-force") == "prorated"
    calculations_pages.shot(page, "calculations")


def test_a_promotion_whose_amounts_changed_is_not_posted(calculations_pages, calculations_service):
    page = calculations_pages.page("finance")
    page.goto("/web/calculations")
    page.fill("#define-form input[name=name]", "startofmonth")
    page.select_option("#define-form select[name=plan_rule]", "month_start")
    page.click("#define-form button")
    page.wait_for_load_state()
    page.goto("/web/calculations/startofmonth/promote")
    page.fill("#promote-form input[name=reason]", "back")
    page.eval_on_selector("#promote-form input[name=difference_cents]", "e => e.value = '1'")  # stale figures
    before = facts_count(calculations_service.db_url)
    page.click("#promote-confirm")
    page.wait_for_load_state()
    assert "the amounts changed since the confirmation" in page.inner_text("#error-detail")
    assert facts_count(calculations_service.db_url) == before
