"""Risk views benchmark: the cost of folding 100k new usage facts into usage_daily, adoption and anomalies.

One run on a fresh embedded default: ~2M usage facts (Jan 1 - Apr 25, 2026) over N customers with one or two source
ids each, ingested month by month through `ledger ingest` with January to March closed after their month's facts
and 2% of each month's facts arriving late (after its close); then `ledger project` builds every read model. Two
increments of 100k facts follow (the last five days of April, 3% of them late or delayed into earlier days): the
first usage only, the second with 21 new identity links (10 effective at noon inside a day with usage, 10 at a
midnight, one new source id). Each is timed with `ledger project`; while the projector's engine does not run the
risk views itself, their sections are run after it the way it would run them, and timed apart. Finally the
incremental risk tables are compared with a rebuild from position 0. Prints JSON.

    python benchmarks/risk_incremental.py [--events 2000000] [--customers 1000] [--increment 100000]
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

UTC = timezone.utc
RISK_VIEWS = ("usage_daily", "adoption", "anomalies")
METERS = (("api_calls", 40), ("api_calls", 40), ("fraud_checks", 4), ("rules_evaluated", 20))
START = datetime(2026, 1, 1, tzinfo=UTC)
BASE_DAYS = 115  # Jan 1 .. Apr 25
MONTH_STARTS = [datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4, 5)]


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
class RiskViews:
    """Runs the risk views' sections as the engine does (only while the engine does not run them itself)."""

    BUILD = (("usage_daily", "fill"), ("adoption", "fill"), ("adoption", "apply"), ("anomalies", "fill"),
             ("anomalies", "apply"))
    INCREMENT = (("usage_daily", "merge"), ("adoption", "merge"), ("adoption", "apply"), ("anomalies", "merge"),
                 ("anomalies", "apply"))

    def __init__(self, conn):
        self.conn, self.timings = conn, {}

    def run(self, target, name: str, section: str) -> None:
        from psycopg import sql

        from ledger.projector import templates

        text = templates.sections(name).get(section)
        if not text:
            return
        scopes = templates.FULL
        if name in RISK_VIEWS:
            closes = self.conn.execute(sql.SQL("SELECT month_start, close_position FROM {}.period_close").format(
                sql.Identifier(target.schema))).fetchall()
            scopes = {**scopes, "cutoff": templates.CutoffCase(closes), "anomaly_score": 6.0, "anomaly_min_units": 100}
        started = time.perf_counter()
        self.conn.execute(target.render(text, scopes))
        key = f"{name}.{section}"
        self.timings[key] = round(self.timings.get(key, 0) + time.perf_counter() - started, 3)

    def build(self, schema: str, head: int, with_base: bool = False) -> float:
        from ledger.projector.templates import Target

        started = time.perf_counter()
        target = Target(schema, head)
        with self.conn.transaction():
            self.conn.execute("SET LOCAL work_mem = '512MB'")
            self.conn.execute("SET LOCAL jit = off")
            if with_base:
                self.conn.execute(f"CREATE SCHEMA {schema}")
                for name in ("period_close", "link_range"):
                    for section in ("create", "fill", "index"):
                        self.run(target, name, section)
            for name in RISK_VIEWS:
                self.run(target, name, "create")
            for name, section in self.BUILD:
                self.run(target, name, section)
            for name in RISK_VIEWS:
                self.run(target, name, "index")
            self.conn.execute(f"CREATE TABLE {schema}.risk_checkpoint AS SELECT {int(head)}::bigint AS position")
        return time.perf_counter() - started

    def increment(self, schema: str) -> float:
        from ledger.projector.templates import Target

        started = time.perf_counter()
        with self.conn.transaction():
            self.conn.execute("SET LOCAL work_mem = '256MB'")
            self.conn.execute("SET LOCAL jit = off")
            head = self.conn.execute(f"SELECT position FROM {schema}.checkpoint").fetchone()[0]
            checkpoint = self.conn.execute(f"SELECT position FROM {schema}.risk_checkpoint").fetchone()[0]
            for name, section in self.INCREMENT:
                self.run(Target(schema, head, checkpoint), name, section)
            self.conn.execute(f"UPDATE {schema}.risk_checkpoint SET position = %s", (head,))
        return time.perf_counter() - started


