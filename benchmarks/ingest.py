"""Ingest benchmark: `ledger ingest usage` against raw COPY and eventsourcing's plain path.

In one run on a fresh embedded default: generate N usage events as NDJSON with 1% exact duplicates
at random places; time `ledger ingest usage` on them (peak memory included); time a raw PostgreSQL
COPY of the same unique rows into a plain table keyed on (source, event_id) on the same server; time
eventsourcing's straightforward path (one Application.save per fact) on a 20k sample. Prints JSON.

    python benchmarks/ingest.py [--events 2000000] [--sample 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, peak_child_rss_mb, run_ledger  # noqa: E402

METERS = ("api_calls", "fraud_checks", "rules_evaluated")


def microseconds_z(month: int, day: int, hour: int, minute: int, second: int, micro: int) -> str:
    return "2026-%02d-%02dT%02d:%02d:%02d.%06dZ" % (month, day, hour, minute, second, micro)


def ndjson_line(event_id: str, source: str, customer: str, meter: str, quantity: int, event_time: str) -> str:
    return ('{"event_id": "%s", "source": "%s", "source_customer_id": "%s", "meter": "%s", "quantity": %d, '
            '"event_time": "%s"}\n') % (event_id, source, customer, meter, quantity, event_time)


def generate(path: Path, events: int, dup_share: float, seed: int = 7, stamp=microseconds_z, line_of=ndjson_line,
             header: str = "", unique_rows: list | None = None) -> int:
    """Usage lines (NDJSON unless `line_of` says otherwise); `dup_share` of them repeat an earlier line exactly.

    `stamp` writes each event_time from (month, day, hour, minute, second, microsecond); `unique_rows`, when
    given, receives each unique record as a tab-separated COPY line. Returns the unique count.
    """
    rng = random.Random(seed)
    written, unique, recent = 0, 0, []
    with open(path, "w", buffering=1 << 22) as out:
        out.write(header)
        while written < events:
            if recent and rng.random() < dup_share:
                out.write(rng.choice(recent))
            else:
                fields = ("evt-%010d" % unique, rng.choice(("product", "gateway")), "cu_%06d" % rng.randrange(20_000),
                          rng.choice(METERS), rng.randrange(1, 50),
                          stamp(rng.randint(1, 6), rng.randint(1, 28), rng.randrange(24), rng.randrange(60),
                                rng.randrange(60), rng.randrange(1_000_000)))
                line = line_of(*fields)
                if unique_rows is not None:
                    unique_rows.append("%s\t%s\t%s\t%s\t%d\t%s\n" % fields)
                unique += 1
                out.write(line)
                if len(recent) < 100_000:
                    recent.append(line)
                else:
                    recent[rng.randrange(100_000)] = line
            written += 1
    return unique


def raw_copy_rate(conninfo: str, path: Path) -> tuple[float, int]:
    """COPY of the unique rows (formatted before timing) into a plain keyed table on the same server."""
    import orjson

    seen, rows = set(), []
    with open(path, "rb") as source:
        for line in source:
            r = orjson.loads(line)
            key = (r["source"], r["event_id"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(f'{r["event_id"]}\t{r["source"]}\t{r["source_customer_id"]}\t{r["meter"]}\t'
                        f'{r["quantity"]}\t{r["event_time"]}\n')
    data = "".join(rows).encode()
    del rows, seen
    return raw_copy_data_rate(conninfo, data)


def raw_copy_data_rate(conninfo: str, data: bytes) -> tuple[float, int]:
    """COPY of tab-separated usage rows (event_id, source, customer, meter, quantity, event_time) as the baseline."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_copy")
        conn.execute("CREATE TABLE bench_raw_copy (event_id text, source text, source_customer_id text, meter text,"
                     " quantity bigint, event_time timestamptz, PRIMARY KEY (source, event_id))")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy("COPY bench_raw_copy FROM STDIN") as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        seconds = time.perf_counter() - started
        count = conn.execute("SELECT count(*) FROM bench_raw_copy").fetchone()[0]
        conn.execute("DROP TABLE bench_raw_copy")
    return count / seconds, count


def eventsourcing_rate(conninfo: str, path: Path, sample: int) -> float:
    """eventsourcing's straightforward path: one aggregate and one Application.save per fact."""
    import orjson
    import psycopg
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class UsageFact(Aggregate):
        @event("Recorded")
        def __init__(self, event_id: str, source: str, source_customer_id: str, meter: str, quantity: int,
                     event_time: str):
            self.event_id, self.source, self.quantity = event_id, source, quantity

    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": info["dbname"],
           "POSTGRES_HOST": info["host"], "POSTGRES_PORT": str(info.get("port", 5432)),
           "POSTGRES_USER": info.get("user", "postgres"), "POSTGRES_PASSWORD": ""}

    class Baseline(Application):
        name = "bench_baseline"

    app = Baseline(env=env)
    records = []
    with open(path, "rb") as source:
        for line in source:
            records.append(orjson.loads(line))
            if len(records) >= sample:
                break
    started = time.perf_counter()
    for r in records:
        app.save(UsageFact(**r))
    seconds = time.perf_counter() - started
    app.close()
    return len(records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--dup-share", type=float, default=0.01)
    args = parser.parse_args()

    home = fresh_home("ledger-bench-ingest-")
    try:
        path = home / "usage.ndjson"
        started = time.perf_counter()
        unique = generate(path, args.events, args.dup_share)
        generated_s = time.perf_counter() - started
        os.sync()  # the generated file's writeback is no part of either measure (it would slow the first one run)

        run_ledger(home, "server", "start")  # one server for the whole run; started outside the timings
        seconds, result = run_ledger(home, "ingest", "usage", str(path), "--json")
        if result.returncode != 0:
            raise SystemExit(f"ingest failed: {result.stderr[-2000:]}")
        report = json.loads(result.stdout)
        peak_rss = peak_child_rss_mb()
        assert report["appended"] == unique and report["duplicates"] == args.events - unique, report

        from ledger.store.embedded import DATABASE, EmbeddedServer
        conninfo = EmbeddedServer(home).conninfo(DATABASE)
        copy_rate, copied = raw_copy_rate(conninfo, path)
        es_rate = eventsourcing_rate(conninfo, path, args.sample)
        ledger_rate = args.events / seconds
        print(json.dumps({
            "benchmark": "ingest",
            "events": args.events, "unique": unique, "duplicates": args.events - unique,
            "file_mb": round(path.stat().st_size / 2**20, 1), "generate_s": round(generated_s, 1),
            "ledger_ingest_s": round(seconds, 2),
            "ledger_events_per_s": round(ledger_rate),
            "ledger_report_events_per_s": report["events_per_second"],
            "raw_copy_rows_per_s": round(copy_rate),
            "eventsourcing_save_per_s": round(es_rate),
            "ratio_ledger_to_raw_copy": round(ledger_rate / copy_rate, 3),
            "ratio_ledger_to_eventsourcing": round(ledger_rate / es_rate, 1),
            "peak_rss_mb": round(peak_rss, 1),
            "targets": {"events_per_s": 100_000, "ratio_to_raw_copy": 0.5},
            "cpus": os.cpu_count(),
        }, indent=2))
    finally:
        cleanup(home)


if __name__ == "__main__":
    main()
