"""Calculations benchmark: `ledger calc diff` and a back-dated price, each against its baseline in the same run.

On the rebuild benchmark's store (benchmarks/rebuild.py builds it: usage over 6 months, two closes, 2% late), with
a share of the customers changing plan mid-month (appended after the closes, into a closed and an open month, so
that their months' days have two plans):

1. `ledger calc diff prorated` (a daily_prorated calculation beside v1), against the plain `GROUP BY customer,
   month, meter` over the same usage rows copied into a plain table (target: at most 1x);
2. `ledger project` of one back-dated price fact (a plan's price for a closed month, after two closes: every closed
   month it reaches of every customer on that plan is repriced and restated), against `ledger project` of a 100k-fact
   on-time increment (target: under 2x).

    python benchmarks/calc.py [--events 10000000] [--customers 20000] [--plan-change-share 0.05] [--home DIR]

`--home DIR` keeps the store in DIR and reuses one prepared there (by this script or by rebuild.py --home): each
run then adds its own plan changes, increment and price. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import must, prepared_store, run_ledger  # noqa: E402
from rebuild import MONTHS, prepare, relabel, settle, store_arguments  # noqa: E402


def plan_changes(path: Path, customers: int, share: float, run: int) -> int:
    """Mid-month plan changes for every 1/share-th customer: one in the first (closed) month and one in the fourth
    (open), each on a day of its own; returns how many attribute facts."""
    plans = ("starter", "growth", "enterprise")
    step = max(1, round(1 / share))
    count = 0
    with open(path, "w") as out:
        for i in range(run % step, customers, step):
            for month, day in ((MONTHS[0], 10 + i % 15), (MONTHS[3], 5 + i % 20)):
                plan = plans[(i + run + day) % 3]
                out.write(json.dumps({"customer_id": f"c{i:07d}", "effective_from": f"{month}-{day:02d}T12:00:00Z",
                                      "plan": plan}) + "\n")
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    store_arguments(parser)
    parser.add_argument("--plan-change-share", type=float, default=0.05)
    parser.add_argument("--home", type=Path, help="keep (and reuse) the prepared store in this directory")
    args = parser.parse_args()
    with prepared_store(args.home, "ledger-bench-calc-", lambda home: prepare(home, args)) as store:
        print(json.dumps(measure(store.home, store.home / "data", args, store.run), indent=2))


def measure(home: Path, data: Path, args: argparse.Namespace, run: int) -> dict:
    import psycopg

    from ledger.store.embedded import DATABASE, EmbeddedServer

    conninfo = EmbeddedServer(home).conninfo(DATABASE)
    changes = plan_changes(data / f"plan_changes_{run}.ndjson", args.customers, args.plan_change_share, run)
    must(home, "ingest", "attributes", str(data / f"plan_changes_{run}.ndjson"), "--json")
    project_s, _ = must(home, "project", "--finance-only", "--json")  # the store's projections, plan changes in
    settle(conninfo)
    must(home, "calc", "define", "prorated", "--plan-rule", "daily_prorated", "--actor", "bench@fin")

    # 1. calc diff against the plain GROUP BY over the same usage rows
    diff_wall_s, result = run_ledger(home, "calc", "diff", "prorated", "--format", "csv")
    if result.returncode != 0:
        raise SystemExit(f"ledger calc diff failed: {result.stderr[-2000:]}")
    diff_lines = result.stdout.count("\n") - 1
    with psycopg.connect(conninfo, autocommit=True) as conn:
        diff_s = best_of(3, lambda: diff_in_process(conn))
        usage_rows = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
        conn.execute("CREATE TABLE bench_plain AS SELECT 'c' || substr(source_customer_id, 2) AS customer_id,"
                     " event_time, meter, quantity FROM usage_facts")
        conn.execute("VACUUM ANALYZE bench_plain")
        group_by_s = best_of(3, lambda: group_by(conn))
        conn.execute("DROP TABLE bench_plain")
        split = conn.execute("SELECT count(*) FROM ledger_proj.customer_month_attrs WHERE is_split").fetchone()[0]
        conn.execute("CHECKPOINT")

    # 2. a 100k-fact on-time increment, then one back-dated price, each projected alone
    relabel(data / "more_raw.ndjson", data / f"calc_more_{run}.ndjson", f"calc{run}_")
    must(home, "ingest", "usage", str(data / f"calc_more_{run}.ndjson"), "--json")
    checkpoint(conninfo)
    _, increment = must(home, "project", "--finance-only", "--json")
    price = data / f"price_backdated_{run}.ndjson"
    plan, month = ("growth", "starter", "enterprise")[(run - 1) // 2 % 3], MONTHS[(run - 1) % 2]  # a new key a run
    price.write_text(json.dumps({"plan": plan, "effective_month": month, "base_fee_cents": 20_900 + run,
                                 "meters": {"api_calls": {"included_units": 14_000, "unit_price_cents": 1},
                                            "fraud_checks": {"included_units": 150, "unit_price_cents": 9},
                                            "rules_evaluated": {"included_units": 1_500, "unit_price_cents": 2}}})
                     + "\n")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        before = restatement_rows(conn)
    must(home, "ingest", "prices", str(price), "--json")
    checkpoint(conninfo)
    _, backdated = must(home, "project", "--finance-only", "--json")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        restated = restatement_rows(conn) - before
        closes = conn.execute("SELECT count(*) FROM ledger_proj.period_close").fetchone()[0]

    return {
        "benchmark": "calc",
        "usage_facts": usage_rows, "customers": args.customers, "months": len(MONTHS), "closes": closes,
        "run_on_this_store": run, "plan_change_facts": changes, "split_customer_months": split,
        "plan_changes_project_s": round(project_s, 2),
        "calc_diff": {"lines": diff_lines, "diff_s": round(diff_s, 3), "command_wall_s": round(diff_wall_s, 3),
                      "group_by_s": round(group_by_s, 3), "ratio_diff_to_group_by": round(diff_s / group_by_s, 3),
                      "ratio_command_to_group_by": round(diff_wall_s / group_by_s, 3)},
        "backdated_price": {"project_s": round(backdated["seconds"], 3), "facts": backdated["facts_applied"],
                            "restatement_rows_changed": restated,
                            "increment_facts": increment["facts_applied"],
                            "increment_project_s": round(increment["seconds"], 3),
                            "ratio_to_increment": round(backdated["seconds"] / increment["seconds"], 3)},
        "targets": {"ratio_diff_to_group_by": 1.0, "ratio_backdated_price_to_increment": 2.0},
    }


def best_of(n: int, timed) -> float:
    return min(timed() for _ in range(n))


def diff_in_process(conn) -> float:
    """The diff itself (what `ledger calc diff` runs after bringing the projections up to date), rolled back."""
    from ledger.commands.calculations import known_calculations
    from ledger.projector.calc_diff import diff

    known = known_calculations(conn)
    head = conn.execute("SELECT position FROM ledger_proj.checkpoint").fetchone()[0]
    started = time.perf_counter()
    diff(conn, in_force=(known.in_force, known.rules[known.in_force]), candidate=("prorated", "daily_prorated"),
         head=head)
    return time.perf_counter() - started


def group_by(conn) -> float:
    started = time.perf_counter()
    conn.execute("CREATE TABLE bench_groupby AS SELECT customer_id, date_trunc('month', event_time AT TIME ZONE 'UTC')"
                 " AS month, meter, sum(quantity) AS units, count(*) AS facts FROM bench_plain GROUP BY 1, 2, 3")
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE bench_groupby")
    return seconds


def checkpoint(conninfo: str) -> None:
    """Flush earlier writes, so that a timed run does not pay for them (as rebuild.py does)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def restatement_rows(conn) -> int:
    return conn.execute("SELECT coalesce(sum(change_count), 0)::bigint FROM ledger_proj.restatements").fetchone()[0]


if __name__ == "__main__":
    main()
