"""Rebuild benchmark: `ledger project --rebuild` against a plain GROUP BY on the same server.

One run on a fresh embedded default: 10M usage facts over 20,000 customers and 6 months, with identity
links, attributes, prices, invoices, two period closes and 2% late usage, all appended through the real
`ledger ingest` path; settles the store (VACUUM ANALYZE, CHECKPOINT); then times `ledger project --rebuild`,
and a single SQL `GROUP BY customer, month, meter` over the same usage rows copied into a plain table; then
ingests 100k new usage facts and times the incremental `ledger project`, then the same with 2% of the batch
late. Prints JSON.

    python benchmarks/rebuild.py [--events 10000000] [--customers 20000] [--home DIR]

`--home DIR` keeps the prepared store in DIR (not deleted at the end) and, when DIR already holds one, skips
generation and ingest: the rebuild and GROUP BY run again, and each run adds its own fresh 100k-fact increment
(so the store grows by that much a run). Without it, every run is a full fresh one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_reference, must, prepared_store  # noqa: E402

MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]


def relabel(source: Path, target: Path, prefix: str) -> None:
    """Copy a usage file giving its event ids a prefix, so its events are new facts."""
    with open(source) as inp, open(target, "w") as out:
        for line in inp:
            out.write(line.replace('"event_id":"u', f'"event_id":"{prefix}', 1))


def store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the store `prepare` makes (also read by the benchmarks that reuse it)."""
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--late-share", type=float, default=0.02)
    parser.add_argument("--increment", type=int, default=100_000)


def main() -> None:
    parser = argparse.ArgumentParser()
    store_arguments(parser)
    parser.add_argument("--home", type=Path, help="keep (and reuse) the prepared store in this directory")
    args = parser.parse_args()
    timings: dict[str, float] = {}
    with prepared_store(args.home, "ledger-bench-rebuild-", lambda home: prepare(home, args)) as store:
        home, run = store.home, store.run
        ingest_rate = store.prepared if store.fresh else None
        data = home / "data"
        relabel(data / "more_raw.ndjson", data / "more.ndjson", f"more{run}_")
        late_in_mixed = int(args.increment * args.late_share)
        mixed_batch(data, run, args.increment - late_in_mixed, late_in_mixed)

        from ledger.store.embedded import DATABASE, EmbeddedServer
        import psycopg

        timings["settle_s"] = settle(EmbeddedServer(home).conninfo(DATABASE))
        timings["rebuild_wall_s"], rebuilt = must(home, "project", "--rebuild", "--json")

        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            usage_rows = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
            # every usage fact is a usage_facts row; the events table holds the other facts and one event per
            # appended usage batch (which is not a fact of its own)
            facts = usage_rows + conn.execute(
                "SELECT count(*) FROM ledger_events WHERE topic <> 'ledger.UsageBatchRecorded'").fetchone()[0]
            conn.execute("CREATE TABLE bench_plain AS SELECT 'c' || substr(source_customer_id, 2) AS customer_id,"
                         " event_time, meter, quantity FROM usage_facts")
            conn.execute("VACUUM ANALYZE bench_plain")
            timings["rebuild_finance_s"] = finance_build_seconds(conn)
            started = time.perf_counter()
            conn.execute("CREATE TABLE bench_groupby AS SELECT customer_id,"
                         " date_trunc('month', event_time AT TIME ZONE 'UTC') AS month, meter,"
                         " sum(quantity) AS units, count(*) AS facts FROM bench_plain GROUP BY 1, 2, 3")
            timings["group_by_s"] = time.perf_counter() - started
            conn.execute("DROP TABLE bench_plain, bench_groupby")
            timings["finance_pass_s"] = finance_pass_seconds(conn)
            # The baseline just wrote ~60 bytes a fact; flush it now so the incremental run below does not pay
            # for the baseline's writes (the checkpointer would be writing them out while it runs).
            conn.execute("CHECKPOINT")

        _, more = must(home, "ingest", "usage", str(data / "more.ndjson"), "--json")
        timings["incremental_wall_s"], incremental = must(home, "project", "--finance-only", "--json")
        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            floor = increment_touch_floor(conn, more["first_position"], more["last_position"])
        timings["risk_incremental_wall_s"], risk_incremental = must(home, "project", "--json")
        # the same size of batch with 2% late facts (into the closed months), as batches arrive after a close
        _, mixed_ingest = must(home, "ingest", "usage", str(data / "mixed.ndjson"), "--json")
        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # as before the first increment: the worst case, its pages' first writes
        _, mixed = must(home, "project", "--finance-only", "--json")
        _, mixed_risk = must(home, "project", "--json")

        rebuild_rate = facts / rebuilt["seconds"]
        finance_rate = facts / timings["rebuild_finance_s"]
        group_by_rate = usage_rows / timings["group_by_s"]
        print(json.dumps({
            "benchmark": "rebuild",
            "facts": facts, "usage_facts": usage_rows, "customers": args.customers, "months": len(MONTHS),
            "late_facts": int(args.events * args.late_share), "closes": 2, "run_on_this_store": run,
            "ingest_usage_events_per_s": ingest_rate,
            "settle_s": round(timings["settle_s"], 2),
            "rebuild_s": round(rebuilt["seconds"], 2), "rebuild_wall_s": round(timings["rebuild_wall_s"], 2),
            "rebuild_facts_per_s": round(rebuild_rate),
            "group_by_s": round(timings["group_by_s"], 2), "group_by_rows_per_s": round(group_by_rate),
            "ratio_rebuild_to_group_by": round(rebuild_rate / group_by_rate, 3),
            "rebuild_finance_s": round(timings["rebuild_finance_s"], 2),
            "rebuild_finance_facts_per_s": round(finance_rate),
            "ratio_rebuild_finance_to_group_by": round(finance_rate / group_by_rate, 3),
            # the one aggregation pass over usage_facts with the fields Finance's read models keep (no resolution,
            # no lateness, nothing written but the groups): what the rebuild cannot do without
            "finance_pass_s": round(timings["finance_pass_s"], 2),
            "ratio_finance_pass_to_group_by": round(timings["group_by_s"] / timings["finance_pass_s"], 3),
            "incremental_facts": incremental["facts_applied"],
            "incremental_project_s": round(incremental["seconds"], 3),
            "incremental_wall_s": round(timings["incremental_wall_s"], 3),
            "risk_views_incremental_s": round(risk_incremental["seconds"], 3),
            # the rows of Finance's read models that the increment must change, each only touched (+1, rolled back)
            "increment_touch_floor": floor,
            "incremental_mixed": {"facts": mixed["facts_applied"], "late_facts": late_in_mixed,
                                  "path": mixed.get("path"), "project_s": round(mixed["seconds"], 3),
                                  "risk_views_s": round(mixed_risk["seconds"], 3),
                                  "appended": mixed_ingest["appended"]},
            "targets": {"rebuild_facts_per_s": 300_000, "ratio_to_group_by": 0.5, "incremental_s": 1.0},
        }, indent=2))


