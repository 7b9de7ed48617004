"""Appending facts: dedup by deterministic id, conflicts to the quarantine, hash chain, one global order.

Every append of facts other than usage, bulk or command, goes through `append_batch` (usage facts have their
own path, `ledger.store.usage`, on the same lock, sequence and chain), in one transaction that
1. takes eventsourcing's EXCLUSIVE lock on the events table (so commit order = position order),
2. finds which candidates' keys already stand (duplicates and conflicts are never appended),
3. checks expected stream versions (optimistic concurrency: a credit against an invoice),
4. reserves a contiguous block of positions and extends the hash chain over them,
5. copies the new rows (binary COPY) into the events table,
6. writes rejected records to the quarantine.
A crash anywhere before commit leaves nothing of the batch; a re-run appends exactly what is missing.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import psycopg

from ledger.domain.facts import CREDIT, FactKind, differing_fields
from ledger.store import copybin
from ledger.store.events import payload_of_state

GENESIS = bytes(32)


@dataclass(slots=True)
class Candidate:
    """A validated record about to be appended (picklable: parsers may run in worker processes)."""

    fact_id: bytes  # the 16 bytes of the fact's uuid5 (bytes pickle far faster than UUID objects)
    payload: dict[str, Any] | None  # None: recovered from `state` when needed
    state: bytes
    line: int | None
    raw: str
    stream_id: bytes | None = None
    version: int = 1

    def fact_payload(self) -> dict[str, Any]:
        return self.payload if self.payload is not None else payload_of_state(self.state)


@dataclass(frozen=True)
class Rejection:
    """A record refused before or at append; it goes to the quarantine."""

    line: int | None
    raw: str
    reason: str
    field: str | None = None
    raw_bytes: bytes | None = None


@dataclass
class BatchOutcome:
    appended: list[tuple[Candidate, int]] = field(default_factory=list)
    duplicates: list[tuple[Candidate, Any]] = field(default_factory=list)
    conflicts: list[tuple[Candidate, int, list[str]]] = field(default_factory=list)
    quarantined: int = 0


class StreamVersionConflict(Exception):
    """Another writer appended to the stream since it was read: re-read, re-decide, retry."""


def chain_hash(previous: bytes, position: int, topic: str, state: bytes, stream: bytes | None = None,
               version: int | None = None) -> bytes:
    """The chain link of a fact: it covers the previous link and every column of the fact's row (format 2: its
    position, stream, stream version, topic and state); without a stream, format 1 (rows appended before
    migration 0030: position, topic and state)."""
    head = previous + position.to_bytes(8, "big")
    if stream is not None:
        head += stream + version.to_bytes(8, "big", signed=True)
    return hashlib.sha256(head + topic.encode() + b"\x00" + state).digest()


def record_digest(raw: str, reason: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape") + b"\x00" + reason.encode()).digest()


def lock_events(cur: psycopg.Cursor) -> None:
    """The lock eventsourcing's recorder takes: writers serialise, readers go on."""
    cur.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")


def _existing(cur: psycopg.Cursor, kind: FactKind, candidates: Sequence[Candidate]) -> dict[Any, tuple[int, bytes]]:
    """Facts already stored under the candidates' keys: key → (position, state)."""
    if kind is CREDIT:
        ids = [c.fact_payload()["credit_id"] for c in candidates]
        rows = cur.execute(
            "SELECT ledger_credit_id(state), notification_id, state FROM ledger_events"
            " WHERE topic = 'ledger.CreditIssued' AND ledger_credit_id(state) = ANY(%s)",
            (ids,),
        ).fetchall()
    else:
        rows = cur.execute(
            "SELECT originator_id, notification_id, state FROM ledger_events"
            " WHERE originator_id = ANY(string_to_array(%s, ',')::uuid[]) AND originator_version = 1",
            (",".join([c.fact_id.hex() for c in candidates]),),
        ).fetchall()
    return {key.bytes if isinstance(key, uuid.UUID) else key: (position, bytes(state)) for key, position, state in rows}


def _check_stream_versions(cur: psycopg.Cursor, candidates: Sequence[Candidate]) -> None:
    streamed = [c for c in candidates if c.stream_id is not None]
    if not streamed:
        return
    heads = dict(cur.execute(
        "SELECT originator_id, max(originator_version) FROM ledger_events"
        " WHERE originator_id = ANY(%s) GROUP BY originator_id",
        ([uuid.UUID(bytes=s) for s in {c.stream_id for c in streamed}],),
    ).fetchall())
    heads = {k.bytes: v for k, v in heads.items()}
    for c in streamed:
        if heads.get(c.stream_id, 0) != c.version - 1:
            raise StreamVersionConflict(f"stream {uuid.UUID(bytes=c.stream_id)} is at version {heads.get(c.stream_id, 0)}, "
                                        f"expected {c.version - 1}")
        heads[c.stream_id] = c.version


def _reserve_positions(cur: psycopg.Cursor, count: int) -> int:
    """Reserve `count` consecutive positions (we hold the lock: nobody else draws from the sequence)."""
    first = cur.execute("SELECT nextval('ledger_events_notification_id_seq')").fetchone()[0]
    if count > 1:
        cur.execute("SELECT setval('ledger_events_notification_id_seq', %s)", (first + count - 1,))
    return first


