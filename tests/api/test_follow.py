"""`ledger project --follow`: applies facts as they commit, says its lag, runs beside other projector runs, and
stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.builders import link, usage
from tests.conftest import LEDGER_BIN, write_lines


@pytest.mark.slow  # several processes; waits for the Risk views' next run
def test_follow_applies_new_facts_and_stops_on_sigterm(ledger, db_url, tmp_path):
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "home"),
           "LEDGER_LOG_LEVEL": "INFO"}
    follower = subprocess.Popen([LEDGER_BIN, "project", "--follow", "--interval", "30", "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=(tmp_path / "follow.err").open("w"), text=True)
    try:
        ledger("ingest", "identities", str(write_lines(tmp_path / "l.ndjson", [json.dumps(link())])), check_exit=0)
        # another projector run beside the follower: both take the projector's lock, neither applies a fact twice
        ledger("project", check_exit=0)
        lines = [json.dumps(usage(n, quantity=2)) for n in range(1, 201)]
        report = json.loads(ledger("ingest", "usage", str(write_lines(tmp_path / "u.ndjson", lines)), "--json",
                                   check_exit=0).stdout)
        seen, deadline = [], time.monotonic() + 60
        while not seen or seen[-1]["risk_lag_facts"] or seen[-1]["to_position"] < report["last_position"]:
            assert time.monotonic() < deadline, seen  # woken by the commit, not by the 30 s interval
            seen.append(json.loads(follower.stdout.readline()))
        assert all(run["finance_lag_seconds"] >= 0 for run in seen)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=30)
    err = (tmp_path / "follow.err").read_text()
    assert follower.returncode == 0, err
    assert '"event": "projections_follow_stopped"' in err
    check = json.loads(ledger("project", "--check", "--json", check_exit=0).stdout)
    assert all(t["equal"] for t in check.values())
    rows = json.loads(ledger("export", "customer-month-meter", "--format", "json", check_exit=0).stdout)
    assert [r["on_time_units"] for r in rows] == [400]
