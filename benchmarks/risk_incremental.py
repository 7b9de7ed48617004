"""Risk views benchmark: the first build of usage_daily, adoption and anomalies, and increments of two sizes.

One run on a fresh embedded default: ~2M usage facts (Jan 1 - Apr 25, 2026) over N customers with one or two source
ids each, ingested month by month through `ledger ingest` with January to March closed after their month's facts
and 2% of each month's facts arriving late (after its close); then `ledger project` builds every read model, and the
risk views alone are built again, step by step, in a scratch schema (rolled back) to time them apart.
Increments follow on the same store, each the next stretch of the stream (as many days as its size takes at the
base rate, 3% of it late into closed March or delayed into open April): every size of `--increments` with usage
only, then every size again with 21 new identity links (10 effective at noon inside a day with usage, 10 at a
midnight, one new source id), and last the close of April. Each is timed twice: `ledger project --finance-only`
(Finance's read models), then `ledger project` (the risk views catching up from their own checkpoint); a ratio
of the risk times of the largest and smallest size (the least of its repeats) shows how the cost grows with the
increment. Every increment runs `--repeat` times in a row; the store is vacuumed and analysed once before the first
(as autovacuum would after the bulk load), so that one-off work is not timed inside an increment. Finally
`ledger project --check` compares the incremental risk tables with a rebuild from position 0. Prints JSON.

`--history-months K` puts K more closed months before January (at the same daily rate, with their 2% late
facts): a larger store whose increments are the same as without it. Comparing runs that differ only in K shows
whether an increment's cost follows the new facts or the store.

    python benchmarks/risk_incremental.py [--events 2000000] [--customers 1000] [--increments 10000,100000]
                                          [--history-months 0] [--repeat 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, fresh_home, must  # noqa: E402
from ledger.projector import engine  # noqa: E402

UTC = timezone.utc
METERS = (("api_calls", 40), ("api_calls", 40), ("fraud_checks", 4), ("rules_evaluated", 20))
START = datetime(2026, 1, 1, tzinfo=UTC)
BASE_DAYS = 115  # Jan 1 .. Apr 25
MONTH_STARTS = [datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4, 5)]


def month_starts(history_months: int) -> list[datetime]:
    """The first instant of each month from HISTORY_MONTHS before January 2026 through May 2026."""
    return [datetime(2026 + (m - 1) // 12, (m - 1) % 12 + 1, 1, tzinfo=UTC) for m in range(1 - history_months, 6)]


def source_ids(customers: int) -> list[tuple[str, str, str]]:
    """(source, source_customer_id, customer_id): a product id each, a gateway id for every second customer."""
    ids = [("product", f"p{i:05d}", f"c{i:05d}") for i in range(customers)]
    ids += [("gateway", f"g{i:05d}", f"c{i:05d}") for i in range(0, customers, 2)]
    return ids


class Writer:
    """NDJSON usage lines with unique event ids, pre-formatted (no JSON encoder per line)."""

    def __init__(self, customers: int, seed: int, prefix: str):
        self.rng, self.prefix, self.n = random.Random(seed), prefix, 0
        self.ids = [f'","source":"{s}","source_customer_id":"{c}","meter":"' for s, c, _ in source_ids(customers)]

    def lines(self, count: int, first: datetime, span_days: float) -> list[str]:
        rng, out = self.rng, []
        span = int(span_days * 86_400_000_000)
        for _ in range(count):
            meter, top = rng.choice(METERS)
            quantity = 5000 if rng.random() < 0.00005 else (0 if rng.random() < 0.01 else rng.randint(1, top))
            at = first + timedelta(microseconds=rng.randrange(span))
            self.n += 1
            out.append(f'{{"event_id":"{self.prefix}{self.n}{rng.choice(self.ids)}{meter}","quantity":{quantity},'
                       f'"event_time":"{at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"}}\n')
        return out


def link(source: str, scid: str, customer: str, effective_from: str) -> str:
    return json.dumps({"source": source, "source_customer_id": scid, "customer_id": customer,
                       "effective_from": effective_from}) + "\n"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


# ------------------------------------------------------------------------------------------------ the risk views
def time_risk_build(conn, head: int, scratch: str = "ledger_bench_risk") -> dict[str, float]:
    """The risk views' build steps, each timed, into a scratch schema holding the tables they read (rolled back)."""
    from ledger.projector.models import read_models
    from ledger.projector.steps import run_step
    from ledger.projector.templates import FULL, Target, sections

    target, thresholds = Target(scratch, head), engine.Thresholds()
    timings: dict[str, float] = {}
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL work_mem = '1GB'")  # as engine.build (LEDGER_BUILD_WORK_MEM's default)
        conn.execute("SET LOCAL jit = off")
        conn.execute(f"CREATE SCHEMA {scratch}")
        for name in ("period_close", "link_range"):
            for section in ("create", "fill", "index"):
                if section in sections(name):
                    engine._run(conn, target, name, section)
        # Finance's on-time usage, which adoption is derived from, as the live build left it
        conn.execute(f"CREATE TABLE {scratch}.usage_on_time AS TABLE ledger_proj.usage_on_time")
        for name in engine.RISK_TABLES:
            engine._run(conn, target, name, "create")
        options = {**FULL, **thresholds.options()}
        started = time.perf_counter()
        for m in read_models():
            if m.group == "risk":
                for s in m.rebuild:
                    at = time.perf_counter()
                    run_step(conn, target, m, s, options)
                    timings[f"{m.name}.{s.section}"] = round(time.perf_counter() - at, 3)
        at = time.perf_counter()
        for name in engine.RISK_TABLES:
            if "index" in sections(name):
                engine._run(conn, target, name, "index")
        timings["index"] = round(time.perf_counter() - at, 3)
        timings["total"] = round(time.perf_counter() - started, 2)
    return timings


