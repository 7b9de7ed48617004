"""The zero-configuration default: an embedded PostgreSQL under LEDGER_HOME, started on demand, stopped after."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.builders import line, link, usage
from tests.conftest import LEDGER_BIN, write_lines


def env_for(home) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    env["LEDGER_HOME"] = str(home)
    return env


def server_running(home) -> bool:
    pidfile = home / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_two_commands_at_once_on_one_home_both_work_and_leave_no_server(tmp_path):
    home = tmp_path / "home"
    files = [write_lines(tmp_path / f"u{w}.ndjson", [line(usage(i, source=f"s{w}")) for i in range(3000)])
             for w in range(2)]
    procs = [subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(f), "--json"], env=env_for(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    assert sum(json.loads(r[1])["appended"] for r in results) == 6000
    assert not server_running(home)  # the last command out stopped it
    again = subprocess.run([LEDGER_BIN, "ingest", "usage", str(files[0]), "--json"], env=env_for(home),
                           capture_output=True, text=True)
    assert json.loads(again.stdout)["duplicates"] == 3000  # the data outlived the server
    assert not server_running(home)


def test_server_start_keeps_it_up_until_stop(tmp_path):
    home = tmp_path / "home"
    subprocess.run([LEDGER_BIN, "server", "start"], env=env_for(home), check=True, capture_output=True)
    try:
        subprocess.run([LEDGER_BIN, "migrate"], env=env_for(home), check=True, capture_output=True)
        assert server_running(home)
    finally:
        subprocess.run([LEDGER_BIN, "server", "stop"], env=env_for(home), check=True, capture_output=True)
    assert not server_running(home)


def test_a_slow_statements_plan_goes_to_the_server_log(tmp_path):
    import psycopg

    from ledger.store.embedded import DATABASE, EmbeddedServer

    home = tmp_path / "home"
    subprocess.run([LEDGER_BIN, "server", "start"], env=env_for(home), check=True, capture_output=True)
    try:
        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            assert conn.execute("SHOW auto_explain.log_min_duration").fetchone()[0] == "10s"
            conn.execute("SET auto_explain.log_min_duration = 0")  # every statement counts as slow here
            conn.execute("SELECT count(*) AS marked_for_the_log FROM generate_series(1, 10)")
    finally:
        subprocess.run([LEDGER_BIN, "server", "stop"], env=env_for(home), check=True, capture_output=True)
    log = (home / "pgdata" / "server.log").read_text()
    assert "marked_for_the_log" in log and "Function Scan on generate_series" in log


@pytest.mark.slow  # a server killed and recovered
def test_a_committed_rebuild_survives_a_server_crash(tmp_path):
    """At wal_level minimal a rebuild's new tables are flushed at its commit instead of written to the WAL (those
    over wal_skip_threshold; the rebuild here sets it to 0, so every one of its tables is): crash recovery, which
    replays the WAL from the last checkpoint, must leave them as committed. (A power loss, which the flush at
    commit covers, is not something a test can cause here: the killed server's writes are still in the OS's cache.)"""
    import signal
    import time

    import psycopg

    from ledger.projector import engine, runner
    from ledger.store.embedded import DATABASE, EmbeddedServer

    home = tmp_path / "home"
    links = write_lines(tmp_path / "links.ndjson", [line(link(scid=f"pr_{c}", customer=f"cus_{c}")) for c in range(20)])
    facts = write_lines(tmp_path / "usage.ndjson", [
        line(usage(i, source_customer_id=f"pr_{i % 25}", quantity=i % 7 + 1,
                   event_time=f"2026-0{1 + i % 3}-1{i % 10}T10:00:00Z")) for i in range(2000)])

    def ledger(*args: str, **env: str) -> str:
        done = subprocess.run([LEDGER_BIN, *args], env={**env_for(home), **env}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def state() -> dict[str, str]:
        """Every read model's checksum, the checkpoint and the definitions' digest, read straight from the server."""
        with psycopg.connect(EmbeddedServer(home).conninfo(DATABASE), autocommit=True) as conn:
            tables = {t: runner.table_checksum(conn, runner.LIVE_SCHEMA, t)
                      for t in (*engine.TABLES, "checkpoint", "risk_checkpoint", "definition")}
            assert conn.execute("SHOW wal_level").fetchone()[0] == "minimal"
            return tables

    ledger("server", "start")
    try:
        ledger("ingest", "identities", str(links))
        ledger("ingest", "usage", str(facts))
        ledger("project", "--rebuild", PGOPTIONS="-c wal_skip_threshold=0")
        before = state()
        pid = int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)  # no shutdown checkpoint: what survives is what was on disk
        for _ in range(100):
            if not server_running(home):
                break
            time.sleep(0.1)
        time.sleep(1)  # its backends notice the postmaster is gone and exit
        ledger("server", "start")  # crash recovery
        assert state() == before
        ledger("project", "--check")
    finally:
        subprocess.run([LEDGER_BIN, "server", "stop"], env=env_for(home), capture_output=True)
