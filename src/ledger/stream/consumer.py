"""`ledger consume KIND`: facts from a Kafka topic, each message exactly once.

Messages are polled into a batch (up to `batch_size` messages, or what `linger_seconds` brought), and the batch
is appended in ONE PostgreSQL transaction that
1. locks the group's offsets of the batch's partitions and checks they are where this consumer believes
   (`ledger.stream.offsets.hold`: a consumer that lost a partition appends nothing),
2. appends each partition's messages through the same validation, dedup and quarantine as `ledger ingest`
   (`ledger.commands.append_records`), with `kafka:TOPIC/PARTITION` as their file and the offset as their line,
3. moves the offsets past the batch.
So a crash, a lost connection, a rebalance or a re-delivery can neither lose a message nor append one twice:
the consumer resumes from the stored offsets (it seeks there when given a partition), and the facts' unique
keys are a second guard. Kafka's committed offsets are written after the commit, for lag monitors only.

A message is one record. Its provenance is its topic, partition and offset: `kafka:TOPIC/PARTITION` and the
offset as line. A usage fact keeps its line in a 32-bit column, so from offset 2^31 on a partition's messages
are named `kafka:TOPIC/PARTITION+BASE` (BASE a multiple of 2^31) with line = offset - BASE.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ledger.commands.append_records import Record, append_records, check_format
from ledger.commands.ingest import IngestReport
from ledger.errors import ConsumeError
from ledger.ingest.records import RecordContext
from ledger.logging import get_logger
from ledger.store.database import Database
from ledger.store.usage import SeenKeys
from ledger.stream import offsets

SEGMENT = 2**31  # offsets per provenance name (see the module docstring)
SCREEN_RECORDS = 4_000_000  # the run's screen of seen keys is renewed after this many records (fixed memory)


def provenance(topic: str, partition: int, offset: int) -> tuple[str, int]:
    """The file and line under which a message's fact or quarantined record is kept."""
    base = offset - offset % SEGMENT
    return f"kafka:{topic}/{partition}" + (f"+{base}" if base else ""), offset - base


def segments(topic: str, partition: int, messages: list[Record]) -> Iterator[tuple[str, list[Record]]]:
    """A partition's messages (offset, value), in order, as (file, records numbered by line) per provenance name."""
    current, records = None, []
    for offset, value in messages:
        name, line = provenance(topic, partition, offset)
        if name != current and records:
            yield current, records
            records = []
        current = name
        records.append((line, value))
    if records:
        yield current, records


@dataclass(frozen=True)
class ConsumeOptions:
    bootstrap: str
    topic: str
    kind: str = "usage"
    format: str = "ndjson"
    group: str | None = None  # default: ledger-KIND
    partitions: tuple[int, ...] = ()  # given: these partitions are assigned, no group membership
    batch_size: int = 20_000
    linger_seconds: float = 0.5
    idle_exit_seconds: float | None = None  # stop once nothing arrived for this long (backfills, tests)
    kafka_config: Mapping[str, str] = field(default_factory=dict)  # any librdkafka setting (-X key=value)

    @property
    def consumer_group(self) -> str:
        return self.group or f"ledger-{self.kind}"


@dataclass
class ConsumeReport:
    topic: str
    group: str
    kind: str
    format: str
    batches: int = 0
    messages: int = 0
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    refused_batches: int = 0  # batches not appended because another member had moved the offsets
    seconds: float = 0.0
    seconds_to_last_commit: float = 0.0  # from the start to the last batch committed (idle time excluded)
    stopped_by: str = ""

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3),
                "seconds_to_last_commit": round(self.seconds_to_last_commit, 3),
                "messages_per_second": round(self.messages_per_second, 1)}


def kafka_settings(options: ConsumeOptions) -> dict[str, Any]:
    """librdkafka settings: offsets are ours (never auto-committed), and a stored offset the broker no longer
    holds is an error, not a silent jump."""
    return {
        "bootstrap.servers": options.bootstrap,
        "group.id": options.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
        **options.kafka_config,
    }