def equal_to_rebuild(conn, live: str = "ledger_proj", scratch: str = "ledger_proj_risk_bench") -> dict[str, bool]:
    from ledger.projector.runner import table_checksum

    head = conn.execute(f"SELECT position FROM {live}.checkpoint").fetchone()[0]
    conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
    RiskViews(conn).build(scratch, head, with_base=True)
    result = {t: table_checksum(conn, live, t) == table_checksum(conn, scratch, t) for t in RISK_VIEWS}
    conn.execute(f"DROP SCHEMA {scratch} CASCADE")
    return result


# ------------------------------------------------------------------------------------------------ the run
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--increment", type=int, default=100_000)
    parser.add_argument("--late-share", type=float, default=0.02)
    args = parser.parse_args()

    import psycopg

    from ledger.projector import engine
    from ledger.store.embedded import DATABASE, EmbeddedServer

    wired = all(name in engine.TABLES for name in RISK_VIEWS)
    home = fresh_home("ledger-bench-risk-")
    out: dict = {"benchmark": "risk_incremental", "engine_runs_risk_views": wired}
    try:
        data = home / "data"
        data.mkdir()
        ids = source_ids(args.customers)
        write(data / "identities.ndjson", [link(s, c, k, "2025-12-01T00:00:00Z") for s, c, k in ids])
        write(data / "attributes.ndjson", [
            f'{{"customer_id":"c{i:05d}","effective_from":"2025-12-01T00:00:00Z",'
            f'"segment":"{("smb", "midmarket", "enterprise")[i % 3]}","owner":"o{i % 7}"}}\n'
            for i in range(args.customers)])
        gen = Writer(args.customers, seed=1, prefix="u")
        per_day = args.events / BASE_DAYS
        month_files = []
        for m in range(4):  # January..April 25; each month's file also carries the previous month's late facts
            first, last = MONTH_STARTS[m], min(MONTH_STARTS[m + 1], START + timedelta(days=BASE_DAYS))
            days = (last - first).days
            n = round(per_day * days)
            late = round(n * args.late_share) if m < 3 else 0
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
            if m < 3:
                must(home, "period", "close", f"2026-{m + 1:02d}", "--actor", "bench@fin")
                carry = gen.lines(late, first, days)  # this month's facts, arriving after its close
        out["ingest_s"] = round(time.perf_counter() - started, 1)

        conn = psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True)
        views = RiskViews(conn)
        seconds, report = must(home, "project", "--json")
        out["usage_facts"] = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
        out["customers"], out["source_ids"] = args.customers, len(ids)
        out["first_project_s"] = round(report["seconds"], 2)
        if not wired:
            out["risk_build_s"] = round(views.build("ledger_proj", report["to_position"]), 2)
            out["risk_build_sections_s"], views.timings = views.timings, {}

        increments = []
        for i, with_links in enumerate((False, True)):
            if with_links:
                # ten merges at noon on a day with usage (its rows split), ten at a midnight, one new source id
                links = [link("product", f"p{k:05d}", f"c{(k + 1) % args.customers:05d}",
                              "2026-04-20T12:00:00Z" if k < 10 else "2026-04-28T00:00:00Z") for k in range(20)]
                links.append(link("gateway", "g_new", "c_new", "2026-04-01T00:00:00Z"))
                must(home, "ingest", "identities", str(write(data / f"links_{i}.ndjson", links)))
            new = gen.lines(round(args.increment * 0.97), START + timedelta(days=BASE_DAYS + 5 * i), 5)
            new += gen.lines(args.increment // 100, MONTH_STARTS[2], 31)      # late: March is closed
            new += gen.lines(args.increment - len(new), MONTH_STARTS[3], 25)  # delayed: April is open
            must(home, "ingest", "usage", str(write(data / f"more_{i}.ndjson", new)))
            wall, report = must(home, "project", "--json")
            step = {"relinks": 21 if with_links else 0, "facts_applied": report["facts_applied"],
                    "ledger_project_s": round(report["seconds"], 3)}
            if not wired:
                step["risk_views_s"] = round(views.increment("ledger_proj"), 3)
                step["risk_sections_s"], views.timings = views.timings, {}
            increments.append(step)
        out["increments"] = increments
        out["usage_daily_rows"] = conn.execute("SELECT count(*) FROM ledger_proj.usage_daily").fetchone()[0]
        out["adoption_rows"] = conn.execute("SELECT count(*) FROM ledger_proj.adoption").fetchone()[0]
        out["anomalies_flagged"] = conn.execute("SELECT count(*) FROM ledger_proj.anomalies").fetchone()[0]
        out["incremental_equals_rebuild"] = equal_to_rebuild(conn)
        conn.close()
        print(json.dumps(out, indent=2))
    finally:
        cleanup(home)


if __name__ == "__main__":
    main()
