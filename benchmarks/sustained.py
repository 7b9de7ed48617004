"""Sustained load: usage appended at a fixed rate while `ledger project --follow` keeps the read models current.

On the wide shape (200,000 customers, usage Zipf-skewed with exponent 1.1 over them, links, attributes, prices,
invoices, two closes): a base store is built and projected; then `ledger project --follow` runs while an
appender process commits a batch of usage every `--tick` seconds at `--rate` events/s for `--duration` seconds,
and this process samples both checkpoints (Finance's read models; the Risk and Sales views) every 50 ms. A
batch's lag is the time from its commit to the first sample whose checkpoint covers its last position. Reported
per rate: events/s actually appended, Finance and Risk lag p50 / p99 / max, whether the lag stayed bounded (the
last third of the run no worse than twice the first third, and the follower caught up within 60 s of the end),
then `ledger project --check`. Prints JSON.

    python benchmarks/sustained.py [--rates 5000,20000] [--duration 600] [--customers 200000]
                                   [--base-events 1000000] [--home DIR]

The baseline of the ratio is the rate asked for: "bounded at 20,000 events/s" is the target.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LEDGER, ledger_env, load_reference, must, prepared_store  # noqa: E402

MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
OPEN_MONTH = MONTHS[-1]
METER_TAILS = [f'{meter}","quantity":{q},"event_time":"'
               for meter, top in (("api_calls", 40), ("fraud_checks", 3), ("rules_evaluated", 20))
               for q in range(1, top + 1)]


class ZipfUsage:
    """Usage lines over the customers' source ids, customers drawn with probability ∝ rank^-exponent."""

    def __init__(self, customers: int, exponent: float, seed: int):
        self.rng = np.random.default_rng(seed)
        weights = np.arange(1, customers + 1, dtype=np.float64) ** -exponent
        self.cumulative = np.cumsum(weights / weights.sum())
        self.ids = [f'","source":"product","source_customer_id":"p{i:07d}","meter":"' for i in range(customers)]

    def lines(self, prefix: str, start: int, n: int, month: str) -> bytes:
        who = np.searchsorted(self.cumulative, self.rng.random(n))
        tails = self.rng.integers(0, len(METER_TAILS), n)
        seconds = self.rng.integers(0, 28 * 86_400, n)
        micros = self.rng.integers(0, 1_000_000, n)
        base = datetime.fromisoformat(f"{month}-01T00:00:00").timestamp()
        out = []
        for k in range(n):
            moment = datetime.fromtimestamp(base + int(seconds[k]), timezone.utc)
            out.append(f'{{"event_id":"{prefix}{start + k}{self.ids[who[k]]}{METER_TAILS[tails[k]]}'
                       f'{moment:%Y-%m-%dT%H:%M:%S}.{micros[k]:06d}Z"}}\n')
        return "".join(out).encode()


def prepare(home: Path, args: argparse.Namespace) -> dict:
    """Reference facts for the customers, the base usage over five months, two closes, invoices; projected."""
    from ledger.demo.bulk import usage_only_reference

    data = home / "data"
    reference = usage_only_reference(data, args.customers, MONTHS, seed=1)
    zipf = ZipfUsage(args.customers, args.exponent, seed=2)
    per_month = args.base_events // (len(MONTHS) - 1)
    with open(data / "usage.ndjson", "wb") as out:
        for i, month in enumerate(MONTHS[:-1]):
            out.write(zipf.lines("b", i * per_month, per_month, month))
    load_reference(home, reference, data / "usage.ndjson", MONTHS[:2])
    seconds, _ = must(home, "project", "--rebuild", "--json")
    return {"base_usage_events": per_month * (len(MONTHS) - 1), "base_rebuild_s": round(seconds, 2)}


def append_at_rate(conninfo: str, home: str, rate: int, duration: float, tick: float, customers: int,
                   exponent: float, prefix: str, out) -> None:
    """The appender: every TICK seconds one batch of RATE*TICK usage events, committed through the real ingest;
    (commit time, last position, events) of each batch goes to OUT."""
    from ledger.commands.ingest import ingest_source
    from ledger.ingest.reader import InputSource
    from ledger.settings import Settings
    from ledger.store.database import Database

    zipf = ZipfUsage(customers, exponent, seed=hash(prefix) & 0xFFFF)
    db = Database(Settings(database_url=conninfo, home=Path(home)))
    per_batch = max(1, int(rate * tick))
    started = time.monotonic()
    sent = 0
    try:
        while (due := started + sent / rate) < started + duration:
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            body = zipf.lines(prefix, sent, per_batch, OPEN_MONTH)
            source = InputSource(f"live:{prefix}", io.BufferedReader(io.BytesIO(body)), len(body))
            report = ingest_source(db, "usage", source, "ndjson")
            out.put((time.time(), report.last_position, report.appended))
            sent += per_batch
    finally:
        out.put(None)
        db.close()


