"""Stored facts as eventsourcing domain events: one event class per stable topic, one mapper.

The bulk appender writes rows that this mapper reads back as eventsourcing events, so the
library's recorder, notification log and repository work on the same table unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, StoredEvent, UUIDAsHex
from eventsourcing.utils import register_topic

from ledger.domain.facts import BY_TOPIC, PROVENANCE_FIELDS

EVENTS_TABLE = "ledger_events"


class StoredFact(DomainEvent):
    """A fact as an eventsourcing event; its payload fields are attributes beside the timestamp."""

    def payload(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()
                if k not in PROVENANCE_FIELDS and k not in ("originator_id", "originator_version")}


def _event_class(topic: str) -> type[StoredFact]:
    name = topic.rsplit(".", 1)[-1]
    cls = type(name, (StoredFact,), {"TOPIC": topic, "__module__": __name__})
    register_topic(topic, cls)
    return cls


EVENT_CLASSES: dict[str, type[StoredFact]] = {topic: _event_class(topic) for topic in BY_TOPIC}


def make_mapper() -> Mapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


MAPPER = make_mapper()


def encode_recorded_at(moment: datetime) -> bytes:
    """The `timestamp` member of a stored state, as eventsourcing's transcoder writes a datetime."""
    return orjson.dumps({"_type_": "datetime_iso", "_data_": moment.isoformat()})


def encode_state(payload_json: bytes, provenance: dict[str, Any], recorded_at: bytes) -> bytes:
    """A stored state: the canonical payload object extended with provenance and the recorded time."""
    extra = orjson.dumps(provenance)[1:-1] if provenance else b""
    head = payload_json[:-1]
    parts = [head]
    if len(head) > 1:
        parts.append(b",")
    parts.append(b'"timestamp":' + recorded_at)
    if extra:
        parts.append(b"," + extra)
    parts.append(b"}")
    return b"".join(parts)


def payload_of_state(state: bytes) -> dict[str, Any]:
    """The payload of a stored state, provenance removed."""
    decoded = orjson.loads(state)
    return {k: v for k, v in decoded.items() if k not in PROVENANCE_FIELDS}


def to_event(originator_id, originator_version: int, topic: str, state: bytes) -> StoredFact:
    return MAPPER.to_domain_event(StoredEvent(originator_id, originator_version, topic, bytes(state)))
