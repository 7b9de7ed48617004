"""Archive benchmark: `ledger archive facts` throughput in facts/s, and what a second, incremental run costs.

In one run on a fresh embedded store: ingest N generated usage events; time `ledger archive facts` (the first,
whole run); time a plain `COPY usage_facts TO STDOUT` of the same rows on the same server as the baseline
(ratio = archive facts/s over COPY rows/s); ingest 1% more events and time the second run (only new files);
time `ledger verify --archive`. Prints JSON.

    python benchmarks/archive.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, ledger_env, must  # noqa: E402
from ingest import generate  # noqa: E402


def copy_rate(home: Path) -> float:
    import os

    from ledger.settings import Settings
    from ledger.store.database import Database

    saved = dict(os.environ)
    os.environ.update(ledger_env(home))
    db = Database(Settings.from_env())
    try:
        with db.connection() as conn:
            started = time.perf_counter()
            rows = 0
            with conn.cursor().copy("COPY usage_facts TO STDOUT") as copy:
                for block in copy:
                    rows += bytes(block).count(b"\n")
            seconds = time.perf_counter() - started
    finally:
        db.close()
        os.environ.clear()
        os.environ.update(saved)
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ledger-archive-bench-"))
    home = fresh_home("ledger-bench-archive-")
    try:
        generate(work / "usage.ndjson", args.events, 0.0)
        must(home, "server", "start")
        must(home, "ingest", "usage", str(work / "usage.ndjson"), "--json")
        first_seconds, first = must(home, "archive", "facts", "--output", str(work / "archive"), "--json")
        baseline = copy_rate(home)
        generate(work / "more.ndjson", args.events // 100, 0.0)
        lines = (work / "more.ndjson").read_text().replace('"evt-', '"more-')
        (work / "more.ndjson").write_text(lines)
        must(home, "ingest", "usage", str(work / "more.ndjson"), "--json")
        second_seconds, second = must(home, "archive", "facts", "--output", str(work / "archive"), "--json")
        verify_seconds, verified = must(home, "verify", "--archive", str(work / "archive"), "--json")
        archived = first["rows"]["usage"] + first["rows"]["facts"]
        print(json.dumps({
            "events": args.events, "first_run_facts": archived, "first_run_seconds": first["seconds"],
            "archive_facts_per_second": round(archived / first["seconds"]),
            "plain_copy_rows_per_second": round(baseline),
            "ratio_archive_to_plain_copy": round(archived / first["seconds"] / baseline, 3),
            "first_run_files": len(first["files"]),
            "second_run_new_usage_facts": second["rows"]["usage"], "second_run_seconds": second["seconds"],
            "second_run_files": len(second["files"]),
            "verify_archive_seconds": round(verify_seconds, 2), "verify_ok": verified["ok"],
            "command_seconds": {"first": round(first_seconds, 2), "second": round(second_seconds, 2)},
        }, indent=2))
    finally:
        cleanup(home)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
