"""Safe under failure: kill -9 mid-ingest then re-run, concurrent ingests of one file, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psycopg
import pytest

from tests.builders import line, usage
from tests.conftest import LEDGER_BIN, write_lines

N = 60_000


def big_file(tmp_path, n=N, name="big.ndjson"):
    return write_lines(tmp_path / name, [line(usage(i, source_customer_id=f"pr_{i % 97}")) for i in range(n)])


def facts(conn) -> tuple[int, int]:
    return conn.execute("SELECT count(*), count(DISTINCT event_id) FROM usage_facts").fetchone()


def assert_whole_batches(conn, partial: int) -> None:
    """What stands is the file's first lines, each committed with the batch event that records it."""
    recorded = conn.execute("SELECT coalesce(sum((ledger_state(state) ->> 'count')::int), 0) FROM ledger_events"
                            " WHERE topic = 'ledger.UsageBatchRecorded'").fetchone()[0]
    assert recorded == partial
    assert conn.execute("SELECT max(line) FROM usage_facts").fetchone()[0] == partial


@pytest.mark.slow  # an ingest killed mid-run
def test_a_killed_ingest_rerun_gives_each_fact_exactly_once(db_url, conn, tmp_path, ledger):
    path = big_file(tmp_path)
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_BATCH_SIZE": "2000"}
    proc = subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and facts(conn)[0] < 6000:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial, distinct = facts(conn)
    assert 0 < partial < N and partial == distinct
    assert_whole_batches(conn, partial)
    rerun = ledger("ingest", "usage", str(path), "--json", check_exit=0)
    assert f'"appended": {N - partial}' in rerun.stdout and f'"duplicates": {partial}' in rerun.stdout
    assert facts(conn) == (N, N)


@pytest.mark.slow  # a connection killed mid-ingest
def test_a_lost_connection_mid_ingest_leaves_whole_batches(db_url, conn, tmp_path, ledger, pg_admin):
    path = big_file(tmp_path, 40_000)
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_BATCH_SIZE": "2000"}
    proc = subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while facts(conn)[0] < 4000 and proc.poll() is None:
        time.sleep(0.01)
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = %s AND pid <> pg_backend_pid() AND application_name = 'ledger'", (dbname,))
    out, err = proc.communicate(timeout=120)
    partial = facts(conn)[0]
    assert proc.returncode == 4, err  # stopped partway: not 2 ("nothing appended"), not 1 (a difference)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert f"appended {partial} facts" in err and "a re-run of the same file appends exactly the rest" in err
    assert_whole_batches(conn, partial)
    ledger("ingest", "usage", str(path), check_exit=0)
    assert facts(conn) == (40_000, 40_000)


def test_two_concurrent_ingests_of_one_file_append_each_fact_once(db_url, conn, tmp_path):
    path = big_file(tmp_path, 30_000)
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_BATCH_SIZE": "1000"}
    procs = [subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    import json
    reports = [json.loads(o) for o in outputs]
    assert sum(r["appended"] for r in reports) == 30_000
    assert sum(r["duplicates"] for r in reports) == 30_000
    assert facts(conn) == (30_000, 30_000)


def test_overlapping_files_at_once_append_each_fact_once(db_url, conn, tmp_path):
    a = write_lines(tmp_path / "a.ndjson", [line(usage(i)) for i in range(0, 20_000)])
    b = write_lines(tmp_path / "b.ndjson", [line(usage(i)) for i in range(10_000, 30_000)])
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_BATCH_SIZE": "1000"}
    procs = [subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(p)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for p in (a, b)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert facts(conn) == (30_000, 30_000)


def test_unreachable_database_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "LEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}
    result = subprocess.run([LEDGER_BIN, "quarantine", "list"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot reach the database at 127.0.0.1:1/nowhere")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unwritable_ledger_home_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    env["LEDGER_HOME"] = str(blocker / "home")
    result = subprocess.run([LEDGER_BIN, "migrate"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "LEDGER_HOME" in result.stderr and "not writable" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_file_is_one_line_exit_2(ledger, tmp_path):
    result = ledger("ingest", "usage", str(tmp_path / "nope.ndjson"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.ndjson'}: no such file"
