"""Where each consumer group stands, and how far behind the broker it is (lag = high watermark - next offset)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from ledger.stream.offsets import PartitionOffset, stored_offsets


def consumer_status(conn: psycopg.Connection, *, group: str | None = None, topic: str | None = None,
                    bootstrap: str | None = None, kafka_config: Mapping[str, str] | None = None,
                    timeout: float = 5.0) -> list[dict[str, Any]]:
    """One row per group and partition: the stored next offset, messages consumed, and the lag when the broker
    (BOOTSTRAP, else the one the group last consumed from) answers; `lag` is None with `broker_error` otherwise."""
    rows = stored_offsets(conn, group=group, topic=topic)
    watermarks: dict[tuple[str, str, int], tuple[int, int] | str] = {}
    by_broker: dict[str, list[PartitionOffset]] = {}
    for row in rows:
        broker = bootstrap or row.bootstrap
        if broker:
            by_broker.setdefault(broker, []).append(row)
    for broker, members in by_broker.items():
        watermarks.update(_watermarks(broker, members, kafka_config or {}, timeout))
    status = []
    for row in rows:
        broker = bootstrap or row.bootstrap
        marks = watermarks.get((broker, row.topic, row.partition)) if broker else "no broker known"
        entry = {"group": row.consumer_group, "topic": row.topic, "partition": row.partition,
                 "next_offset": row.next_offset, "messages_consumed": row.messages_consumed,
                 "updated_at": row.updated_at, "bootstrap": broker, "high_watermark": None, "lag": None,
                 "broker_error": None}
        if isinstance(marks, tuple):
            low, high = marks
            entry["high_watermark"] = high
            entry["lag"] = max(0, high - (low if row.next_offset is None else row.next_offset))
        else:
            entry["broker_error"] = marks
        status.append(entry)
    return status


def _watermarks(broker: str, rows: list[PartitionOffset], kafka_config: Mapping[str, str],
                timeout: float) -> dict[tuple[str, str, int], tuple[int, int] | str]:
    found: dict[tuple[str, str, int], tuple[int, int] | str] = {}
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
    except ImportError:
        return {(broker, row.topic, row.partition): "confluent-kafka is not installed (pip install 'ledger[stream]')"
                for row in rows}

    consumer = Consumer({"bootstrap.servers": broker, "group.id": "ledger-status", "enable.auto.commit": False,
                         **kafka_config}, logger=None)
    try:
        for row in rows:
            try:
                found[(broker, row.topic, row.partition)] = consumer.get_watermark_offsets(
                    TopicPartition(row.topic, row.partition), timeout=timeout, cached=False)
            except KafkaException as error:
                found[(broker, row.topic, row.partition)] = str(error.args[0].str() if error.args else error)
    finally:
        consumer.close()
    return found


def total_lag(status: list[dict[str, Any]]) -> int | None:
    """The sum of the partitions' lags, or None when any is unknown."""
    lags = [s["lag"] for s in status]
    return None if any(lag is None for lag in lags) else sum(lags)
