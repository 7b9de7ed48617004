"""Consumer offsets kept in PostgreSQL (`consumer_offsets`), written in the same transaction as the facts.

A consumer reads where its group stands when it is given partitions (`claim`), and each batch it appends
first locks those rows and checks that they still say what it believes (`hold`): a consumer that lost a
partition in a rebalance, and whose successor has moved on, finds the offset moved and appends nothing.
The same transaction then moves them past the batch (`advance`). Kafka's own committed offsets are written
afterwards, for lag monitoring only: this table is the authority.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg

from ledger.errors import OffsetsMovedError


@dataclass(frozen=True)
class PartitionOffset:
    """Where a group stands in one partition."""

    consumer_group: str
    topic: str
    partition: int
    next_offset: int | None
    bootstrap: str | None
    messages_consumed: int
    updated_at: object


def claim(conn: psycopg.Connection, group: str, topic: str, partitions: Iterable[int],
          bootstrap: str | None = None) -> dict[int, int | None]:
    """The next offset of each partition for the group (None: nothing consumed yet), creating missing rows."""
    partitions = sorted(set(partitions))
    if not partitions:
        return {}
    with conn.transaction():
        conn.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, bootstrap)"
            " SELECT %s, %s, unnest(%s::int[]), %s ON CONFLICT DO NOTHING", (group, topic, partitions, bootstrap))
        rows = conn.execute(
            "SELECT partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group = %s AND topic = %s AND partition = ANY(%s)", (group, topic, partitions)).fetchall()
    return dict(rows)


def hold(cur: psycopg.Cursor, group: str, topic: str, expected: Mapping[int, int | None]) -> None:
    """Lock the partitions' rows until commit; refuse if any moved since this consumer read it."""
    partitions = sorted(expected)
    rows = dict(cur.execute(
        "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %s AND topic = %s"
        " AND partition = ANY(%s) ORDER BY partition FOR UPDATE", (group, topic, partitions)).fetchall())
    for partition in partitions:
        if partition not in rows or rows[partition] != expected[partition]:
            raise OffsetsMovedError(group, topic, partition, expected[partition], rows.get(partition))


def advance(cur: psycopg.Cursor, group: str, topic: str, bootstrap: str, next_offsets: Mapping[int, int],
            counts: Mapping[int, int]) -> None:
    """Move the held partitions past the batch just appended (in the batch's transaction)."""
    partitions = sorted(next_offsets)
    cur.execute(
        "UPDATE consumer_offsets o SET next_offset = n.next_offset, bootstrap = %s,"
        " messages_consumed = o.messages_consumed + n.consumed, updated_at = now()"
        " FROM unnest(%s::int[], %s::bigint[], %s::bigint[]) AS n(partition, next_offset, consumed)"
        " WHERE o.consumer_group = %s AND o.topic = %s AND o.partition = n.partition",
        (bootstrap, partitions, [next_offsets[p] for p in partitions], [counts.get(p, 0) for p in partitions],
         group, topic))


def stored_offsets(conn: psycopg.Connection, *, group: str | None = None,
                   topic: str | None = None) -> list[PartitionOffset]:
    """Every group's position in every partition it consumed (optionally one group or topic)."""
    rows = conn.execute(
        "SELECT consumer_group, topic, partition, next_offset, bootstrap, messages_consumed, updated_at"
        " FROM consumer_offsets WHERE (%(group)s::text IS NULL OR consumer_group = %(group)s)"
        " AND (%(topic)s::text IS NULL OR topic = %(topic)s) ORDER BY consumer_group, topic, partition",
        {"group": group, "topic": topic}).fetchall()
    return [PartitionOffset(*row) for row in rows]
