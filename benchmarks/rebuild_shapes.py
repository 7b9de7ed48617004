"""The rebuild on three shapes of usage, each as a ratio to a plain GROUP BY of the same rows in the same run.

    uniform  customers drawn uniformly from 20,000
    wide     200,000 customers, volumes Zipf-skewed (exponent 1.1: a few large merchants, a long tail)
    deep     1,000 customers, Zipf 1.1

Each shape is a fresh embedded store: EVENTS usage facts over 6 months with identity links, attributes, prices,
one invoice per customer-month, two period closes and 2% late usage (facts of the closed months appended after the
closes), all through `ledger ingest`; then, after settling the store (VACUUM ANALYZE, CHECKPOINT),
`ledger project --rebuild` (every read model, the Risk and Sales views included), Finance's read models alone
(the build with the Risk and Sales views left out, rolled back) and a plain `GROUP BY customer, month, meter` over
the same usage rows copied into a plain table. Prints JSON; targets: whole rebuild >= 0.25x, Finance >= 0.35x.

Each of the three is also measured in CPU seconds (the server's processes and the `ledger` command, summed over
cores: `_common.cpu_seconds`), as a ratio in the same form, and as the cores its work would need, spread perfectly,
to meet its target against the GROUP BY's wall time: it tells a target that needs less work from one that needs
more cores.

    python benchmarks/rebuild_shapes.py [--events 3000000] [--shapes uniform,wide,deep] [--keep DIR]

With `--keep DIR` each shape's store is left in DIR/<shape> (server stopped) for `benchmarks/profile.py`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, cpu_used, fresh_home, load_reference, must, run_ledger  # noqa: E402
from rebuild import MONTHS, finance_build_seconds, relabel, settle  # noqa: E402

TARGETS = {"ratio_rebuild_to_group_by": 0.25, "ratio_rebuild_finance_to_group_by": 0.35}
SHAPES = {"uniform": (20_000, None), "wide": (200_000, 1.1), "deep": (1_000, 1.1)}
METERS = (("api_calls", 40), ("api_calls", 40), ("fraud_checks", 3), ("rules_evaluated", 20))


def usage(path: Path, n_events: int, n_customers: int, zipf: float | None, months: list[str], seed: int) -> None:
    """N usage events as NDJSON for `usage_only_ids`' customers: uniform, or customer k (rank k+1, in a shuffled
    order) drawn with weight 1 / (k+1)^ZIPF. The line format is `ledger.demo.bulk.usage_only`'s."""
    from ledger.demo.bulk import usage_only_ids
    from ledger.demo.generate import stamp
    from ledger.domain.time import month_start, next_month

    rng = random.Random(seed)
    ids = [f'","source":"{source}","source_customer_id":"{scid}","meter":"'
           for source, scid, _ in usage_only_ids(n_customers)]
    cumulative = None
    if zipf is not None:
        ranks = list(range(n_customers))
        rng.shuffle(ranks)
        weights = [w for r in ranks for w in (1.0 / (r + 1) ** zipf,) * 2]  # both source ids of a customer
        cumulative = list(itertools.accumulate(weights))
    stamps = []
    for month in months:
        first = month_start(month)
        span = int((month_start(next_month(month)) - first).total_seconds() * 1_000_000)
        stamps.extend(stamp(first + timedelta(microseconds=rng.randrange(span)))
                      for _ in range(4_096))
    meters = [f'{m}","quantity":{q},"event_time":"' for m, top in METERS for q in range(1, top + 1)]
    tails = [f'{m}{t}"}}\n' for m, t in zip(rng.choices(meters, k=1 << 16), rng.choices(stamps, k=1 << 16))]
    written = 0
    with open(path, "w", encoding="ascii") as out:
        while written < n_events:
            n = min(8_192, n_events - written)
            who = rng.choices(ids, cum_weights=cumulative, k=n)
            out.write("".join(f'{{"event_id":"u{e}{c}{t}' for e, c, t in zip(
                range(written, written + n), who, rng.choices(tails, k=n))))
            written += n