def lag_stats(batches: list[tuple[float, int, int]], samples: list[tuple[float, int, int]], which: int) -> dict:
    """Commit-to-visible lags of the batches against one checkpoint (1: Finance, 2: Risk)."""
    times = np.array([s[0] for s in samples])
    marks = np.maximum.accumulate(np.array([s[which] for s in samples]))
    lags = []
    for committed, last, _ in batches:
        covered = np.nonzero(marks >= last)[0]
        seen = [i for i in covered if times[i] >= committed]
        lags.append(times[seen[0]] - committed if seen else float("inf"))
    lags = np.array(lags)
    finite = lags[np.isfinite(lags)]
    third = max(1, len(lags) // 3)
    first, last = lags[:third], lags[-third:]
    bounded = bool(np.isfinite(lags).all() and np.percentile(last, 99) <= max(2 * np.percentile(first, 99), 1.0))
    return {"p50_s": round(float(np.percentile(finite, 50)), 3) if len(finite) else None,
            "p99_s": round(float(np.percentile(finite, 99)), 3) if len(finite) else None,
            "max_s": round(float(finite.max()), 3) if len(finite) else None,
            "never_visible_batches": int((~np.isfinite(lags)).sum()), "bounded": bounded}


def run_rate(home: Path, conninfo: str, rate: int, args: argparse.Namespace, run: str) -> dict:
    from ledger.projector.follow import read_checkpoints
    import psycopg

    # the follower's runs, one JSON line each (path, facts, seconds, lags), kept in the home beside its stderr
    follower = subprocess.Popen([LEDGER, "project", "--follow", "--interval", "1", "--json"], env=ledger_env(home),
                                stdout=open(home / f"follow-{run}.jsonl", "wb"),
                                stderr=open(home / f"follow-{run}.log", "wb"))
    out = mp.get_context("spawn").Queue()
    appender = mp.get_context("spawn").Process(target=append_at_rate, args=(
        conninfo, str(home), rate, args.duration, args.tick, args.customers, args.exponent, run, out))
    samples: list[tuple[float, int, int]] = []
    batches: list[tuple[float, int, int]] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        time.sleep(2)  # the follower's first run over what is already there
        started = ended = time.time()
        appender.start()
        done = False
        while True:
            cp = read_checkpoints(conn) or (0, 0)
            samples.append((time.time(), cp[0], cp[1]))
            while not out.empty():
                item = out.get()
                if item is None:
                    done = True
                else:
                    batches.append(item)
            if done:
                head = max((b[1] for b in batches if b[1] is not None), default=0)
                if (cp[0] >= head and cp[1] >= head) or time.time() > ended + 60:
                    break
            else:
                ended = time.time()
            time.sleep(0.05)
    appender.join()
    follower.send_signal(signal.SIGTERM)
    follower_exit = follower.wait(timeout=120)
    batches = [b for b in batches if b[1] is not None]
    appended = sum(b[2] for b in batches)
    finance, risk = lag_stats(batches, samples, 1), lag_stats(batches, samples, 2)
    caught_up = samples[-1][1] >= batches[-1][1] and samples[-1][2] >= batches[-1][1]
    finance["bounded"] = finance["bounded"] and caught_up
    risk["bounded"] = risk["bounded"] and caught_up
    rate_achieved = appended / (ended - started)
    return {"rate_asked": rate, "events_per_s_appended": round(rate_achieved), "seconds": round(ended - started, 1),
            "batches": len(batches), "events": appended, "finance_lag": finance, "risk_lag": risk,
            "caught_up_within_60_s": caught_up, "follower_exit_code": follower_exit,
            "kept_the_rate": rate_achieved >= 0.95 * rate}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="5000,20000", help="events/s, comma separated, run in turn")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load per rate")
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between the appender's batches")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--exponent", type=float, default=1.1)
    parser.add_argument("--base-events", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="keep (and reuse) the prepared store in this directory")
    args = parser.parse_args()
    with prepared_store(args.home, "ledger-bench-sustained-", lambda home: prepare(home, args)) as store:
        home, base = store.home, {**store.prepared, "runs": store.run}
        from ledger.store.embedded import DATABASE, EmbeddedServer

        conninfo = EmbeddedServer(home).conninfo(DATABASE)
        results = [run_rate(home, conninfo, int(rate), args, f"r{base['runs']}x{rate}x")
                   for rate in args.rates.split(",")]
        check_s, check = must(home, "project", "--check", "--json")
        bounded = [r["rate_asked"] for r in results if r["kept_the_rate"] and r["finance_lag"]["bounded"]
                   and r["risk_lag"]["bounded"]]
        print(json.dumps({
            "benchmark": "sustained", "customers": args.customers, "zipf_exponent": args.exponent, **base,
            "duration_s_per_rate": args.duration, "tick_s": args.tick, "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(), "rates": results,
            "highest_bounded_rate": max(bounded, default=None),
            "check_equal": all(t["equal"] for t in check.values()), "check_s": round(check_s, 1),
            "targets": {"rate": 20_000, "finance_lag_p99_s": 5, "risk_lag_p99_s": 30},
        }, indent=2))


if __name__ == "__main__":
    main()
