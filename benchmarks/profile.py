"""Per-statement profile of the projector on a kept store: where a build or an increment spends its time.

Runs one of the projector's steps in a transaction that is rolled back (the store is left as it was) and prints,
as JSON, every SQL statement it ran with its seconds, slowest first, and the total per projection section.

    python benchmarks/profile.py --home DIR build            # the full build (what --rebuild runs)
    python benchmarks/profile.py --home DIR build-finance    # the build without the Risk and Sales views
    python benchmarks/profile.py --home DIR increment        # the facts after the live checkpoint (Finance + risk)
    python benchmarks/profile.py --home DIR increment --explain 0.3 --plans plans.txt

DIR is a LEDGER_HOME kept by another benchmark (`rebuild.py --home`, `risk_incremental.py --keep`); its embedded
server is started and stopped around the run. `--explain SECS` runs every data-modifying or CREATE ... AS
statement first as EXPLAIN (ANALYZE, BUFFERS, WAL) in a savepoint rolled back, then as itself (its timing and
result are the real run's), and writes the plans of those slower than SECS to `--plans`. `--set NAME=VALUE` adds a SET LOCAL for the whole step (to try a planner setting).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import must  # noqa: E402

import psycopg  # noqa: E402

STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?\n")
EXPLAINABLE = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(INSERT|UPDATE|DELETE|MERGE|WITH|CREATE (?:TEMP )?TABLE .* AS)",
                         re.IGNORECASE | re.DOTALL)


class Recorder:
    """Times each statement the engine sends, split at statement ends, tagged with the section running it."""

    def __init__(self, explain_over: float | None, plans: Path | None):
        self.rows: list[tuple[str, float, str]] = []
        self.section = "engine"
        self.explain_over = explain_over
        self.plans = plans.open("w") if plans else None

    def execute(self, real_execute, conn, query, params=None, **kwargs):
        text = query if isinstance(query, str) else query.as_string(conn)
        parts = [text] if params is not None else [p for p in STATEMENT_END.split(text + "\n") if p and p.strip()]
        result = None
        for part in parts:
            explain = self.plans is not None and EXPLAINABLE.match(part) and "RETURNING" not in part
            plan: list = []
            if explain:  # the plan of a real run, in a savepoint rolled back; then the statement itself
                real_execute(conn, "SAVEPOINT profile_explain")
                started = time.perf_counter()
                plan = real_execute(conn, "EXPLAIN (ANALYZE, BUFFERS, WAL) " + part, params).fetchall()
                explained = time.perf_counter() - started
                real_execute(conn, "ROLLBACK TO SAVEPOINT profile_explain")
            started = time.perf_counter()
            result = real_execute(conn, part, params, **kwargs)
            seconds = time.perf_counter() - started
            self.rows.append((self.section, seconds, part.strip()))
            if explain and seconds >= self.explain_over:
                self.plans.write(f"=== {self.section}: {seconds:.3f} s (explained: {explained:.3f} s)\n"
                                 f"{part.strip()}\n---\n")
                self.plans.write("\n".join(r[0] for r in plan) + "\n\n")
                self.plans.flush()
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=("build", "build-finance", "increment"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--explain", type=float, help="EXPLAIN ANALYZE the DML statements slower than this")
    parser.add_argument("--plans", type=Path, default=Path("plans.txt"))
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE, a SET LOCAL for the whole step")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the step this many times on one server (each rolled back): the first follows the"
                             " server's start-up checkpoint (full-page images for every page it writes), the later"
                             " ones do not; the sections shown are the last run's")
    parser.add_argument("--finance-only", action="store_true", help="increment: leave the risk views out")
    args = parser.parse_args()

    from ledger.projector import engine, steps
    from ledger.projector.runner import LIVE_SCHEMA
    from ledger.store.embedded import DATABASE, EmbeddedServer

    recorder = Recorder(args.explain, args.plans if args.explain is not None else None)
    real_run, real_execute = steps.run_section, psycopg.Connection.execute
    real_run_step = steps.run_step

    def run(conn, target, name, section, scopes=None):
        recorder.section = f"{name}.{section}"
        try:
            return real_run(conn, target, name, section, *(() if scopes is None else (scopes,)))
        finally:
            recorder.section = "engine"

    def run_step(conn, target, m, step, options):  # pseudo-steps (a coarse ANALYZE) are named too
        recorder.section = f"{m.name}.{step.section}"
        try:
            return real_run_step(conn, target, m, step, options)
        finally:
            recorder.section = "engine"

    for module in _modules():
        if hasattr(module, "run_section"):
            module.run_section = run
    steps.run_step = run_step
    psycopg.Connection.execute = lambda conn, query, params=None, **kw: recorder.execute(
        real_execute, conn, query, params, **kw)
    groups = ("finance",) if args.step == "build-finance" or args.finance_only else ("finance", "risk")
    must(args.home, "server", "start")
    try:
        with psycopg.connect(EmbeddedServer(args.home).conninfo(DATABASE), autocommit=True) as conn:
            totals = []
            for _ in range(args.repeat):
                with conn.transaction(force_rollback=True):
                    for setting in args.set:
                        name, value = setting.split("=", 1)
                        conn.execute(f"SET LOCAL {name} = {value}")
                    recorder.rows.clear()
                    started = time.perf_counter()
                    facts = step(conn, args.step, engine, LIVE_SCHEMA, groups)
                    totals.append(round(time.perf_counter() - started, 3))
    finally:
        for module in _modules():
            if hasattr(module, "run_section"):
                module.run_section = real_run
        steps.run_step, psycopg.Connection.execute = real_run_step, real_execute
        must(args.home, "server", "stop")

    by_section: dict[str, float] = defaultdict(float)
    for section, seconds, _ in recorder.rows:
        by_section[section] += seconds
    slowest = sorted(recorder.rows, key=lambda r: -r[1])[: args.top]
    print(json.dumps({
        "benchmark": "profile", "step": args.step, "facts": facts, "total_s": totals[-1], "runs_s": totals,
        "sections_s": {k: round(v, 3) for k, v in sorted(by_section.items(), key=lambda kv: -kv[1])},
        "slowest_statements": [{"section": s, "s": round(t, 3), "sql": " ".join(q.split())[:240]}
                               for s, t, q in slowest],
    }, indent=2))


def _modules():
    from ledger.projector import batch, build, increment, risk, steps

    return (batch, build, increment, risk, steps)


def step(conn: psycopg.Connection, name: str, engine, live: str, groups: tuple[str, ...]) -> int:
    """Runs the step; returns the facts it applied."""
    from ledger.projector.runner import _head_position

    head = _head_position(conn)
    if name in ("build", "build-finance"):
        engine.build(conn, "profile_build", head, groups=groups)
        return engine.count_built_facts(conn, "profile_build", head)
    checkpoint = conn.execute(f"SELECT position FROM {live}.checkpoint").fetchone()[0]
    risk_checkpoint = conn.execute(f"SELECT position FROM {live}.risk_checkpoint").fetchone()[0]
    new = engine.count_new_facts(conn, checkpoint, head)
    if new.total:
        engine.apply_increment(conn, live, checkpoint, head, new)
    if "risk" in groups:
        engine.apply_risk_increment(conn, live, risk_checkpoint, head)
    return new.total


if __name__ == "__main__":
    main()
