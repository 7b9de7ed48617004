"""The follower: keeps the projections current as facts commit (`ledger project --follow`, and the service).

Every append writes `ledger_events`, whose trigger NOTIFYs `ledger_facts` at commit (migration 0042). The follower
LISTENs on a connection of its own, and on each wake (or every `interval` seconds, in case a notification was
missed) brings Finance's read models up to date: everything committed since the last run is applied in one batch.
The Risk and Sales views, whose increments cost more, follow on a thread and a connection of their own, under their
own lock (runner.project_risk): at most every `risk_interval` seconds, or as soon as Finance's are idle, and never
holding Finance's next run back; on the embedded server their backend runs at a lower CPU priority. The
projector's locks make a follower safe beside any other projector run: the second one finds nothing left and does
nothing. (Measured on two cores, sustained load at 20,000 events/s: Finance's lag p50 2.9 s and p99 7.1 s with
the views beside at a lower priority, 2.5 s and 8.9 s at the usual one; on an earlier day 3.7 s and 8.3 s beside,
5.2 s and 15.5 s with them run in turn; docs/benchmarks.md.)

Lag: `facts` is the head position minus a read model's checkpoint; `seconds` is how long ago the follower first
saw the oldest fact still not applied (zero when current).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import psycopg

from ledger.logging import get_logger
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
    """When each not-yet-applied head was first seen, so a lag in seconds can be told (by either thread)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []  # (head position, first seen at), ascending
        self._lock = threading.Lock()

    def saw(self, head: int, at: float) -> None:
        with self._lock:
            if not self.seen or head > self.seen[-1][0]:
                self.seen.append((head, at))

    def lag(self, checkpoint: int, now: float) -> float:
        """Seconds since the oldest head above CHECKPOINT was first seen."""
        with self._lock:
            for head, at in self.seen:
                if head > checkpoint:
                    return now - at
        return 0.0

    def applied(self, checkpoint: int) -> None:
        with self._lock:
            self.seen = [(h, t) for h, t in self.seen if h > checkpoint]


# The CPU priority (nice value) of the Risk and Sales views' backend. Under sustained load their runs follow one
# another (8 s each at 20,000 events/s, wide benchmark shape) and, on two cores, Finance's ran 4x slower beside them
# than alone (0.8 s → 3.8 s a run); at a lower priority they take what Finance leaves.
RISK_NICENESS = 10


def lower_priority(db: Database, conn: psycopg.Connection) -> bool:
    """Lower the CPU priority of CONN's backend process, where this process may: the embedded server runs on this
    machine as this user. Another server (LEDGER_DATABASE_URL) may be on another machine, where its backend's
    process id names nothing of ours, or run as another user: left as it is. Returns whether it was lowered."""
    if db.settings.database_url is not None:
        return False
    pid = conn.info.backend_pid
    try:
        os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), RISK_NICENESS))
    except OSError as error:  # gone, or not ours after all: the views run at the usual priority
        get_logger().warning("risk_views_priority_not_lowered", pid=pid, reason=str(error))
        return False
    return True


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
        self._reporting = threading.Lock()  # one on_run call at a time, and one update of the run counts

    def run(self) -> None:
        """Follow until `stop` is set; the runs in progress when it is set finish (and commit) first."""
        self.state.running = True
        finished = threading.Event()
        risk = threading.Thread(target=self._follow_risk, args=(finished,), name="ledger-follower-risk", daemon=True)
        try:
            with self.db.connection() as listener, self.db.connection() as worker:
                listener.execute(f"LISTEN {CHANNEL}")
                risk.start()
                while not self.stop.is_set():
                    self.step(worker)
                    self._wait(listener)
        finally:
            finished.set()
            if risk.is_alive():
                risk.join()
            self.state.running = False

    def _wait(self, listener: psycopg.Connection) -> None:
        """Until a commit is notified, `interval` passes, or `stop` is set."""
        deadline = time.monotonic() + self.interval
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if any(True for _ in listener.notifies(timeout=min(0.5, left), stop_after=1)):
                return

    def step(self, conn: psycopg.Connection) -> list[ProjectReport]:
        """Finance's read models brought to the head. Updates `state`; returns the runs made."""
        head = _head_position(conn)
        self._pending.saw(head, time.monotonic())
        checkpoints = read_checkpoints(conn)
        runs = []
        if checkpoints is None or checkpoints[0] < head:
            runs.append(project(conn, self.settings, risk=False))
        self._measure(conn, runs)
        return runs

    def step_risk(self, conn: psycopg.Connection) -> list[ProjectReport]:
        """The Risk and Sales views brought to Finance's checkpoint, when Finance's are current or `risk_interval`
        has passed since their last run. Updates `state`; returns the runs made."""
        checkpoints = read_checkpoints(conn)
        runs = []
        if checkpoints is not None and checkpoints[1] < checkpoints[0]:
            finance_idle = checkpoints[0] >= _head_position(conn)
            if finance_idle or time.monotonic() - self._risk_run_at >= self.risk_interval:
                self._risk_run_at = time.monotonic()
                runs.append(project_risk(conn, self.settings))
        if runs:  # between runs the Finance thread's measurements keep the lag current
            self._measure(conn, runs)
        return runs

    def _follow_risk(self, finished: threading.Event) -> None:
        """step_risk on a connection of its own until `stop` (or the follower's end). An error is logged and kept
        in `state`; the views are tried again, on a new connection, after `risk_interval`."""
        while not (self.stop.is_set() or finished.is_set()):
            try:
                with self.db.connection() as conn:
                    lower_priority(self.db, conn)
                    while not (self.stop.is_set() or finished.is_set()):
                        if not self.step_risk(conn):
                            finished.wait(min(0.5, self.risk_interval))
            except Exception as error:  # noqa: BLE001 - the Finance follower goes on; so do these views, later
                get_logger().error("risk_views_follow_failed", error=str(error))
                self.state.last_error = f"risk views: {error}"
                finished.wait(self.risk_interval)

    def _measure(self, conn: psycopg.Connection, runs: list[ProjectReport]) -> None:
        now = time.monotonic()
        head = _head_position(conn)
        self._pending.saw(head, now)
        finance, risk = read_checkpoints(conn) or (0, 0)
        with self._reporting:
            for report in runs:
                self.state.runs += 1
                self.state.facts_applied += report.facts_applied
                self.state.last_run_at = time.time()
            self.state.head = max(self.state.head, head)
            self.state.finance = Lag(finance, head - finance, self._pending.lag(finance, now))
            self.state.risk = Lag(risk, head - risk, self._pending.lag(risk, now))
            self._pending.applied(min(finance, risk))
            for report in runs:
                if self.on_run is not None:
                    self.on_run(report, self.state)
