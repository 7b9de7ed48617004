"""Consumer offsets in PostgreSQL: held and checked per batch, forward only; provenance past 2^31; lag."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from tests.api.conftest import start_service, stop_service
from tests.stream.kafka import produce

from ledger.stream import offsets
from ledger.stream.consumer import SEGMENT, ConsumeOptions, StreamConsumer, provenance, segments


def test_provenance_names_partition_and_offset_and_splits_at_2_to_the_31():
    assert provenance("usage", 3, 0) == ("kafka:usage/3", 0)
    assert provenance("usage", 3, SEGMENT - 1) == ("kafka:usage/3", SEGMENT - 1)
    assert provenance("usage", 3, SEGMENT + 5) == (f"kafka:usage/3+{SEGMENT}", 5)
    split = list(segments("usage", 0, [(SEGMENT - 2, b"a"), (SEGMENT - 1, b"b"), (SEGMENT, b"c")]))
    assert split == [("kafka:usage/0", [(SEGMENT - 2, b"a"), (SEGMENT - 1, b"b")]),
                     (f"kafka:usage/0+{SEGMENT}", [(0, b"c")])]


def test_a_batch_is_refused_when_another_member_moved_the_offset(conn):
    assert offsets.claim(conn, "g", "t", [0, 1]) == {0: None, 1: None}
    with conn.transaction(), conn.cursor() as cur:  # the partition's new owner appends a batch
        offsets.hold(cur, "g", "t", {0: None})
        offsets.advance(cur, "g", "t", "b:9092", {0: 10}, {0: 10})
    with pytest.raises(offsets.OffsetsMovedError, match="t/0 is at offset 10, not None"):
        with conn.transaction(), conn.cursor() as cur:  # the old owner, unaware
            offsets.hold(cur, "g", "t", {0: None, 1: None})
    assert offsets.claim(conn, "g", "t", [0]) == {0: 10}


def test_offsets_only_move_forward_and_are_never_deleted(conn):
    offsets.claim(conn, "g", "t", [0])
    conn.execute("UPDATE consumer_offsets SET next_offset = 5")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="offsets only move forward"):
        conn.execute("UPDATE consumer_offsets SET next_offset = 4")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM consumer_offsets")


def test_a_stale_consumer_appends_nothing_and_resumes_from_the_store(db, conn, broker, topic):
    record = {"event_id": "e1", "source": "product", "source_customer_id": "c", "meter": "api_calls",
              "quantity": 1, "event_time": "2026-01-15T10:00:00Z"}
    produce(broker, topic, [(0, json.dumps({**record, "event_id": f"e{i}"}).encode()) for i in range(5)])
    options = ConsumeOptions(broker, topic, partitions=(0,), idle_exit_seconds=2.5)
    stale = StreamConsumer(db, options)
    StreamConsumer(db, options).run()  # another member consumed partition 0 meanwhile
    stale.conn = conn
    stale.positions = {0: None}  # what the stale one still believes
    stale.pending, stale.pending_count = {0: [(0, json.dumps(record).encode())]}, 1

    class Seeks:
        seeks = []

        def seek(self, tp):
            self.seeks.append((tp.partition, tp.offset))

    kafka = Seeks()
    stale._append(kafka)
    assert stale.report.refused_batches == 1 and stale.report.appended == 0
    assert kafka.seeks == [(0, 5)] and stale.positions == {0: 5}
    assert conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0] == 5


def test_status_reports_offsets_and_lag(db, conn, ledger, broker, topic):
    produce(broker, topic, [(1, b"{}")])
    StreamConsumer(db, ConsumeOptions(broker, topic, partitions=(0, 1), idle_exit_seconds=2.5)).run()
    result = ledger("consume", "--status", "--json", check_exit=0)
    status = json.loads(result.stdout)
    rows = {r["partition"]: r for r in status["partitions"]}
    assert rows[1]["next_offset"] == 1 and rows[1]["messages_consumed"] == 1 and rows[1]["lag"] == 0
    assert rows[0]["next_offset"] is None and rows[0]["lag"] == 0
    produce(broker, topic, [(0, b"{}")])  # one message not consumed yet
    status = json.loads(ledger("consume", "--status", "--json", "--group", "ledger-usage", check_exit=0).stdout)
    assert {r["partition"]: r["lag"] for r in status["partitions"]} == {0: 1, 1: 0}
    assert status["total_lag"] == 1


def test_the_service_metrics_report_each_partitions_consumer_lag(db_url, db, conn, broker, topic, tmp_path):
    produce(broker, topic, [(2, b"{}"), (2, b"{}")])
    StreamConsumer(db, ConsumeOptions(broker, topic, partitions=(2, 3), idle_exit_seconds=2.5)).run()
    produce(broker, topic, [(3, b"{}")])  # consumed by nobody yet
    service = start_service(db_url, tmp_path / "serve")
    try:
        metrics = httpx.get(service.url + "/metrics", timeout=30).text
    finally:
        stop_service(service)
    labels = f'group="ledger-usage",topic="{topic}"'
    assert f'ledger_consumer_next_offset{{{labels},partition="2"}} 2' in metrics
    assert f'ledger_consumer_messages_total{{{labels},partition="2"}} 2' in metrics
    assert f'ledger_consumer_lag_messages{{{labels},partition="2"}} 0' in metrics
    assert f'ledger_consumer_lag_messages{{{labels},partition="3"}} 1' in metrics
    assert f'ledger_consumer_broker_up{{{labels},partition="3"}} 1' in metrics
