"""`ledger consume`: Kafka messages into facts exactly once, against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import LEDGER_BIN
from tests.stream.kafka import create_topic, produce
from tests.stream.messages import traffic

from ledger.stream.consumer import ConsumeOptions, StreamConsumer


def stored(conn, topic: str) -> tuple[dict, list[tuple[int, int]], dict[int, int]]:
    """The usage facts by key, the quarantined messages as (partition, offset), and the group's offsets."""
    facts = {(s, e): (c, q, t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) for s, e, c, q, t in conn.execute(
        "SELECT source, event_id, source_customer_id, quantity, event_time AT TIME ZONE 'UTC' FROM usage_facts")}
    quarantined = [(int(f.rsplit("/", 1)[1]), n) for f, n in conn.execute(
        "SELECT source_file, line_number FROM quarantine WHERE source_file LIKE %s", (f"kafka:{topic}/%",))]
    offsets = dict(conn.execute("SELECT partition, next_offset FROM consumer_offsets WHERE topic = %s", (topic,)))
    return facts, quarantined, offsets


def assert_exactly_once(conn, topic: str, sent) -> None:
    facts, quarantined, offsets = stored(conn, topic)
    assert len(facts) == len(sent.facts) and facts == sent.facts
    assert len(quarantined) == len(sent.malformed) and set(quarantined) == sent.malformed
    per_partition: dict[int, int] = {}
    for partition, _ in sent.messages:
        per_partition[partition] = per_partition.get(partition, 0) + 1
    assert offsets == per_partition


def consume(db, broker: str, topic: str, **overrides) -> object:
    options = ConsumeOptions(broker, topic, **{"partitions": (0, 1, 2, 3), "idle_exit_seconds": 2.5, **overrides})
    return StreamConsumer(db, options).run()


@pytest.mark.slow  # 100k messages through a real broker
def test_100k_messages_with_resends_and_malformed_become_exactly_the_unique_valid_facts(db, conn, ledger, broker,
                                                                                       topic):
    sent = traffic(100_000)
    assert 4_000 < sent.resent < 6_000 and 800 < len(sent.malformed) < 1_200
    produce(broker, topic, sent.messages)
    report = consume(db, broker, topic)
    assert report.messages == 100_000
    assert report.appended == len(sent.facts) and report.quarantined == len(sent.malformed)
    assert report.duplicates == sent.resent
    assert_exactly_once(conn, topic, sent)
    # a re-run (a re-delivery of everything) finds nothing new: it starts after the stored offsets
    again = consume(db, broker, topic)
    assert again.messages == 0
    ledger("project", "--check", check_exit=0)
    assert_exactly_once(conn, topic, sent)


def test_a_quarantined_message_keeps_topic_partition_and_offset(db, conn, broker, topic):
    produce(broker, topic, [(2, b'{"event_id": "a"}'), (2, b"{broken"), (1, None)])
    consume(db, broker, topic)
    rows = conn.execute("SELECT source_file, line_number, field, reason, raw_text FROM quarantine ORDER BY 1, 2").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(f"kafka:{topic}/1", 0), (f"kafka:{topic}/2", 0), (f"kafka:{topic}/2", 1)]
    assert rows[0][3] == "empty record: no value"
    assert rows[1][2] == "source" and "missing required field" in rows[1][3]
    assert "malformed JSON" in rows[2][3] and rows[2][4] == "{broken"


def test_a_fact_names_its_partition_and_offset(db, conn, broker, topic):
    sent = traffic(40, resend_share=0, malformed_share=0, seed=3)
    produce(broker, topic, sent.messages)
    consume(db, broker, topic)
    recorded = conn.execute("SELECT convert_from(state, 'UTF8')::jsonb ->> 'recorded_from' FROM ledger_events"
                            " WHERE topic = 'ledger.UsageBatchRecorded' ORDER BY 1").fetchall()
    assert {r[0] for r in recorded} <= {f"kafka:{topic}/{p}" for p in range(4)}
    offsets: dict[int, int] = {}
    expected = {}
    for partition, value in sent.messages:
        expected[json.loads(value)["event_id"]] = offsets.get(partition, 0)
        offsets[partition] = offsets.get(partition, 0) + 1
    assert dict(conn.execute("SELECT event_id, line FROM usage_facts").fetchall()) == expected


