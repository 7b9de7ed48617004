"""Bounded load on `ledger serve` (localhost only): 8 clients post usage batches while 4 readers page through
exports, for --seconds (default 60). Prints JSON: events/s accepted, p50/p99 latency per endpoint, projector lag
(from a batch's commit to the follower's checkpoint passing it), errors (must be 0), and whether the final exports
equal a rebuild (`ledger project --check`).

    python benchmarks/load.py [--seconds 60] [--writers 8] [--readers 4] [--batch 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.api.conftest import start_service, stop_service  # noqa: E402
from tests.conftest import LEDGER_BIN  # noqa: E402
from ledger.store.embedded import EmbeddedServer  # noqa: E402
from ledger.store.migrate import migrate  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _differing(check: subprocess.CompletedProcess) -> list[str] | str:
    try:
        return [name for name, t in json.loads(check.stdout).items() if not t["equal"]]
    except ValueError:
        return f"project --check exited {check.returncode}: {check.stderr.strip()[-300:]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ledger-load-"))
    env = {**os.environ, "LEDGER_HOME": str(home)}
    embedded = None if os.environ.get("LEDGER_DATABASE_URL") else EmbeddedServer(home / "pg")
    db_url = os.environ.get("LEDGER_DATABASE_URL") or embedded.pin()
    with psycopg.connect(db_url, autocommit=True) as conn:
        migrate(conn)
    service = start_service(db_url, home / "serve")
    env["LEDGER_DATABASE_URL"] = db_url
    links = "".join(json.dumps({"source": "product", "source_customer_id": f"pr_{c}", "customer_id": f"cus_{c}",
                                "effective_from": "2025-01-01T00:00:00Z"}) + "\n" for c in range(500)).encode()
    with service.client("ingest") as client:
        client.post("/v1/facts/identities", content=links).raise_for_status()
    latency: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    commits: list[tuple[int, float]] = []
    accepted = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def writer(w: int) -> None:
        n = 0
        with service.client("ingest") as client:
            while not stop.is_set():
                body = "".join(json.dumps({"event_id": f"w{w}-{n + i}", "source": "product",
                                           "source_customer_id": f"pr_{(n + i) % 500}", "meter": "api_calls",
                                           "quantity": 1 + i % 7,
                                           "event_time": f"2026-01-{1 + (n + i) % 28:02d}T10:00:00Z"}) + "\n"
                               for i in range(args.batch)).encode()
                n += args.batch
                started = time.perf_counter()
                response = client.post("/v1/facts/usage", content=body)
                with lock:
                    latency["POST /v1/facts/usage"].append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200 or response.json()["appended"] != args.batch:
                        errors.append(f"ingest {response.status_code}: {response.text[:200]}")
                    else:
                        accepted[0] += args.batch
                        commits.append((response.json()["last_position"], time.monotonic()))

    def reader(r: int) -> None:
        name = ("customer-month", "customer-month-meter")[r % 2]
        with service.client("finance") as client:
            while not stop.is_set():
                cursor = None
                while not stop.is_set():
                    params = {"format": "json", "limit": 500, **({"after": cursor} if cursor else {})}
                    started = time.perf_counter()
                    response = client.get(f"/v1/exports/{name}", params=params)
                    with lock:
                        latency[f"GET /v1/exports/{name}"].append((time.perf_counter() - started) * 1000)
                        if response.status_code != 200:
                            errors.append(f"export {response.status_code}: {response.text[:200]}")
                    cursor = response.headers.get("Ledger-Next-Cursor")
                    if cursor is None:
                        break

    visible: list[tuple[int, float]] = []

    def monitor() -> None:
        with service.client("auditor") as client:
            while not stop.is_set():
                state = client.get("/v1/projections/checkpoints").json()
                visible.append((state["finance"]["checkpoint"], time.monotonic()))
                time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(args.readers)]
    threads.append(threading.Thread(target=monitor))
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    lags = []
    for position, committed in commits:
        seen = next((at for checkpoint, at in visible if checkpoint >= position and at >= committed), None)
        if seen is not None:
            lags.append(seen - committed)
    check = subprocess.run([LEDGER_BIN, "project", "--check", "--json"], env=env, capture_output=True, text=True)
    stop_service(service)
    if embedded is not None:
        embedded.stop()
    print(json.dumps({
        "seconds": round(elapsed, 1), "writers": args.writers, "readers": args.readers, "batch": args.batch,
        "events_accepted": accepted[0], "events_per_second": round(accepted[0] / elapsed),
        "latency_ms": {k: {"n": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
                       for k, v in sorted(latency.items())},
        "finance_lag_s": {"batches": len(commits), "measured": len(lags), "p50": percentile(lags, 0.5),
                          "p99": percentile(lags, 0.99)},
        "errors": len(errors), "first_errors": errors[:3],
        "exports_equal_rebuild": check.returncode == 0,
        "tables_differing_from_rebuild": _differing(check),
    }, indent=2))


if __name__ == "__main__":
    main()