def finance_build_seconds(conn) -> float:
    """Finance's read models alone: the rebuild's build step with the Risk and Sales views left out, in a
    transaction rolled back afterwards (the live tables stay as `ledger project --rebuild` left them)."""
    from ledger.projector import engine

    head = conn.execute("SELECT position FROM ledger_proj.checkpoint").fetchone()[0]
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        engine.build(conn, "bench_finance_only", head, groups=("finance",))
        return time.perf_counter() - started


def settle(conninfo: str) -> float:
    """VACUUM ANALYZE the fact tables, then CHECKPOINT: what autovacuum does after a bulk load, done before the
    timed rebuild as it is for the GROUP BY's table. The first read of 10M freshly loaded rows sets their hint
    bits, which this server (data checksums on) writes to the WAL: a rebuild right after the load took 58.6 s,
    the next one 45.2 s. Returns its seconds."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) usage_facts")
        conn.execute("VACUUM (ANALYZE) ledger_events")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


def mixed_batch(data: Path, run: int, on_time: int, late: int) -> None:
    """mixed.ndjson: ON_TIME facts of the open months (more_raw's first) and LATE facts of the closed ones
    (late_raw's first), all with new event ids."""
    with open(data / "mixed.ndjson", "w") as out:
        for name, count, prefix in (("more_raw.ndjson", on_time, f"mixed{run}_"),
                                    ("late_raw.ndjson", late, f"mixedlate{run}_")):
            with open(data / name) as inp:
                for _, line in zip(range(count), inp):
                    out.write(line.replace('"event_id":"u', f'"event_id":"{prefix}', 1))


def finance_pass_seconds(conn) -> float:
    """usage_group_stage's aggregation alone (its own statement, rendered with no close so that no fact is held
    back as late; the build's work_mem and plan settings), rolled back: a floor under any rebuild that keeps
    trace's digests and positions and adoption's day masks."""
    from ledger.projector.templates import FULL, CutoffCase, Target, sections

    fill = sections("usage_group_stage")["fill"]
    head = conn.execute("SELECT max(position) FROM usage_facts").fetchone()[0]
    statement = next(part for part in fill.split(";\n") if "CREATE TABLE" in part)  # after its SET lines
    aggregation = Target("ledger_proj", head).render(statement, {**FULL, "cutoff": CutoffCase([])})
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL work_mem = '1GB'")
        conn.execute("SET LOCAL enable_sort = off")
        started = time.perf_counter()
        conn.execute(aggregation)
        return time.perf_counter() - started


# The keys of Finance's read models that usage facts in a position range reach, resolved with the current links:
# only the keys, not usage_batch_stage's aggregates (this is the least an increment must do to find its rows).
INCREMENT_KEYS = """
CREATE TEMP TABLE bench_keys AS
SELECT DISTINCT r.customer_id, to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month, f.meter, f.source,
       f.source_customer_id
FROM usage_facts f
JOIN ledger_proj.link_range r
  ON r.source = f.source AND r.source_customer_id = f.source_customer_id AND r.known_through = 9223372036854775807
 AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
WHERE f.position BETWEEN %s AND %s"""
TOUCHES = {
    "usage_on_time": "UPDATE ledger_proj.usage_on_time t SET units = t.units + 1 FROM bench_keys k"
                     " WHERE (t.customer_id, t.month, t.meter, t.source, t.source_customer_id)"
                     " = (k.customer_id, k.month, k.meter, k.source, k.source_customer_id)",
    "customer_month_meter": "UPDATE ledger_proj.customer_month_meter t SET on_time_units = t.on_time_units + 1"
                            " FROM (SELECT DISTINCT customer_id, month, meter FROM bench_keys) k"
                            " WHERE (t.customer_id, t.month, t.meter) = (k.customer_id, k.month, k.meter)",
    "customer_month": "UPDATE ledger_proj.customer_month t SET usage_units = t.usage_units + 1"
                      " FROM (SELECT DISTINCT customer_id, month FROM bench_keys) k"
                      " WHERE (t.customer_id, t.month) = (k.customer_id, k.month)",
    "exceptions": "UPDATE ledger_proj.exceptions t SET actual = t.actual + 1"
                  " FROM (SELECT DISTINCT customer_id, month, meter FROM bench_keys) k"
                  " WHERE t.kind = 'billed_vs_metered' AND (t.customer_id, t.month, t.meter) = (k.customer_id, k.month, k.meter)",
}


def increment_touch_floor(conn, first: int, last: int, repeat: int = 3) -> dict:
    """What the additive increment cannot go below: one in-place update of each read-model row its facts change
    (the same joins the increment needs to find them), with nothing computed. Rolled back; best of REPEAT."""
    best: dict[str, float] = {}
    rows: dict[str, int] = {}
    for _ in range(repeat):
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL work_mem = '256MB'")
            started = time.perf_counter()
            conn.execute(INCREMENT_KEYS, (first, last))
            conn.execute("ANALYZE bench_keys")
            seconds = {"keys": time.perf_counter() - started}
            for table, statement in TOUCHES.items():
                started = time.perf_counter()
                rows[table] = conn.execute(statement).rowcount
                seconds[table] = time.perf_counter() - started
        best = {k: min(v, best.get(k, v)) for k, v in seconds.items()}
    return {"seconds": round(sum(best.values()), 3), "by_step_s": {k: round(v, 3) for k, v in best.items()},
            "rows": rows}


def prepare(home: Path, args: argparse.Namespace) -> float:
    """Generates the scenario and appends it through `ledger ingest`; returns the usage ingest rate."""
    from ledger.demo.bulk import usage_only, usage_only_reference

    data = home / "data"
    reference = usage_only_reference(data, args.customers, MONTHS, seed=1)
    late_n = int(args.events * args.late_share)
    main_usage = usage_only(data / "usage.ndjson", args.events - late_n, args.customers, MONTHS, seed=2)
    usage_only(data / "late_raw.ndjson", late_n, args.customers, MONTHS[:2], seed=3)
    relabel(data / "late_raw.ndjson", data / "late.ndjson", "late")
    usage_only(data / "more_raw.ndjson", args.increment, args.customers, MONTHS[3:], seed=4)

    report = load_reference(home, reference, main_usage.path, MONTHS[:2])
    must(home, "ingest", "usage", str(data / "late.ndjson"), "--json")
    return report["events_per_second"]


if __name__ == "__main__":
    main()
