"""The reliability suite: kill -9 at seeded random points, concurrent commands on one store, and generated
hostile records; after each, a re-run completes exactly and `verify` / `project --check` are clean."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger import projector
from ledger.audit.verify import verify_store
from ledger.commands.ingest import ingest_file
from tests.builders import invoice, line, link, usage
from tests.conftest import LEDGER_BIN, write_lines

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("LEDGER_RELIABILITY_SEED", "20261205"))
N = 24_000


def env_for(db_url: str, home: Path, **extra: str) -> dict:
    return {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(home), "LEDGER_BATCH_SIZE": "2000",
            **extra}


def usage_file(tmp_path: Path, first: int = 0, n: int = N, name: str = "usage.ndjson") -> Path:
    return write_lines(tmp_path / name, [line(usage(i, quantity=i % 7 + 1, source_customer_id=f"pr_{i % 13}"))
                                         for i in range(first, first + n)])


def expected_units(first: int, n: int) -> int:
    return sum(i % 7 + 1 for i in range(first, first + n))


def exact(conn, n: int, units: int) -> None:
    assert conn.execute("SELECT count(*), count(DISTINCT (source, event_id)), sum(quantity) FROM usage_facts"
                        ).fetchone() == (n, n, units)


def clean(ledger) -> None:
    for args in (["verify"], ["project", "--check"]):
        result = ledger(*args)
        assert result.returncode == 0, f"{args}: {result.stdout}"


def kill_after(args: list[str], env: dict, delay: float) -> subprocess.CompletedProcess | None:
    """Run the command and kill -9 it after `delay` seconds (None: it finished first)."""
    proc = subprocess.Popen([LEDGER_BIN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=delay)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None


@pytest.mark.parametrize("point", range(3))
def test_kill_9_of_ingest_project_and_rebuild_then_rerun_is_exact(db_url, conn, tmp_path, ledger, point):
    rng = random.Random(SEED * 10 + point)
    env = env_for(db_url, tmp_path / "home")
    path = usage_file(tmp_path)
    threshold = rng.randrange(2_000, N - 4_000)  # the kill lands once this many facts stand
    proc = subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0] < threshold:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
    assert partial < N  # killed partway
    rerun = json.loads(ledger("ingest", "usage", str(path), "--json", check_exit=0).stdout)
    assert (rerun["appended"], rerun["duplicates"]) == (N - partial, partial)
    exact(conn, N, expected_units(0, N))
    for args in (["project"], ["project", "--rebuild"]):
        kill_after(args, env, rng.uniform(0.1, 2.0))
        ledger(*args, check_exit=0)
    clean(ledger)


def test_kill_9_of_the_postmaster_mid_ingest_then_rerun_is_exact(tmp_path):
    """The embedded server dies under an ingest: the ingest says what stands, in one line, and a re-run finishes."""
    rng = random.Random(SEED)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    env.update(LEDGER_HOME=str(home), LEDGER_BATCH_SIZE="2000")
    path = usage_file(tmp_path, n=60_000)
    run = lambda *args, **kw: subprocess.run([LEDGER_BIN, *args], env=env, capture_output=True, text=True,  # noqa
                                             timeout=300, **kw)
    assert run("server", "start").returncode == 0  # pinned: the kill, not the last command's exit, stops it
    assert run("migrate").returncode == 0
    postmaster = int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
    proc = subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    from ledger.store.embedded import EmbeddedServer

    with psycopg.connect(EmbeddedServer(home).conninfo("ledger"), autocommit=True) as watch:
        while proc.poll() is None and watch.execute("SELECT count(*) FROM usage_facts").fetchone()[0] < 2000:
            time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    os.kill(postmaster, signal.SIGKILL)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert "Traceback" not in err and "pg_ctl" not in err
    assert proc.returncode == 4, err  # killed partway: batches stood before it
    assert "a re-run of the same file appends exactly the rest" in err and len(err.strip().splitlines()) <= 2
    for _ in range(20):  # the old server's backends notice their postmaster is gone, then it restarts
        rerun = run("ingest", "usage", str(path), "--json")
        if rerun.returncode == 0:
            break
        time.sleep(1)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["appended"] + report["duplicates"] == 60_000
    verified = run("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["facts"] == 60_000
    run("server", "stop")


def test_concurrent_ingests_credits_and_projector_runs_on_one_store(db_url, conn, tmp_path, ledger):
    env = env_for(db_url, tmp_path / "home")
    write_lines(tmp_path / "links.ndjson", [json.dumps(link(source="billing", scid="bc_1"))])
    ledger("ingest", "identities", str(tmp_path / "links.ndjson"), check_exit=0)
    write_lines(tmp_path / "inv.ndjson", [json.dumps(invoice("in_1", scid="bc_1", total_cents=1000))])
    ledger("ingest", "invoices", str(tmp_path / "inv.ndjson"), check_exit=0)
    files = [usage_file(tmp_path, first, 12_000, f"u{first}.ndjson") for first in (0, 6_000, 12_000)]
    commands = [["ingest", "usage", str(f)] for f in files]
    commands += [["credit", "issue", "--customer", "cus_1", "--amount-cents", "90", "--reason", "goodwill",
                  "--actor", "fin@example.com", "--idempotency-key", f"cr_{i}", "--invoice", "in_1"]
                 for i in range(14)]
    commands += [["project"], ["project", "--finance-only"]]
    random.Random(SEED).shuffle(commands)

    def run(args):
        return subprocess.run([LEDGER_BIN, *args], env=env, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, commands))
    for args, result in zip(commands, results):
        if args[0] == "credit":
            # 11 credits of 90 fit the invoice's 1000; the rest are refused by the rule, never by a neighbour
            assert result.returncode in (0, 2), result.stderr
            assert result.returncode == 0 or "credit_exceeds_invoice" in result.stderr, result.stderr
        else:
            assert result.returncode == 0, (args, result.stderr)
    credits = conn.execute("SELECT count(*), coalesce(sum((ledger_state(state) ->> 'amount_cents')::int), 0)"
                           " FROM ledger_events WHERE topic = 'ledger.CreditIssued'").fetchone()
    assert credits == (11, 990)
    assert "LEDGER_HOME" not in "".join(r.stderr for r in results)
    exact(conn, 24_000, expected_units(0, 24_000))
    clean(ledger)


# -- generated hostile records --------------------------------------------------------------------------------
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
HOSTILE_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), HOSTILE_TEXT)


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


FIELDS = {
    "usage": ["event_id", "source", "source_customer_id", "meter", "quantity", "event_time", "properties"],
    "identities": ["source", "source_customer_id", "customer_id", "effective_from"],
    "attributes": ["customer_id", "effective_from", "name", "segment", "plan"],
    "prices": ["plan", "effective_month", "base_fee_cents", "meters"],
    "invoices": ["invoice_id", "source", "source_customer_id", "period", "issued_at", "currency", "total_cents",
                 "lines"],
    "credits": ["credit_id", "customer_id", "amount_cents", "reason", "actor", "issued_at"],
}
FORMATS = [("usage", "ndjson"), ("usage", "csv"), ("usage", "cloudevents"), ("identities", "ndjson"),
           ("identities", "csv"), ("attributes", "ndjson"), ("attributes", "csv"), ("prices", "ndjson"),
           ("invoices", "ndjson"), ("credits", "ndjson")]


@st.composite
def hostile_line(draw, kind: str, fmt: str) -> bytes:
    """A record that is mostly plausible, with one or more fields replaced by something hostile."""
    fields = FIELDS[kind]
    if fmt == "csv":
        cells = [draw(st.one_of(HOSTILE_TEXT, st.just("2026-01-15T10:00:00Z"), st.just("5"), st.just(str(2**64))))
                 for _ in range(HEADERS[kind].count(b",") + 1)]
        text = ",".join('"' + c.replace('"', '""') + '"' for c in cells)
        return text.encode("utf-8", "surrogatepass")
    record = {name: draw(SCALARS) for name in fields}
    if fmt == "cloudevents":
        record = {"specversion": "1.0", "id": draw(HOSTILE_TEXT), "source": "p", "type": "api_calls",
                  "subject": draw(HOSTILE_TEXT), "time": draw(st.sampled_from(
                      ["2026-01-15T10:00:00Z", "9999-12-31T23:30:00-01:00", "2026-01-15T10:00:00+24:00"])),
                  "data": {"quantity": draw(SCALARS)}}
    raw = json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    trick = draw(st.sampled_from(["none", "nul", "raw_nul", "control", "invalid_utf8", "surrogate", "duplicate",
                                  "deep", "big"]))
    if trick == "nul":
        raw = raw.replace(b'"', b'"\\u0000', 2)
    elif trick == "raw_nul":
        raw = raw[:len(raw) // 2] + b"\x00" + raw[len(raw) // 2:]
    elif trick == "control":
        raw = raw.replace(b'": "', b'": "\x01\x1b', 1)
    elif trick == "invalid_utf8":
        raw = raw[:5] + b"\xff\xfe" + raw[5:]
    elif trick == "surrogate":
        raw = raw.replace(b'": "', b'": "\\udc80', 1)
    elif trick == "duplicate":
        raw = b'{"' + fields[0].encode() + b'": "dup", ' + raw[1:]
    elif trick == "deep":
        raw = raw[:-1] + b', "properties": ' + deep(draw(st.integers(60, 1200))) + b"}"
    elif trick == "big":
        raw = raw[:-1] + b', "quantity": ' + str(2 ** draw(st.integers(53, 400))).encode() + b"}"
    return raw


HEADERS = {"usage": b"event_id,source,source_customer_id,meter,quantity,event_time",
           "identities": b"source,source_customer_id,customer_id,effective_from",
           "attributes": b"customer_id,effective_from,name,segment"}


@pytest.mark.parametrize("kind, fmt", FORMATS)
def test_generated_hostile_records_never_break_the_store(db, conn, tmp_path, kind, fmt):
    counter = iter(range(10**6))

    @settings(max_examples=6, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(st.lists(hostile_line(kind, fmt), min_size=1, max_size=25), st.booleans())
    def batch(lines, long_line):
        if long_line and kind == "usage" and fmt == "ndjson":
            lines = [*lines, b'{"event_id": "big", "properties": {"p": "' + b"x" * (5 << 20) + b'"}}']
        if fmt == "csv":
            lines = [HEADERS[kind], *lines]
        path = tmp_path / f"batch{next(counter)}.{'csv' if fmt == 'csv' else 'ndjson'}"
        path.write_bytes(b"".join(ln.replace(b"\n", b" ") + b"\n" for ln in lines))
        report = ingest_file(db, kind, str(path), fmt, now=NOW)
        assert report.read == report.appended + report.duplicates + report.quarantined, report
        projector.project(conn)
        for name in projector.EXPORTS:
            projector.export(conn, name, "csv", io.StringIO())
        verified = verify_store(conn)
        assert verified.ok, verified.as_dict()

    batch()
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] > 0  # the hostile records did arrive


def test_an_error_partway_through_a_file_parsed_by_workers_ends_within_seconds(db_url, conn, tmp_path, pg_admin):
    """Files of 8 MB and more are parsed by worker processes; a lost connection must not leave their queues
    joined for ever at exit."""
    path = usage_file(tmp_path, n=120_000)
    assert path.stat().st_size >= 8 << 20
    env = env_for(db_url, tmp_path / "home", LEDGER_INGEST_WORKERS="1")
    proc = subprocess.Popen([LEDGER_BIN, "ingest", "usage", str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0] < 4000:
        time.sleep(0.01)
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                      " AND application_name = 'ledger'", (dbname,))
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 4, err
    appended = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
    assert f"appended {appended} facts" in err and "connection to the database was lost" in err
