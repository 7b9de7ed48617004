"""`GET /metrics`: Prometheus text (requests by status, facts appended, projector lag), kept in this process."""

from __future__ import annotations

import threading
from collections import Counter

from ledger.projector.follow import FollowerState


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

    def render(self, follower: FollowerState | None) -> str:
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
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
