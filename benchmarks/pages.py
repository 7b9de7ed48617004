"""Web page timings at the server on the benchmark store: the invoice lineage, the facts behind a usage line, the
customer 360, the reconciliation queue and a search, each against the API's JSON of the same trace (the baseline,
measured in the same run). Times are the service's own (the access log's duration of each request: from the
first byte in to the last byte out), over --runs requests after one warm-up. Target: under 1 s each for the invoice
lineage and the customer 360.

The store is rebuild.py's (10M usage facts over 20,000 customers and 6 months, invoices, closes, 2% late usage),
made in --home on the first run and reused after (as `rebuild.py --home` does). Prints JSON.

    python benchmarks/pages.py --home DIR [--events 10000000] [--customers 20000] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import must  # noqa: E402
from rebuild import prepare, store_arguments  # noqa: E402
from tests.api.conftest import start_service, stop_service  # noqa: E402
from ledger.store.embedded import DATABASE, EmbeddedServer  # noqa: E402


def sign_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=300, follow_redirects=False)
    form = client.get("/web/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    signed = client.post("/web/signin", data={"csrf": csrf, "token": token, "next": "/web/"})
    if signed.status_code != 303:
        raise SystemExit(f"sign-in failed: {signed.status_code} {signed.text[:300]}")
    return client


def timed(client: httpx.Client, conn: psycopg.Connection, path: str, runs: int) -> dict:
    """Server-side milliseconds of RUNS requests of PATH (after one warm-up), from the access log."""
    ids, sizes = [], []
    for i in range(runs + 1):
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
        if i:
            ids.append(response.headers["request-id"])
            sizes.append(len(response.content))
    durations = [r[0] for r in conn.execute("SELECT duration_ms FROM api_access_log WHERE request_id = ANY(%s::uuid[])",
                                            (ids,))]
    assert len(durations) == runs, (path, len(durations))
    return {"path": path, "ms_median": round(statistics.median(durations), 1), "ms_max": round(max(durations), 1),
            "bytes": sizes[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True, help="the benchmark store (made here when absent)")
    store_arguments(parser)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    home = args.home
    if not (home / "prepared").exists():
        home.mkdir(parents=True, exist_ok=True)
        prepare(home, args)
        must(home, "project")
        (home / "prepared").write_text("0")
    must(home, "server", "start")
    db_url = EmbeddedServer(home).conninfo(DATABASE)
    service = start_service(db_url, home / "serve-pages", {"LEDGER_API_FOLLOW": "0"})
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            facts = conn.execute("SELECT (SELECT count(*) FROM usage_facts), (SELECT count(*) FROM ledger_events)"
                                 ).fetchone()
            # the invoice of the customer-month with the most on-time facts in a closed month
            customer, month = conn.execute(
                "SELECT customer_id, month FROM ledger_proj.usage_on_time"
                " WHERE month IN (SELECT month FROM ledger_proj.period_close)"
                " GROUP BY 1, 2 ORDER BY sum(event_count) DESC LIMIT 1").fetchone()
            invoice, = conn.execute("SELECT invoice_id FROM ledger_proj.invoice_resolved"
                                    " WHERE customer_id = %s AND period = %s LIMIT 1", (customer, month)).fetchone()
            meter, count = conn.execute("SELECT meter, sum(event_count) FROM ledger_proj.usage_on_time"
                                        " WHERE customer_id = %s AND month = %s GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
                                        (customer, month)).fetchone()
            months = conn.execute("SELECT count(*) FROM ledger_proj.customer_month WHERE customer_id = %s",
                                  (customer,)).fetchone()[0]
            exceptions = conn.execute("SELECT count(*) FROM ledger_proj.exceptions").fetchone()[0]
            web = sign_in(service.url, service.tokens["finance"])
            api = service.client("finance")
            pages = {
                "invoice_lineage": timed(web, conn, f"/web/invoices/{invoice}", args.runs),
                "customer_360": timed(web, conn, f"/web/customers/{customer}", args.runs),
                "facts_first_page": timed(web, conn, f"/web/facts?customer={customer}&month={month}&meter={meter}",
                                          args.runs),
                "customer_month": timed(web, conn, f"/web/customers/{customer}/months/{month}", args.runs),
                "reconciliation": timed(web, conn, "/web/reconciliation", args.runs),
                "search_customer_prefix": timed(web, conn, f"/web/search?q={customer[:-1]}", args.runs // 2 or 1),
            }
            baseline = {
                "api_invoice_trace": timed(api, conn, f"/v1/trace/invoices/{invoice}", args.runs),
                "api_customer_month_export": timed(
                    api, conn, f"/v1/exports/customer-month?customer={customer}&format=json&fresh=false", args.runs),
            }
    finally:
        stop_service(service)
    print(json.dumps({
        "benchmark": "pages",
        "store": {"usage_facts": facts[0], "events": facts[1], "customers": args.customers,
                  "exceptions": exceptions},
        "invoice": invoice, "customer": customer, "month": month, "meter": meter, "facts_on_line": int(count),
        "customer_months": months,
        "pages": pages, "baseline": baseline,
        "lineage_vs_api_trace": round(pages["invoice_lineage"]["ms_median"]
                                      / max(baseline["api_invoice_trace"]["ms_median"], 0.1), 2),
        "target_ms": 1000,
        "within_target": all(pages[p]["ms_median"] < 1000 for p in ("invoice_lineage", "customer_360")),
    }, indent=2))


if __name__ == "__main__":
    main()
