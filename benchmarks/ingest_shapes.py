"""Ingest shape matrix: `ledger ingest usage` for each timestamp shape and format, against raw COPY of the same rows.

For each case (a timestamp shape written in one format), on a fresh embedded default: generate N usage events
(1% exact duplicates at random places; the same records for every case, only the format and the spelling
of event_time differ); time `ledger ingest usage` as a command (process start included); then
time a raw PostgreSQL COPY of the same unique rows (event_time as written) into a plain table keyed on
(source, event_id) on the same server. Target: every case >= 0.5x its raw COPY. Each case also reports its
parser's CPU time per line (in this process, before the timings), which other load moves far less. Prints JSON.

    python benchmarks/ingest_shapes.py [--events 1000000] [--repeat 1] [--cases ndjson:whole_seconds_z,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, peak_child_rss_mb, run_ledger  # noqa: E402
from ingest import generate, ndjson_line, raw_copy_data_rate  # noqa: E402

# (month, day, hour, minute, second, microsecond) -> event_time: the same wall-clock fields spelled in each
# shape (an offset shape names another instant, by its offset; the coarser ones drop digits)
SHAPES = {
    "microseconds_z": lambda mo, d, h, mi, s, us: "2026-%02d-%02dT%02d:%02d:%02d.%06dZ" % (mo, d, h, mi, s, us),
    "whole_seconds_z": lambda mo, d, h, mi, s, us: "2026-%02d-%02dT%02d:%02d:%02dZ" % (mo, d, h, mi, s),
    "milliseconds_z": lambda mo, d, h, mi, s, us: "2026-%02d-%02dT%02d:%02d:%02d.%03dZ" % (mo, d, h, mi, s, us // 1000),
    "offset_plus_02": lambda mo, d, h, mi, s, us: "2026-%02d-%02dT%02d:%02d:%02d+02:00" % (mo, d, h, mi, s),
    "milliseconds_offset_minus_05": lambda mo, d, h, mi, s, us: (
        "2026-%02d-%02dT%02d:%02d:%02d.%03d-05:00" % (mo, d, h, mi, s, us // 1000)),
    "nanoseconds_lowercase_tz": lambda mo, d, h, mi, s, us: (
        "2026-%02d-%02dt%02d:%02d:%02d.%06d789z" % (mo, d, h, mi, s, us)),
    "space_microseconds_plus_0530": lambda mo, d, h, mi, s, us: (
        "2026-%02d-%02d %02d:%02d:%02d.%06d+05:30" % (mo, d, h, mi, s, us)),
}


def csv_line(event_id: str, source: str, customer: str, meter: str, quantity: int, event_time: str) -> str:
    return "%s,%s,%s,%s,%d,%s\n" % (event_id, source, customer, meter, quantity, event_time)


def cloudevent_line(event_id: str, source: str, customer: str, meter: str, quantity: int, event_time: str) -> str:
    return ('{"specversion": "1.0", "id": "%s", "source": "%s", "type": "%s", "subject": "%s", "time": "%s", '
            '"datacontenttype": "application/json", "data": {"quantity": %d}}\n') % (
        event_id, source, meter, customer, event_time, quantity)


FORMATS = {  # format: (line writer, header, file extension)
    "ndjson": (ndjson_line, "", "ndjson"),
    "csv": (csv_line, "event_id,source,source_customer_id,meter,quantity,event_time\n", "csv"),
    "cloudevents": (cloudevent_line, "", "ndjson"),
}
DEFAULT_CASES = [f"ndjson:{shape}" for shape in SHAPES] + [
    "csv:microseconds_z", "csv:milliseconds_offset_minus_05",
    "cloudevents:microseconds_z", "cloudevents:milliseconds_offset_minus_05"]


def parse_cpu_us(fmt: str, path: Path, sample: int = 100_000) -> float:
    """CPU microseconds per line of the format's parser on the file's first SAMPLE lines, in this process, best
    of 3: what a record costs the ingest's parser, which other load on the machine moves far less than a rate."""
    from datetime import datetime, timezone
    from itertools import islice

    from ledger.ingest.cloudevents import parse_cloudevents_chunk
    from ledger.ingest.records import RecordContext
    from ledger.ingest.usage import CsvColumns, parse_csv_block, parse_ndjson_chunk

    ctx = RecordContext(path.name, datetime.now(timezone.utc))
    with open(path, "rb") as source:
        lines = [(number, line.rstrip(b"\n")) for number, line in enumerate(islice(source, sample), start=1)]
    # each format's parser as the ingest's workers run it (a CSV's header read first)
    parse = {"ndjson": lambda: parse_ndjson_chunk(ctx, lines),
             "csv": lambda: parse_csv_block(ctx, CsvColumns(*lines[0]), lines[1:]),
             "cloudevents": lambda: parse_cloudevents_chunk(ctx, lines)}[fmt]
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        chunk = parse()
        best = min(best, time.process_time() - started)
        assert not chunk.rejections, chunk.rejections[:1]
    return best / len(lines) * 1e6


