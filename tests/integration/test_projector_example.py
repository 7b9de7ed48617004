"""The basic example scenario through the projector: every export equals Finance's expected CSV.

The scenario's facts come through the real ingest and commands (tests/scenarios.py), into the migrated store.
"""

from __future__ import annotations

import io
import json

import psycopg
import pytest

from ledger import projector
from tests.scenarios import example_steps, expected_csv, expected_steps

EXPORTS = ["customer-month", "customer-month-meter", "late-adjustments", "dim-customer", "exceptions"]


def _without_positions(name: str, text: str) -> list[str]:
    """Positions are opaque: comparisons across stores ignore first_position and last_position."""
    lines = text.splitlines()
    if name != "late-adjustments":
        return lines
    return [",".join(line.split(",")[:7]) for line in lines]


def _export(conn: psycopg.Connection, name: str, fmt: str = "csv") -> str:
    out = io.StringIO()
    projector.export(conn, name, fmt, out)
    return out.getvalue()


@pytest.mark.parametrize("name", EXPORTS)
def test_rebuild_reproduces_expected_export(example_db_url, name):
    with psycopg.connect(example_db_url) as conn:
        projector.rebuild(conn)
        got = _export(conn, name)
    assert _without_positions(name, got) == _without_positions(name, expected_csv(name))


def test_incremental_step_by_step_reproduces_every_export_and_equals_rebuild(replay):
    modes = []
    with psycopg.connect(replay.database.conninfo) as projecting:
        for step, want in zip(example_steps(), expected_steps(), strict=True):
            outcome = replay.step(step)
            assert (outcome.exit, outcome.appended) == (want["exit"], want.get("appended", 0)), step
            modes.append(projector.project(projecting).mode)
        assert modes[0] == "rebuild" and "incremental" in modes
        for name in EXPORTS:
            got = _export(projecting, name)
            assert _without_positions(name, got) == _without_positions(name, expected_csv(name)), name
        report = projector.check(projecting)
        assert report and all(r["equal"] for r in report.values()), report
        assert projector.project(projecting).mode == "noop"


def test_json_export_has_the_csv_rows_with_numbers_and_nulls(example_db_url):
    with psycopg.connect(example_db_url) as conn:
        projector.project(conn)
        rows = json.loads(_export(conn, "customer-month-meter", "json"))
        csv_lines = _export(conn, "customer-month-meter").splitlines()
    assert len(rows) == len(csv_lines) - 1
    assert list(rows[0]) == csv_lines[0].split(",")
    unpriced = next(r for r in rows if r["included_units"] is None)
    assert unpriced["overage_units"] is None and isinstance(unpriced["on_time_units"], int)


def test_dim_customer_json_timestamps_are_utc_microseconds(example_db_url):
    with psycopg.connect(example_db_url) as conn:
        projector.project(conn)
        rows = json.loads(_export(conn, "dim-customer", "json"))
    assert rows[0]["valid_from"] == "2025-12-01T00:00:00.000000Z"
    assert any(r["valid_to"] is None for r in rows)


def test_unknown_export_is_refused(example_db_url):
    from ledger.errors import NotFoundError

    with psycopg.connect(example_db_url) as conn, pytest.raises(NotFoundError):
        _export(conn, "no-such-export")