class StreamConsumer:
    """Consumes one topic into facts until `stop` is set (SIGTERM) or it has been idle long enough."""

    def __init__(self, db: Database, options: ConsumeOptions, *, stop: threading.Event | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        check_format(options.kind, options.format)
        self.db, self.options, self.clock = db, options, clock
        self.stop = stop or threading.Event()
        self.report = ConsumeReport(options.topic, options.consumer_group, options.kind, options.format)
        self.counts = IngestReport(options.kind, f"kafka:{options.topic}", options.format)
        self.positions: dict[int, int | None] = {}  # partition -> next offset as stored (None: from the start)
        self.pending: dict[int, list[Record]] = {}
        self.pending_count = 0
        self.seen = SeenKeys(SCREEN_RECORDS)
        self.screened = 0
        self.look_up_all = False
        self.log = get_logger().bind(topic=options.topic, group=options.consumer_group)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> ConsumeReport:
        from confluent_kafka import Consumer

        started = self.started = time.perf_counter()
        with self.db.connection() as conn:
            self.conn = conn
            consumer = Consumer(kafka_settings(self.options))
            try:
                self._start(consumer)
                self._consume(consumer)
            finally:
                consumer.close()  # leaves the group at once, so the others need not wait for a session timeout
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _start(self, consumer) -> None:
        if self.options.partitions:
            self._assign(consumer, [_partition(self.options.topic, p) for p in self.options.partitions])
        else:
            consumer.subscribe([self.options.topic], on_assign=self._assign, on_revoke=self._revoke,
                               on_lost=self._revoke)

    def _consume(self, consumer) -> None:
        options = self.options
        first_pending_at = last_message_at = time.monotonic()
        while True:
            if self.stop.is_set():
                self.report.stopped_by = "signal"
                break
            room = max(1, min(10_000, options.batch_size - self.pending_count))
            messages = consumer.consume(num_messages=room, timeout=0.1)
            now = time.monotonic()
            if not self.positions:
                last_message_at = now  # waiting for partitions is not being idle
            if messages:
                if not self.pending_count:
                    first_pending_at = now
                last_message_at = now
                self._take(messages)
            if self.pending_count >= options.batch_size or (
                    self.pending_count and now - first_pending_at >= options.linger_seconds):
                self._append(consumer)
            if options.idle_exit_seconds is not None and not self.pending_count and \
                    now - last_message_at >= options.idle_exit_seconds:
                self.report.stopped_by = "idle"
                break
        if self.pending_count:  # a graceful stop appends what it holds
            self._append(consumer)

    def _take(self, messages) -> None:
        from confluent_kafka import KafkaError

        positions, pending = self.positions, self.pending
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal() or not error.retriable():
                    raise ConsumeError(f"{self.options.topic}: {error.str()}")
                self.log.warning("kafka_error_retried", error=error.str())
                continue
            partition, offset = message.partition(), message.offset()
            if partition not in positions:
                continue  # revoked while it was on its way
            expected = positions[partition]
            if expected is not None and offset < expected:
                continue  # consumed and committed already
            pending.setdefault(partition, []).append((offset, message.value() or b""))
            self.pending_count += 1

    # -- one batch, one transaction -----------------------------------------------------------------------------
    def _append(self, consumer) -> None:
        options, topic, group = self.options, self.options.topic, self.options.consumer_group
        batch, self.pending, count = self.pending, {}, self.pending_count
        self.pending_count = 0
        expected = {p: self.positions[p] for p in batch}
        moment = self.clock()
        before = asdict(self.counts)
        try:
            with self.conn.transaction():
                with self.conn.cursor() as cur:
                    offsets.hold(cur, group, topic, expected)
                for partition in sorted(batch):
                    for source, records in segments(topic, partition, batch[partition]):
                        ctx = RecordContext(source, moment, self.db.settings.currency)
                        self.look_up_all = append_records(self.conn, options.kind, options.format, ctx, records,
                                                          self.counts, seen=self._screen(len(records)),
                                                          look_up_all=self.look_up_all)
                moved = {p: messages[-1][0] + 1 for p, messages in batch.items()}
                with self.conn.cursor() as cur:
                    offsets.advance(cur, group, topic, options.bootstrap, moved,
                                    {p: len(m) for p, m in batch.items()})
        except offsets.OffsetsMovedError as moved_error:
            self._restore_counts(before)
            self.report.refused_batches += 1
            self.log.warning("consumer_batch_refused", reason=str(moved_error))
            self._resume_from_store(consumer, list(batch))
            return
        except BaseException:
            self._restore_counts(before)
            raise
        self.positions.update(moved)
        self._tally(count)
        self.report.seconds_to_last_commit = time.perf_counter() - self.started
        self._commit_to_kafka(consumer, moved)

    def _screen(self, records: int) -> SeenKeys:
        self.screened += records
        if self.screened > SCREEN_RECORDS:  # a full screen would send every key to be looked up: start afresh
            self.seen, self.screened = SeenKeys(SCREEN_RECORDS), records
        return self.seen

    def _restore_counts(self, before: dict[str, Any]) -> None:
        for name, value in before.items():
            setattr(self.counts, name, value)

    def _tally(self, messages: int) -> None:
        report, counts = self.report, self.counts
        report.batches += 1
        report.messages += messages
        report.appended, report.duplicates = counts.appended, counts.duplicates
        report.conflicts, report.quarantined = counts.conflicts, counts.quarantined
        self.log.debug("consumer_batch_appended", messages=messages, appended=counts.appended,
                       quarantined=counts.quarantined)

    def _commit_to_kafka(self, consumer, moved: Mapping[int, int]) -> None:
        """Kafka's committed offsets follow ours, so the usual lag monitors see this group; best effort."""
        from confluent_kafka import KafkaException

        try:
            consumer.commit(offsets=[_partition(self.options.topic, p, o) for p, o in moved.items()],
                            asynchronous=True)
        except KafkaException as error:
            self.log.info("kafka_offsets_not_committed", error=str(error))

    # -- partitions given and taken ---------------------------------------------------------------------------
    def _assign(self, consumer, partitions) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        stored = offsets.claim(self.conn, self.options.consumer_group, self.options.topic,
                               [tp.partition for tp in partitions], self.options.bootstrap)
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING if stored[tp.partition] is None else stored[tp.partition]
        self.positions.update(stored)
        consumer.assign(partitions)
        self.log.info("partitions_assigned", partitions={p: stored[p] for p in sorted(stored)})

    def _revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            self.positions.pop(tp.partition, None)
            dropped = self.pending.pop(tp.partition, [])
            self.pending_count -= len(dropped)  # not appended: its next owner reads them from the stored offsets
        consumer.unassign()
        self.log.info("partitions_revoked", partitions=sorted(tp.partition for tp in partitions))

    def _resume_from_store(self, consumer, partitions: list[int]) -> None:
        stored = offsets.claim(self.conn, self.options.consumer_group, self.options.topic, partitions)
        from confluent_kafka import OFFSET_BEGINNING, KafkaException

        for partition, offset in stored.items():
            if partition not in self.positions:
                continue
            self.positions[partition] = offset
            try:
                consumer.seek(_partition(self.options.topic, partition,
                                         OFFSET_BEGINNING if offset is None else offset))
            except KafkaException as error:  # no longer assigned here: the rebalance will say so
                self.log.info("seek_skipped", partition=partition, error=str(error))


def _partition(topic: str, partition: int, offset: int | None = None):
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition) if offset is None else TopicPartition(topic, partition, offset)
