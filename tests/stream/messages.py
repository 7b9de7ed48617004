"""Generated usage traffic with what real traffic brings: producer re-sends and malformed messages.

Every message's partition and offset are known in advance (each partition's offsets count from 0 in the order
sent), so a test can say exactly which facts and which quarantined records the store must end with.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass, field

MALFORMED = [
    b"not json at all",
    b'{"event_id": "x", "source": "product"}',  # fields missing
    b'{"event_id": "neg", "source": "product", "source_customer_id": "c", "meter": "api_calls", "quantity": -1,'
    b' "event_time": "2026-01-15T10:00:00Z"}',
    b"",
    None,  # a tombstone
    b'{"event_id": "t", "source": "product", "source_customer_id": "c", "meter": "api_calls", "quantity": 1,'
    b' "event_time": "yesterday"}',
]


@dataclass
class Traffic:
    messages: list[tuple[int, bytes | None]] = field(default_factory=list)  # (partition, value) in send order
    facts: dict[tuple[str, str], tuple[str, int, str]] = field(default_factory=dict)  # key -> (customer, qty, time)
    malformed: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset)
    resent: int = 0
    _next_offset: dict[int, int] = field(default_factory=dict)

    def send(self, partition: int, value: bytes | None) -> int:
        offset = self._next_offset.get(partition, 0)
        self._next_offset[partition] = offset + 1
        self.messages.append((partition, value))
        return offset


def traffic(count: int, *, partitions: int = 4, resend_share: float = 0.05, malformed_share: float = 0.01,
            seed: int = 11, prefix: str = "evt") -> Traffic:
    """`count` messages keyed by customer account: unique valid records, re-sends of earlier ones, malformed."""
    rng = random.Random(seed)
    out, sent = Traffic(), []
    for n in range(count):
        roll = rng.random()
        if sent and roll < resend_share:
            partition, value = rng.choice(sent)
            out.send(partition, value)
            out.resent += 1
        elif roll < resend_share + malformed_share:
            partition = rng.randrange(partitions)
            out.malformed.add((partition, out.send(partition, rng.choice(MALFORMED))))
        else:
            customer = f"cu_{rng.randrange(500):04d}"
            record = {"event_id": f"{prefix}-{n:08d}", "source": rng.choice(("product", "gateway")),
                      "source_customer_id": customer, "meter": rng.choice(("api_calls", "fraud_checks")),
                      "quantity": rng.randrange(1, 100),
                      "event_time": f"2026-{rng.randint(1, 3):02d}-{rng.randint(1, 28):02d}T10:00:00.000000Z"}
            partition = zlib.crc32(customer.encode()) % partitions
            value = json.dumps(record).encode()
            out.send(partition, value)
            sent.append((partition, value))
            out.facts[(record["source"], record["event_id"])] = (customer, record["quantity"], record["event_time"])
    return out
