"""Shared benchmark plumbing: a fresh embedded store, timing a `ledger` command, peak memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

LEDGER = str(Path(sys.executable).with_name("ledger"))


def fresh_home(prefix: str) -> Path:
    """A new LEDGER_HOME: the embedded default, as a user gets it."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def ledger_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    env["LEDGER_HOME"] = str(home)
    env["LEDGER_LOG_LEVEL"] = "WARNING"
    return env


def run_ledger(home: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([LEDGER, *args], env=ledger_env(home), capture_output=True, text=True)
    return time.perf_counter() - started, result


def must(home: Path, *args: str) -> tuple[float, dict | None]:
    """Run a `ledger` command that must succeed (exit 0, or 3 for a partly quarantined ingest); its JSON if any."""
    seconds, result = run_ledger(home, *args)
    if result.returncode not in (0, 3):
        raise SystemExit(f"ledger {' '.join(args)} failed: {result.stderr[-2000:]}")
    try:
        return seconds, json.loads(result.stdout)
    except ValueError:
        return seconds, None


def peak_child_rss_mb() -> float:
    """The largest resident set of any child process waited for so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def cpu_seconds(home: Path) -> float:
    """CPU seconds used so far by the home's PostgreSQL (every process of it: the postmaster, its live children,
    and through the postmaster's reaped-children account each backend and parallel worker that has exited) and by
    this process's waited-for children (the `ledger` commands). The difference across a step is its work summed
    over every core, which bounds the wall time the step could take on more cores (a slower machine state slows
    the work too: it moved by up to a quarter between runs, as wall time did). Linux only (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:  # the fields after the command name, from the state (field 3) on
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()

    from ledger.store.embedded import EmbeddedServer

    postmaster = EmbeddedServer(home).postmaster_pid()
    if postmaster is None:
        raise SystemExit(f"no embedded PostgreSQL running in {home}")
    ticks = sum(int(field) for field in stat(postmaster)[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            ticks += sum(int(field) for field in stat(int(child))[11:13])  # utime, stime
        except FileNotFoundError:  # exited meanwhile: counted by the postmaster
            continue
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / tick + own.ru_utime + own.ru_stime


@contextmanager
def cpu_used(home: Path) -> Iterator[dict]:
    """The CPU seconds (`cpu_seconds`) the block used, under "s" of the dict it yields once the block ends."""
    used: dict = {}
    before = cpu_seconds(home)
    yield used
    time.sleep(0.3)  # the block's parallel workers exit as it ends: let the postmaster reap them into its account
    used["s"] = cpu_seconds(home) - before


def cleanup(home: Path) -> None:
    subprocess.run([LEDGER, "server", "stop"], env=ledger_env(home), capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Store:
    """A benchmark's LEDGER_HOME holding its prepared store: `run` counts the runs on it (1 for a new store);
    `prepared` is what the preparation returned, this run or the first; `fresh` says whether this run made it."""

    home: Path
    run: int
    prepared: Any
    fresh: bool


@contextmanager
def prepared_store(kept: Path | None, prefix: str, prepare: Callable[[Path], Any]) -> Iterator[Store]:
    """The store a benchmark runs on: with KEPT (`--home DIR`), the one prepared there before if any (its server
    started; left in place, server stopped, at the end), else one made there by PREPARE; without, a fresh home
    made by PREPARE and removed at the end. The file `prepared` in the home counts the runs (a bare number in a
    store made before it also kept what PREPARE returned)."""
    home = kept or fresh_home(prefix)
    marker = home / "prepared"
    try:
        if marker.exists():
            must(home, "server", "start")
            state = json.loads(marker.read_text() or "0")
            state = state if isinstance(state, dict) else {"runs": state}
            store = Store(home, state.get("runs", 0) + 1, state.get("prepared"), fresh=False)
        else:
            home.mkdir(parents=True, exist_ok=True)
            store = Store(home, 1, prepare(home), fresh=True)
        marker.write_text(json.dumps({"runs": store.run, "prepared": store.prepared}))
        yield store
    finally:
        if kept:
            must(home, "server", "stop")
        else:
            cleanup(home)


def load_reference(home: Path, reference: dict[str, Path], usage: Path, closes: list[str]) -> dict | None:
    """Starts the home's server and appends a generated scenario through `ledger ingest`, in the order a ledger
    meets it: prices, attributes and identity links; the usage file; the period closes; the invoices. Returns
    the usage ingest's JSON report."""
    must(home, "server", "start")
    for kind in ("prices", "attributes", "identities"):
        must(home, "ingest", kind, str(reference[kind]), "--json")
    _, report = must(home, "ingest", "usage", str(usage), "--json")
    for month in closes:
        must(home, "period", "close", month, "--actor", "bench@fin")
    must(home, "ingest", "invoices", str(reference["invoices"]), "--json")
    return report
