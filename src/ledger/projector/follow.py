"""The follower: keeps the projections current as facts commit (`ledger project --follow`, and the service).

Every append writes `ledger_events`, whose trigger NOTIFYs `ledger_facts` at commit (migration 0042). The follower
LISTENs on a connection of its own, and on each wake (or every `interval` seconds, in case a notification was
missed) runs `project`: everything committed since the last run is applied in one batch. Finance's read models
are brought up to date on every wake; the Risk and Sales views, whose increments cost more, at most every
`risk_interval` seconds, or as soon as Finance's are idle, under their own lock (runner.project_risk): a Finance
run from elsewhere (a read of the service, `ledger project --finance-only`) never waits for them. The projector's
locks make a follower safe beside any other projector run: the second one finds nothing left and does nothing.
The Risk run follows Finance's in the same thread: run beside it, on a second connection, it made Finance's lag
worse on two cores (sustained load at 20,000 events/s: Finance p50 3.7 s and p99 8.3 s beside, against 1.6 s and
6.1 s in turn; docs/benchmarks.md).

Lag: `facts` is the head position minus a read model's checkpoint; `seconds` is how long ago the follower first
saw the oldest fact still not applied (zero when current).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import psycopg

from ledger.settings import Settings
from ledger.store.database import Database

from .runner import LIVE_SCHEMA, ProjectReport, _head_position, project, project_risk

CHANNEL = "ledger_facts"


@dataclass
class Lag:
    """How far one set of read models is behind the store's head."""

    checkpoint: int = 0
    facts: int = 0
    seconds: float = 0.0


@dataclass
class FollowerState:
    """What the follower last saw and did (read by /metrics and /v1/projections/checkpoints)."""

    head: int = 0
    finance: Lag = field(default_factory=Lag)
    risk: Lag = field(default_factory=Lag)
    runs: int = 0
    facts_applied: int = 0
    last_run_at: float | None = None
    last_error: str | None = None
    running: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class _Pending:
    """When each not-yet-applied head was first seen, so a lag in seconds can be told."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []  # (head position, first seen at), ascending

    def saw(self, head: int, at: float) -> None:
        if not self.seen or head > self.seen[-1][0]:
            self.seen.append((head, at))

    def lag(self, checkpoint: int, now: float) -> float:
        """Seconds since the oldest head above CHECKPOINT was first seen."""
        for head, at in self.seen:
            if head > checkpoint:
                return now - at
        return 0.0

    def applied(self, checkpoint: int) -> None:
        self.seen = [(h, t) for h, t in self.seen if h > checkpoint]


def read_checkpoints(conn: psycopg.Connection) -> tuple[int, int] | None:
    """Finance's and the Risk and Sales views' checkpoints, or None before the first build."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{LIVE_SCHEMA}.checkpoint",)).fetchone()[0]:
        return None
    row = conn.execute(f"SELECT (SELECT position FROM {LIVE_SCHEMA}.checkpoint),"
                       f" (SELECT position FROM {LIVE_SCHEMA}.risk_checkpoint)").fetchone()
    return int(row[0]), int(row[1])


class Follower:
    """Applies new facts as they commit until `stop` is set; `state` tells its lag."""

    def __init__(self, db: Database, settings: Settings, *, interval: float = 5.0, risk_interval: float = 10.0,
                 on_run: Callable[[ProjectReport, FollowerState], None] | None = None):
        self.db, self.settings = db, settings
        self.interval, self.risk_interval = interval, risk_interval
        self.on_run = on_run
        self.state = FollowerState()
        self.stop = threading.Event()
        self._pending = _Pending()
        self._risk_run_at = 0.0

    def run(self) -> None:
        """Follow until `stop` is set; the run in progress when it is set finishes (and commits) first."""
        self.state.running = True
        try:
            with self.db.connection() as listener, self.db.connection() as worker:
                listener.execute(f"LISTEN {CHANNEL}")
                while not self.stop.is_set():
                    self.step(worker)
                    self._wait(listener)
        finally:
            self.state.running = False

    def _wait(self, listener: psycopg.Connection) -> None:
        """Until a commit is notified, `interval` passes (or the Risk views fall due), or `stop` is set."""
        wait = self.interval
        if self.state.risk.facts > 0:
            wait = min(wait, max(0.0, self._risk_run_at + self.risk_interval - time.monotonic()))
        deadline = time.monotonic() + wait
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if any(True for _ in listener.notifies(timeout=min(0.5, left), stop_after=1)):
                return

    def step(self, conn: psycopg.Connection) -> list[ProjectReport]:
        """Finance's read models brought to the head; then the Risk and Sales views, when Finance's were current
        already or `risk_interval` has passed since their last run. Updates `state`; returns the runs made."""
        head = _head_position(conn)
        self._pending.saw(head, time.monotonic())
        checkpoints = read_checkpoints(conn)
        finance_behind = checkpoints is None or checkpoints[0] < head
        runs = []
        if finance_behind:
            runs.append(project(conn, self.settings, risk=False))
        checkpoints = read_checkpoints(conn)
        risk_behind = checkpoints is not None and checkpoints[1] < checkpoints[0]
        if risk_behind and (not finance_behind or time.monotonic() - self._risk_run_at >= self.risk_interval):
            runs.append(project_risk(conn, self.settings))
            self._risk_run_at = time.monotonic()
        for report in runs:
            self.state.runs += 1
            self.state.facts_applied += report.facts_applied
            self.state.last_run_at = time.time()
        self._measure(conn)
        for report in runs:
            if self.on_run is not None:
                self.on_run(report, self.state)
        return runs

    def _measure(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        head = _head_position(conn)
        self._pending.saw(head, now)
        finance, risk = read_checkpoints(conn) or (0, 0)
        self.state.head = head
        self.state.finance = Lag(finance, head - finance, self._pending.lag(finance, now))
        self.state.risk = Lag(risk, head - risk, self._pending.lag(risk, now))
        self._pending.applied(min(finance, risk))
