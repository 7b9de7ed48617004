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
from pathlib import Path

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


def cleanup(home: Path) -> None:
    subprocess.run([LEDGER, "server", "stop"], env=ledger_env(home), capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