def run_shape(name: str, events: int, late_share: float, keep: Path | None = None) -> dict:
    from ledger.demo.bulk import usage_only_reference
    from ledger.store.embedded import DATABASE, EmbeddedServer
    import psycopg

    customers, zipf = SHAPES[name]
    home = keep / name if keep else fresh_home(f"ledger-bench-shape-{name}-")
    home.mkdir(parents=True, exist_ok=True)
    try:
        data = home / "data"
        reference = usage_only_reference(data, customers, MONTHS, seed=1)
        late_n = int(events * late_share)
        usage(data / "usage.ndjson", events - late_n, customers, zipf, MONTHS, seed=2)
        usage(data / "late_raw.ndjson", late_n, customers, zipf, MONTHS[:2], seed=3)
        relabel(data / "late_raw.ndjson", data / "late.ndjson", "late")
        load_reference(home, reference, data / "usage.ndjson", MONTHS[:2])
        must(home, "ingest", "usage", str(data / "late.ndjson"), "--json")
        conninfo = EmbeddedServer(home).conninfo(DATABASE)
        settle(conninfo)
        with cpu_used(home) as rebuild_cpu:
            _, rebuilt = must(home, "project", "--rebuild", "--json")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            usage_rows = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
            facts = usage_rows + conn.execute(
                "SELECT count(*) FROM ledger_events WHERE topic <> 'ledger.UsageBatchRecorded'").fetchone()[0]
            with cpu_used(home) as finance_cpu:
                finance_s = finance_build_seconds(conn)
            conn.execute("CREATE TABLE bench_plain AS SELECT 'c' || substr(source_customer_id, 2) AS customer_id,"
                         " event_time, meter, quantity FROM usage_facts")
            conn.execute("VACUUM ANALYZE bench_plain")
            with cpu_used(home) as group_by_cpu:
                started = time.perf_counter()
                conn.execute("CREATE TABLE bench_groupby AS SELECT customer_id,"
                             " date_trunc('month', event_time AT TIME ZONE 'UTC') AS month, meter,"
                             " sum(quantity) AS units, count(*) AS facts FROM bench_plain GROUP BY 1, 2, 3")
                group_by_s = time.perf_counter() - started
            top = conn.execute("SELECT max(n)::float8 / sum(n) FROM (SELECT count(*) AS n FROM bench_plain"
                               " GROUP BY customer_id) c").fetchone()[0]
        group_by_rate = usage_rows / group_by_s

        def cpu_ratio(cpu: dict) -> float:  # in the form of the wall-time ratios
            return round(facts / cpu["s"] / (usage_rows / group_by_cpu["s"]), 3)

        def cores_at(cpu: dict, target: float) -> float:  # the work over the wall time the target allows
            return round(cpu["s"] / (facts / (target * group_by_rate)), 1)

        return {
            "shape": name, "customers": customers, "zipf": zipf, "facts": facts, "usage_facts": usage_rows,
            "largest_customer_share": round(top, 4),
            "rebuild_s": round(rebuilt["seconds"], 2), "rebuild_finance_s": round(finance_s, 2),
            "group_by_s": round(group_by_s, 2),
            "ratio_rebuild_to_group_by": round(facts / rebuilt["seconds"] / group_by_rate, 3),
            "ratio_rebuild_finance_to_group_by": round(facts / finance_s / group_by_rate, 3),
            # CPU seconds of every process, summed over cores: the work itself, whatever the cores it ran on
            "cpu_s": {"rebuild": round(rebuild_cpu["s"], 1), "finance": round(finance_cpu["s"], 1),
                      "group_by": round(group_by_cpu["s"], 1)},
            "cpu_ratio_rebuild_to_group_by": cpu_ratio(rebuild_cpu),
            "cpu_ratio_rebuild_finance_to_group_by": cpu_ratio(finance_cpu),
            # the cores each build's work would need, spread perfectly, to meet its target against this run's
            # GROUP BY wall time
            "cores_at_target": {"rebuild": cores_at(rebuild_cpu, TARGETS["ratio_rebuild_to_group_by"]),
                                "finance": cores_at(finance_cpu, TARGETS["ratio_rebuild_finance_to_group_by"])},
        }
    finally:
        if keep:
            run_ledger(home, "server", "stop")
        else:
            cleanup(home)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--late-share", type=float, default=0.02)
    parser.add_argument("--shapes", default="uniform,wide,deep")
    parser.add_argument("--keep", type=Path, help="leave each shape's store in KEEP/<shape>")
    args = parser.parse_args()
    results = []
    for name in args.shapes.split(","):
        results.append(run_shape(name, args.events, args.late_share, args.keep))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # each shape as it is done
    print(json.dumps({"benchmark": "rebuild_shapes", "events": args.events, "shapes": results,
                      "targets": TARGETS},
                     indent=2))


if __name__ == "__main__":
    main()