def measure(case: str, events: int, dup_share: float) -> dict:
    fmt, shape = case.split(":")
    line_of, header, extension = FORMATS[fmt]
    home = fresh_home("ledger-bench-shapes-")
    try:
        path = home / f"usage.{extension}"
        rows: list[str] = []
        unique = generate(path, events, dup_share, stamp=SHAPES[shape], line_of=line_of, header=header,
                          unique_rows=rows)
        data = "".join(rows).encode()
        del rows
        cpu_us = parse_cpu_us(fmt, path)
        os.sync()  # the generated file's writeback is no part of either measure

        run_ledger(home, "server", "start")  # a server of its own for each case, started outside the timings
        seconds, result = run_ledger(home, "ingest", "usage", str(path), "--format", fmt, "--json")
        if result.returncode != 0:
            raise SystemExit(f"{case}: ingest failed ({result.returncode}): {result.stderr[-2000:]}")
        report = json.loads(result.stdout)
        assert report["appended"] == unique and report["duplicates"] == events - unique, (case, report)

        from ledger.store.embedded import DATABASE, EmbeddedServer
        copy_rate, copied = raw_copy_data_rate(EmbeddedServer(home).conninfo(DATABASE), data)
        assert copied == unique, (case, copied, unique)
        rate = events / seconds
        return {"case": case, "format": fmt, "shape": shape, "example": SHAPES[shape](1, 5, 10, 0, 7, 123456),
                "events": events, "unique": unique, "ledger_ingest_s": round(seconds, 2),
                "ledger_events_per_s": round(rate), "ledger_report_events_per_s": report["events_per_second"],
                "parser_cpu_us_per_line": round(cpu_us, 2),
                "raw_copy_rows_per_s": round(copy_rate), "ratio_to_raw_copy": round(rate / copy_rate, 3),
                "meets_target": rate / copy_rate >= 0.5}
    finally:
        cleanup(home)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dup-share", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each case this many times (each on a fresh store); report the best ingest and"
                             " the best COPY: on a shared machine the best of a few is the least disturbed")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"format:shape,... (formats {', '.join(FORMATS)}; shapes {', '.join(SHAPES)})")
    args = parser.parse_args()
    results = []
    for case in args.cases.split(","):
        runs = [measure(case, args.events, args.dup_share) for _ in range(args.repeat)]
        for run in runs:
            print(json.dumps(run), file=sys.stderr, flush=True)
        best = max(runs, key=lambda run: run["ledger_events_per_s"])
        copy_rate = max(run["raw_copy_rows_per_s"] for run in runs)
        results.append({**best, "raw_copy_rows_per_s": copy_rate, "runs": args.repeat,
                        "ratio_to_raw_copy": round(best["ledger_events_per_s"] / copy_rate, 3),
                        "meets_target": best["ledger_events_per_s"] / copy_rate >= 0.5})
    print(json.dumps({
        "benchmark": "ingest_shapes", "events_per_case": args.events, "cases": results,
        "target": {"ratio_to_raw_copy": 0.5}, "peak_rss_mb": round(peak_child_rss_mb(), 1),
        "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
