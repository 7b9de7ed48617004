"""Why usage facts are rows of `usage_facts` and not events rows: PostgreSQL's cost per usage fact.

On a fresh embedded server, the same N unique usage records are COPYed (binary, batches of 20k, one
transaction each) into scratch tables shaped like:
- `raw`: the ingest benchmark's baseline, a plain table keyed on (source, event_id), text COPY;
- `events+mirror`: the earlier layout, one eventsourcing events row per fact (uuid5 primary key,
  notification-id index, JSON state, chain hash) plus its typed mirror row (position primary key);
- `usage_facts (DEFAULT nextval)`: the typed row only, unique (source, event_id), position drawn per row, its
  primary key;
- `usage_facts (positions written)`: the same with positions written by the appender;
- `usage_facts (positions written, BRIN)`: the same with positions in a block-range index instead of the primary
  key (the layout used).
Every usage_facts layout has the BRIN index on event_time that the store has.
For each, the CPU time of the PostgreSQL backend (read from /proc, so other load on the machine does
not count) and the wall time per row. Prints JSON.

    python benchmarks/usage_store_layout.py [--rows 500000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, run_ledger  # noqa: E402

BATCH = 20_000
NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-5c7d-9e0f-1a2b3c4d5e6f")


def records(n: int):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        yield (f"evt-{i:010d}", ("product", "gateway")[i % 2], f"cu_{i * 7919 % 20000:06d}",
               ("api_calls", "fraud_checks", "rules_evaluated")[i % 3], 1 + i % 49,
               start + timedelta(seconds=i * 13 % (180 * 86400), microseconds=i % 1_000_000), i + 1)


def encode(n: int) -> dict[str, list[bytes] | bytes]:
    import orjson

    from ledger.store import copybin

    text, events, mirror, usage, usage_positioned = [], [], [], [], []
    int4 = b"\x00\x00\x00\x04"
    chain = bytes(32)
    for position, (e, s, c, m, q, t, line) in enumerate(records(n), start=1):
        text.append(f"{e}\t{s}\t{c}\t{m}\t{q}\t{t.isoformat()}\n".encode())
        fields = b"".join((copybin.text_field(e), copybin.text_field(s), copybin.text_field(c), copybin.text_field(m),
                           copybin.INT8_FIELD(8, q), copybin.timestamptz_field(t)))
        tail = int4 + line.to_bytes(4, "big") + copybin.NULL
        state = orjson.dumps({"event_id": e, "source": s, "source_customer_id": c, "meter": m, "quantity": q,
                              "event_time": t.isoformat(), "timestamp": {"_type_": "datetime_iso", "_data_": ""},
                              "recorded_from": "/data/usage/2026-01-01.ndjson", "recorded_line": line})
        chain = hashlib.sha256(chain + position.to_bytes(8, "big") + state).digest()
        events.append(copybin.row_count(6) + copybin.uuid_field(uuid.uuid5(NAMESPACE, f"usage\x1f{s}\x1f{e}"))
                      + copybin.INT8_FIELD(8, 1) + copybin.text_field("ledger.UsageRecorded")
                      + copybin.bytes_field(state) + copybin.INT8_FIELD(8, position) + copybin.bytes_field(chain))
        mirror.append(copybin.row_count(7) + copybin.INT8_FIELD(8, position) + fields)
        usage.append(copybin.row_count(8) + fields + tail)
        usage_positioned.append(copybin.row_count(9) + copybin.INT8_FIELD(8, position) + fields + tail)

    def batches(rows: list[bytes]) -> list[bytes]:
        return [copybin.HEADER + b"".join(rows[i:i + BATCH]) + copybin.TRAILER for i in range(0, len(rows), BATCH)]

    return {"raw": b"".join(text), "events": batches(events), "mirror": batches(mirror), "usage": batches(usage),
            "usage_positioned": batches(usage_positioned)}


USAGE_TABLE = """CREATE TABLE b_usage (position bigint {default} {key}, event_id text NOT NULL,
    source text NOT NULL, source_customer_id text NOT NULL, meter text NOT NULL, quantity bigint NOT NULL,
    event_time timestamptz NOT NULL, line integer NOT NULL, properties text, UNIQUE (source, event_id))"""
BRIN = "CREATE INDEX ON b_usage USING brin ({}) WITH (pages_per_range = {}, autosummarize = on)"
EVENT_TIME_INDEX = BRIN.format("event_time", 32)
USAGE_COLUMNS = "event_id, source, source_customer_id, meter, quantity, event_time, line, properties"
LAYOUTS = {
    "raw": (["CREATE TABLE b_raw (event_id text, source text, source_customer_id text, meter text, quantity bigint,"
             " event_time timestamptz, PRIMARY KEY (source, event_id))"], [("COPY b_raw FROM STDIN", "raw")]),
    "events+mirror": ([
        "CREATE TABLE b_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text,"
        " state bytea, notification_id bigint, chain_hash bytea, PRIMARY KEY (originator_id, originator_version))",
        "CREATE UNIQUE INDEX ON b_events (notification_id)",
        "CREATE TABLE b_mirror (position bigint PRIMARY KEY, event_id text NOT NULL, source text NOT NULL,"
        " source_customer_id text NOT NULL, meter text NOT NULL, quantity bigint NOT NULL,"
        " event_time timestamptz NOT NULL)"],
        [("COPY b_events FROM STDIN (FORMAT BINARY)", "events"), ("COPY b_mirror FROM STDIN (FORMAT BINARY)", "mirror")]),
    "usage_facts (DEFAULT nextval)": (
        ["CREATE SEQUENCE b_seq", USAGE_TABLE.format(default="DEFAULT nextval('b_seq')", key="PRIMARY KEY"),
         EVENT_TIME_INDEX],
        [(f"COPY b_usage ({USAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)", "usage")]),
    "usage_facts (positions written)": (
        [USAGE_TABLE.format(default="", key="PRIMARY KEY"), EVENT_TIME_INDEX],
        [(f"COPY b_usage (position, {USAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)", "usage_positioned")]),
    "usage_facts (positions written, BRIN)": (
        [USAGE_TABLE.format(default="", key="NOT NULL"), EVENT_TIME_INDEX, BRIN.format("position", 16)],
        [(f"COPY b_usage (position, {USAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)", "usage_positioned")]),
}


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(conn, name: str, data: dict, n: int) -> dict:
    setup, copies = LAYOUTS[name]
    conn.execute("DROP TABLE IF EXISTS b_raw, b_events, b_mirror, b_usage")
    conn.execute("DROP SEQUENCE IF EXISTS b_seq")
    for statement in setup:
        conn.execute(statement)
    conn.execute("CHECKPOINT")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    cpu, started = backend_cpu_seconds(pid), time.perf_counter()
    if name == "raw":
        with conn.transaction(), conn.cursor() as cur, cur.copy(copies[0][0]) as copy:
            raw = data["raw"]
            for i in range(0, len(raw), 1 << 20):
                copy.write(raw[i:i + (1 << 20)])
    else:
        for b in range(len(data[copies[0][1]])):
            with conn.transaction(), conn.cursor() as cur:
                for statement, key in copies:
                    with cur.copy(statement) as copy:
                        copy.write(data[key][b])
    wall = time.perf_counter() - started
    cpu = backend_cpu_seconds(pid) - cpu
    return {"backend_us_per_row": round(cpu / n * 1e6, 2), "wall_us_per_row": round(wall / n * 1e6, 2)}


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = encode(args.rows)
    home = fresh_home("ledger-bench-layout-")
    try:
        run_ledger(home, "server", "start")
        from ledger.store.embedded import DATABASE, EmbeddedServer

        results: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            for _ in range(args.rounds):
                for name in LAYOUTS:
                    results[name].append(measure(conn, name, data, args.rows))
        best = {name: min(runs, key=lambda r: r["backend_us_per_row"]) for name, runs in results.items()}
        raw = best["raw"]["backend_us_per_row"]
        print(json.dumps({
            "benchmark": "usage_store_layout", "rows": args.rows, "rounds": args.rounds,
            "best_of_rounds": best,
            "backend_cost_vs_raw_copy": {name: round(r["backend_us_per_row"] / raw, 2) for name, r in best.items()},
        }, indent=2))
    finally:
        cleanup(home)


if __name__ == "__main__":
    main()
