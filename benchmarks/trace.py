"""Trace benchmark: the summary of a customer-month line made of 1M usage facts, in under 0.5 s.

On a fresh embedded default: one customer, one source id, 1M usage facts in one month and meter, an
invoice with that usage line; after `ledger project`, times `trace_invoice` in-process (the summary an
auditor's tool or the API gets) and the whole `ledger trace invoice` command (process start included).
Prints JSON.

    python benchmarks/trace.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, run_ledger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    home = fresh_home("ledger-bench-trace-")
    try:
        usage = home / "usage.ndjson"
        with open(usage, "w") as out:
            for i in range(args.events):
                out.write(f'{{"event_id":"t{i}","source":"product","source_customer_id":"pr_big",'
                          f'"meter":"api_calls","quantity":{1 + i % 5},'
                          f'"event_time":"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00.000000Z"}}\n')
        units = sum(1 + i % 5 for i in range(args.events))
        (home / "links.ndjson").write_text(
            '{"source":"product","source_customer_id":"pr_big","customer_id":"cus_big",'
            '"effective_from":"2025-12-01T00:00:00Z"}\n'
            '{"source":"billing","source_customer_id":"bc_big","customer_id":"cus_big",'
            '"effective_from":"2025-12-01T00:00:00Z"}\n')
        (home / "invoice.ndjson").write_text(json.dumps({
            "invoice_id": "in_big", "source": "billing", "source_customer_id": "bc_big", "period": "2026-01",
            "issued_at": "2026-02-02T00:00:00Z", "currency": "USD", "total_cents": units,
            "lines": [{"line_id": "L1", "kind": "usage", "meter": "api_calls", "quantity": units,
                       "amount_cents": units}]}) + "\n")
        run_ledger(home, "server", "start")
        for kind, path in (("identities", "links.ndjson"), ("usage", "usage.ndjson"), ("invoices", "invoice.ndjson")):
            seconds, result = run_ledger(home, "ingest", kind, str(home / path))
            assert result.returncode == 0, result.stderr
        project_s, result = run_ledger(home, "project")
        assert result.returncode == 0, result.stderr

        import psycopg

        from ledger.audit.trace import trace_invoice
        from ledger.store.embedded import DATABASE, EmbeddedServer

        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            trace_invoice(conn, "in_big")  # warm the cache once, as a running service would be
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                trace = trace_invoice(conn, "in_big")
                runs.append(time.perf_counter() - started)
        line = trace["lines"][0]["usage"]
        assert line["fact_count"] == args.events and line["units"] == units, line
        command_s, result = run_ledger(home, "trace", "invoice", "in_big", "--json")
        assert result.returncode == 0, result.stderr
        print(json.dumps({
            "benchmark": "trace",
            "facts_on_line": line["fact_count"], "units": line["units"], "digest": line["digest"],
            "summary_s_median": round(sorted(runs)[len(runs) // 2], 4), "summary_s_max": round(max(runs), 4),
            "command_wall_s": round(command_s, 3),
            "project_wall_s": round(project_s, 2),
            "target_summary_s": 0.5,
        }, indent=2))
    finally:
        cleanup(home)


if __name__ == "__main__":
    main()