def test_other_fact_kinds_and_cloudevents(db, conn, broker):
    create_topic(broker, "links", 1)
    link = {"source": "product", "source_customer_id": "pr_1", "customer_id": "cus_1",
            "effective_from": "2025-12-01T00:00:00Z"}
    produce(broker, "links", [(0, json.dumps(link).encode()), (0, json.dumps(link).encode()), (0, b"[]")])
    report = consume(db, broker, "links", kind="identities", partitions=(0,))
    assert (report.appended, report.duplicates, report.quarantined) == (1, 1, 1)
    create_topic(broker, "ce", 1)
    event = {"specversion": "1.0", "id": "ce-1", "source": "product", "type": "api_calls", "subject": "pr_1",
             "time": "2026-01-15T10:00:00Z", "data": {"quantity": 3}}
    produce(broker, "ce", [(0, json.dumps(event).encode())])
    report = consume(db, broker, "ce", format="cloudevents", partitions=(0,))
    assert report.appended == 1
    assert conn.execute("SELECT quantity FROM usage_facts").fetchall() == [(3,)]


def _start(ledger_env: dict, broker: str, topic: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([LEDGER_BIN, "consume", "usage", "--bootstrap", broker, "--topic", topic, "--json",
                             *args], env=ledger_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def ledger_env(db_url, tmp_path) -> dict:
    return {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "home"),
            "LEDGER_LOG_LEVEL": "WARNING"}


@pytest.mark.slow
def test_kill_9_at_20_random_points_then_restart(conn, ledger, ledger_env, broker, topic):
    sent = traffic(60_000, seed=5)
    produce(broker, topic, sent.messages)
    rng = random.Random(20)
    args = ("--partition", "0", "--partition", "1", "--partition", "2", "--partition", "3", "--batch-size", "200",
            "--linger", "0.05")
    progress = [0]
    for _ in range(20):
        process = _start(ledger_env, broker, topic, *args)
        # it is appending (or done): kill it soon
        _wait_for(conn, lambda consumed: consumed > progress[-1] or consumed == len(sent.messages), poll=0.01)
        time.sleep(rng.uniform(0, 0.05))  # soon enough that 20 runs do not consume everything
        process.send_signal(signal.SIGKILL)
        process.wait()
        progress.append(conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()[0])
    final = _start(ledger_env, broker, topic, *args, "--idle-exit", "2.5")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert_exactly_once(conn, topic, sent)
    # most kills landed while the consumer was appending: each of those runs moved the offsets but did not finish
    killed_mid_run = sum(1 for a, b in zip(progress, progress[1:]) if a < b < len(sent.messages))
    assert killed_mid_run >= 10, progress
    ledger("project", "--check", check_exit=0)


@pytest.mark.slow
def test_two_consumers_in_one_group_with_rebalances_in_the_middle(conn, ledger, ledger_env, broker, topic):
    sent = traffic(40_000, seed=9)
    group = ("--group", "billing", "--batch-size", "500", "--linger", "0.05", "-X", "session.timeout.ms=6000",
             "-X", "heartbeat.interval.ms=500")
    half = len(sent.messages) // 2
    producer = threading.Thread(target=lambda: _trickle(broker, topic, sent.messages[half:]))
    produce(broker, topic, sent.messages[:half])
    first = _start(ledger_env, broker, topic, *group)
    _wait_for(conn, lambda consumed: consumed > 2_000)
    producer.start()
    second = _start(ledger_env, broker, topic, *group, "--idle-exit", "4")  # joins: the group rebalances
    _wait_for(conn, lambda consumed: consumed > half + 2_000)
    first.send_signal(signal.SIGTERM)  # leaves gracefully: the group rebalances again, the second takes over
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    producer.join()
    out2, err2 = second.communicate(timeout=300)
    assert second.returncode == 0, err2
    reports = [json.loads(out), json.loads(out2)]
    assert all(r["messages"] > 0 for r in reports)  # both consumed a share
    assert sum(r["messages"] for r in reports) == len(sent.messages)
    assert_exactly_once(conn, topic, sent)
    ledger("project", "--check", check_exit=0)


def _trickle(broker: str, topic: str, messages) -> None:
    for start in range(0, len(messages), 2_000):
        produce(broker, topic, messages[start:start + 2_000])
        time.sleep(0.3)


def _wait_for(conn, condition, timeout: float = 120, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()[0]):
            return
        time.sleep(poll)
    raise AssertionError("the consumers made no progress")
