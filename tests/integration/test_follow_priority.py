"""The follower's Risk and Sales views run at a lower CPU priority where it may set one: on the embedded server."""

from __future__ import annotations

import os
from types import SimpleNamespace

import psycopg
import pytest

from ledger.projector.follow import RISK_NICENESS, lower_priority


def _owner_and_nice(pid: int) -> tuple[int, int] | None:
    """The backend process's real user id and nice value, or None when it is no process of this machine."""
    try:
        status = open(f"/proc/{pid}/status").read()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:"))), \
            os.getpriority(os.PRIO_PROCESS, pid)
    except (OSError, StopIteration):
        return None


def test_an_embedded_servers_backend_is_lowered_when_it_is_this_users(db_url):
    embedded = SimpleNamespace(settings=SimpleNamespace(database_url=None))
    with psycopg.connect(db_url) as conn:
        before = _owner_and_nice(conn.info.backend_pid)
        if before is None:
            pytest.skip("the test server's backends are not processes of this machine")
        lowered = lower_priority(embedded, conn)
        after = _owner_and_nice(conn.info.backend_pid)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection goes on
    if before[0] == os.getuid() or os.getuid() == 0:  # the embedded default runs as this user (root may renice any)
        assert lowered
    if lowered:
        assert after[1] == max(before[1], RISK_NICENESS)
    else:  # a server of another user on this machine: refused by the kernel, left as it was
        assert after[1] == before[1]


def test_another_servers_backend_is_left_alone(db_url):
    elsewhere = SimpleNamespace(settings=SimpleNamespace(database_url=db_url))
    with psycopg.connect(db_url) as conn:
        before = _owner_and_nice(conn.info.backend_pid)
        assert lower_priority(elsewhere, conn) is False
        assert _owner_and_nice(conn.info.backend_pid) == before