def blocks(conn) -> tuple[int, int]:
    """Table and index blocks read so far (hit in shared buffers, read from the OS), over the store's own tables."""
    return conn.execute(
        "SELECT sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0) + coalesce(toast_blks_hit, 0)),"
        " sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0))"
        " FROM pg_statio_all_tables WHERE schemaname IN ('public', 'ledger_proj')").fetchone()


def timed_project(home: Path, conn) -> dict:
    """`ledger project --finance-only`, then `ledger project` (the risk views catching up): their own seconds, and
    the blocks of the store's tables the second one touched (a read of the history would show as its size)."""
    _, finance = must(home, "project", "--finance-only", "--json")
    (hit0, read0) = blocks(conn)
    _, risk = must(home, "project", "--json")
    time.sleep(0.5)  # the exited backend's statistics reach the shared counters
    (hit1, read1) = blocks(conn)
    return {"facts_applied": finance["facts_applied"], "finance_project_s": round(finance["seconds"], 3),
            "risk_views_s": round(risk["seconds"], 3), "risk_blocks_hit": int(hit1 - hit0),
            "risk_blocks_read": int(read1 - read0)}


# ------------------------------------------------------------------------------------------------ the run
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--increments", default="10000,100000", help="increment sizes in facts, comma-separated")
    parser.add_argument("--late-share", type=float, default=0.02)
    parser.add_argument("--history-months", type=int, default=0, help="closed months before January 2026")
    parser.add_argument("--repeat", type=int, default=2, help="increments of each size and kind, one after another")
    parser.add_argument("--keep", action="store_true", help="leave the store (and its server) for inspection")
    args = parser.parse_args()

    import psycopg

    from ledger.store.embedded import DATABASE, EmbeddedServer

    home = fresh_home("ledger-bench-risk-")
    out: dict = {"benchmark": "risk_incremental"}
    try:
        data = home / "data"
        data.mkdir()
        ids = source_ids(args.customers)
        months = month_starts(args.history_months)
        since = (months[0] - timedelta(days=31)).strftime("%Y-%m-01T00:00:00Z")  # links and attributes: before
        write(data / "identities.ndjson", [link(s, c, k, since) for s, c, k in ids])
        write(data / "attributes.ndjson", [
            f'{{"customer_id":"c{i:05d}","effective_from":"{since}",'
            f'"segment":"{("smb", "midmarket", "enterprise")[i % 3]}","owner":"o{i % 7}"}}\n'
            for i in range(args.customers)])
        gen = Writer(args.customers, seed=1, prefix="u")
        per_day = args.events / BASE_DAYS
        month_files = []
        closed = len(months) - 2  # every month before April
        for m in range(len(months) - 1):  # ..April 25; each month's file also carries the previous month's late facts
            first, last = months[m], min(months[m + 1], START + timedelta(days=BASE_DAYS))
            days = (last - first).days
            n = round(per_day * days)
            late = round(n * args.late_share) if m < closed else 0
            lines = gen.lines(n - late, first, days)
            month_files.append((write(data / f"usage_{m + 1}.ndjson", lines), late, first, days))
        started = time.perf_counter()
        must(home, "server", "start")
        must(home, "ingest", "identities", str(data / "identities.ndjson"))
        must(home, "ingest", "attributes", str(data / "attributes.ndjson"))
        carry: list[str] = []
        for m, (path, late, first, days) in enumerate(month_files):
            must(home, "ingest", "usage", str(path))
            if carry:
                must(home, "ingest", "usage", str(write(data / f"late_{m}.ndjson", carry)))
            if m < closed:
                must(home, "period", "close", months[m].strftime("%Y-%m"), "--actor", "bench@fin")
                carry = gen.lines(late, first, days)  # this month's facts, arriving after its close
        out["ingest_s"] = round(time.perf_counter() - started, 1)

        conn = psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True)
        seconds, report = must(home, "project", "--json")
        out["usage_facts"] = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
        out["customers"], out["source_ids"] = args.customers, len(ids)
        out["history_months"] = args.history_months
        out["first_project_s"] = round(report["seconds"], 2)

        out["risk_build_s"] = time_risk_build(conn, report["to_position"])
        # Settle the store as autovacuum would after a bulk load (vacuum and statistics of every table just
        # written, hint bits set), so that this one-off work does not land inside the first timed increment.
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        out["settle_s"] = round(time.perf_counter() - started, 1)

        sizes = [int(n) for n in args.increments.split(",")]
        increments, at = [], START + timedelta(days=BASE_DAYS)
        for with_links in (False, True):
            for size in (s for s in sizes for _ in range(args.repeat)):
                step = {"size": size, "relinks": 21 if with_links else 0}
                if with_links:
                    # ten merges at noon on a day with usage (its rows split), ten at a midnight, one new source id
                    k0 = 20 * len(increments)
                    noon = (at - timedelta(days=2)).strftime("%Y-%m-%dT12:00:00Z")
                    later = (at + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
                    links = [link("product", f"p{k % args.customers:05d}", f"c{(k + 1) % args.customers:05d}",
                                  noon if k < k0 + 10 else later) for k in range(k0, k0 + 20)]
                    links.append(link("gateway", f"g_new{k0}", f"c_new{k0}", "2026-04-01T00:00:00Z"))
                    must(home, "ingest", "identities", str(write(data / f"links_{len(increments)}.ndjson", links)))
                days = size / per_day  # the next stretch of the stream at the base rate
                new = gen.lines(round(size * 0.97), at, days)
                new += gen.lines(size // 100, MONTH_STARTS[2], 31)                # late: March is closed
                new += gen.lines(size - len(new), MONTH_STARTS[3], 25)            # delayed: April is open
                at += timedelta(days=days)
                must(home, "ingest", "usage", str(write(data / f"more_{len(increments)}.ndjson", new)))
                increments.append({**step, "days": round(days, 2), **timed_project(home, conn)})
        must(home, "period", "close", "2026-04", "--actor", "bench@fin")
        increments.append({"size": 0, "closes": "2026-04", **timed_project(home, conn)})
        out["increments"] = increments
        by_size = {size: min(s["risk_views_s"] for s in increments if s.get("relinks") == 0 and s["size"] == size)
                   for size in sizes}
        out["risk_ratio_largest_to_smallest"] = {
            "facts": round(max(sizes) / min(sizes), 1),
            "risk_views_s": round(by_size[max(sizes)] / max(by_size[min(sizes)], 1e-3), 2)}
        out["usage_daily_rows"] = conn.execute("SELECT count(*) FROM ledger_proj.usage_daily").fetchone()[0]
        out["adoption_rows"] = conn.execute("SELECT count(*) FROM ledger_proj.adoption").fetchone()[0]
        out["anomalies_flagged"] = conn.execute("SELECT count(*) FROM ledger_proj.anomalies").fetchone()[0]
        conn.close()
        _, checked = must(home, "project", "--check", "--json")
        out["incremental_equals_rebuild"] = {t: checked[t]["equal"] for t in engine.RISK_TABLES}
        print(json.dumps(out, indent=2))
    finally:
        if args.keep:
            print(f"kept: LEDGER_HOME={home}", file=sys.stderr)
        else:
            cleanup(home)


if __name__ == "__main__":
    main()
