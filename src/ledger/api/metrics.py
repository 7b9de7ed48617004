"""`GET /metrics`: Prometheus text (requests by status, facts appended, projector lag, Kafka consumer lag)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable

from ledger.projector.follow import FollowerState

# The broker is asked for its high watermarks at most this often; scrapes in between reuse the last answer.
CONSUMER_STATUS_TTL_SECONDS = 10.0


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.facts: Counter[str] = Counter()

    def request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1

    def appended(self, kind: str, facts: int) -> None:
        with self._lock:
            self.facts[kind] += facts

    def render(self, follower: FollowerState | None, consumers: list[dict[str, Any]] | None = None) -> str:
        lines = ["# HELP ledger_http_requests_total Requests answered, by method, route and status.",
                 "# TYPE ledger_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'ledger_http_requests_total{{method="{method}",route="{_label(route)}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP ledger_facts_appended_total Facts appended through this process, by kind.",
                      "# TYPE ledger_facts_appended_total counter"]
            lines += [f'ledger_facts_appended_total{{kind="{k}"}} {n}' for k, n in sorted(self.facts.items())]
        if follower is not None:
            lines += ["# HELP ledger_store_head_position The last position the store has committed.",
                      "# TYPE ledger_store_head_position gauge", f"ledger_store_head_position {follower.head}"]
            for name, help_text in (("lag_facts", "Facts committed but not yet in the read models."),
                                    ("lag_seconds", "Seconds since the oldest fact not yet applied was seen."),
                                    ("checkpoint", "The position the read models are at.")):
                lines += [f"# HELP ledger_projector_{name} {help_text}", f"# TYPE ledger_projector_{name} gauge"]
                for views in ("finance", "risk"):
                    lag = getattr(follower, views)
                    value = {"lag_facts": lag.facts, "lag_seconds": round(lag.seconds, 3),
                             "checkpoint": lag.checkpoint}[name]
                    lines.append(f'ledger_projector_{name}{{views="{views}"}} {value}')
            lines += ["# TYPE ledger_projector_runs_total counter", f"ledger_projector_runs_total {follower.runs}",
                      "# TYPE ledger_projector_up gauge", f"ledger_projector_up {int(follower.running)}"]
        if consumers:
            lines += _consumer_lines(consumers)
        return "\n".join(lines) + "\n"


def _consumer_lines(status: list[dict[str, Any]]) -> list[str]:
    """Per group, topic and partition: the stored next offset, messages consumed, and the lag behind the broker's
    high watermark (absent, with ledger_consumer_broker_up 0, while the broker does not answer)."""
    lines = ["# HELP ledger_consumer_next_offset The next Kafka offset a consumer group will append (stored with "
             "the facts).", "# TYPE ledger_consumer_next_offset gauge",
             "# HELP ledger_consumer_messages_total Messages the group turned into facts or quarantined records.",
             "# TYPE ledger_consumer_messages_total counter",
             "# HELP ledger_consumer_lag_messages Messages on the broker not yet appended (high watermark - next "
             "offset).", "# TYPE ledger_consumer_lag_messages gauge",
             "# HELP ledger_consumer_broker_up Whether the broker answered for the partition's watermark.",
             "# TYPE ledger_consumer_broker_up gauge"]
    for row in status:
        labels = (f'group="{_label(row["group"])}",topic="{_label(row["topic"])}",'
                  f'partition="{row["partition"]}"')
        if row["next_offset"] is not None:
            lines.append(f"ledger_consumer_next_offset{{{labels}}} {row['next_offset']}")
        lines.append(f"ledger_consumer_messages_total{{{labels}}} {row['messages_consumed']}")
        if row["lag"] is not None:
            lines.append(f"ledger_consumer_lag_messages{{{labels}}} {row['lag']}")
        lines.append(f"ledger_consumer_broker_up{{{labels}}} {int(row['lag'] is not None)}")
    return lines


class ConsumerStatusCache:
    """The consumer groups' status (`ledger consume --status`), refreshed at most every TTL seconds, so a scraper
    never waits on the broker more than once per interval. Empty when no group has consumed into this store."""

    def __init__(self, read: Callable[[], list[dict[str, Any]]], ttl: float = CONSUMER_STATUS_TTL_SECONDS):
        self._read, self._ttl = read, ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._status: list[dict[str, Any]] = []

    def get(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                self._status = self._read()
                self._at = time.monotonic()
            return self._status


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