def _chain_head(cur: psycopg.Cursor) -> bytes:
    row = cur.execute(
        "SELECT chain_hash FROM ledger_events ORDER BY notification_id DESC LIMIT 1"
    ).fetchone()
    return bytes(row[0]) if row and row[0] is not None else GENESIS


def _key_of(kind: FactKind, c: Candidate) -> Any:
    return c.fact_payload()["credit_id"] if kind is CREDIT else c.fact_id


def append_batch(
    conn: psycopg.Connection,
    kind: FactKind,
    candidates: Sequence[Candidate],
    rejections: Sequence[Rejection] = (),
    *,
    source_file: str = "",
    quarantine_conflicts: bool = True,
) -> BatchOutcome:
    """Append the candidates that are new, in order, in one transaction; quarantine the rest."""
    outcome = BatchOutcome()
    with conn.transaction(), conn.cursor() as cur:
        lock_events(cur)
        standing = _existing(cur, kind, candidates) if candidates else {}
        fresh: list[Candidate] = []
        first_in_batch: dict[Any, Candidate] = {}
        pending_conflicts: list[tuple[Candidate, int | Candidate, list[str]]] = []
        for c in candidates:
            key = _key_of(kind, c)
            if key in standing:
                position, state = standing[key]
                earlier: int | Candidate = position
                earlier_payload = payload_of_state(state)
            elif key in first_in_batch:
                earlier = first_in_batch[key]
                earlier_payload = earlier.fact_payload()
            else:
                first_in_batch[key] = c
                fresh.append(c)
                continue
            fields = differing_fields(earlier_payload, c.fact_payload())
            if fields:
                pending_conflicts.append((c, earlier, fields))
            else:
                outcome.duplicates.append((c, earlier))
        _check_stream_versions(cur, fresh)
        positions: dict[int, int] = {}
        if fresh:
            first = _reserve_positions(cur, len(fresh))
            positions = {id(c): first + i for i, c in enumerate(fresh)}
            _copy_events(cur, kind, fresh, first, _chain_head(cur))
            outcome.appended = [(c, positions[id(c)]) for c in fresh]
        # a duplicate or conflict inside the batch names the position its first fact has just received
        outcome.duplicates = [(c, e if isinstance(e, int) else positions[id(e)]) for c, e in outcome.duplicates]
        outcome.conflicts = [
            (c, earlier if isinstance(earlier, int) else positions[id(earlier)], fields)
            for c, earlier, fields in pending_conflicts
        ]
        conflict_rejections = [
            Rejection(c.line, c.raw, f"conflicts with fact at position {pos} (differs in: {', '.join(fields)})",
                      field=fields[0])
            for c, pos, fields in outcome.conflicts
        ] if quarantine_conflicts else []
        outcome.quarantined = write_quarantine(cur, kind.name, source_file, [*rejections, *conflict_rejections])
    return outcome


def _copy_events(cur: psycopg.Cursor, kind: FactKind, fresh: Sequence[Candidate], first: int, head: bytes) -> None:
    """Binary COPY of the events rows, extending the hash chain in position order."""
    topic = kind.topic
    topic_bytes = topic.encode() + b"\x00"
    topic_field = copybin.text_field(topic)
    row_head = copybin.row_count(6)
    chain_len = b"\x00\x00\x00\x20"
    sha256 = hashlib.sha256
    int8 = copybin.INT8_FIELD
    uuid_len = b"\x00\x00\x00\x10"
    state_len = struct.Struct(">i").pack
    parts = [copybin.HEADER]
    previous = head
    position = first
    for c in fresh:
        state = c.state
        position_bytes = position.to_bytes(8, "big")
        stream = c.stream_id or c.fact_id
        previous = sha256(b"".join((previous, position_bytes, stream, c.version.to_bytes(8, "big", signed=True),
                                    topic_bytes, state))).digest()
        parts.append(b"".join((
            row_head, uuid_len, stream, int8(8, c.version), topic_field,
            state_len(len(state)), state, b"\x00\x00\x00\x08", position_bytes, chain_len, previous,
        )))
        position += 1
    parts.append(copybin.TRAILER)
    with cur.copy("COPY ledger_events (originator_id, originator_version, topic, state, notification_id,"
                  " chain_hash) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join(parts))


def storable_text(text: str) -> str:
    """Text PostgreSQL can hold: U+0000 and lone surrogates written as backslash escapes (the record's exact bytes
    are kept beside it, in raw_bytes)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _quarantine_row(kind: str, source_file: str, r: Rejection) -> tuple:
    raw, raw_bytes = storable_text(r.raw), r.raw_bytes
    if raw != r.raw and raw_bytes is None:
        raw_bytes = r.raw.encode("utf-8", "surrogatepass")
    reason = storable_text(r.reason)
    return (kind, storable_text(source_file), r.line, raw, raw_bytes, r.field and storable_text(r.field), reason,
            record_digest(raw, reason))


def write_quarantine(cur: psycopg.Cursor, kind: str, source_file: str, rejections: Iterable[Rejection]) -> int:
    """Keep rejected records with their file, line, raw text and reason; each (file, line, record) once."""
    rows = [_quarantine_row(kind, source_file, r) for r in rejections]
    if rows:
        cur.executemany(
            "INSERT INTO quarantine (kind, source_file, line_number, raw_text, raw_bytes, field, reason, record_digest)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )
    return len(rows)

