"""The risk views (adoption, anomalies) on real PostgreSQL: facts ingested through the real ingest (in process), then
projected by the `ledger` command.

`project` runs `ledger project` (the views keep a checkpoint of their own); `rebuild_equals_incremental` compares
each view with a rebuild from position 0 through `ledger project --check`.
"""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from ledger import projector
from ledger.projector import runner
from ledger.projector.runner import LIVE_SCHEMA
from tests.builders import link, usage

RISK_VIEWS = ("usage_daily", "adoption", "anomalies")
UTC = timezone.utc


@pytest.fixture
def project(ledger, conn):
    """`ledger project` (with extra environment), then the risk views brought up to date."""

    def run(*args: str, env: dict | None = None) -> None:
        ledger("project", *args, check_exit=0, extra_env=env)

    return run


@pytest.fixture
def rebuild_equals_incremental(ledger, conn):
    def check() -> None:
        result = json.loads(ledger("project", "--check", "--json", check_exit=0).stdout)
        assert all(result[t]["equal"] for t in RISK_VIEWS), result

    return check


@pytest.fixture
def feed(replay):
    """Ingests records of one kind through the real ingest, in process (every record appended)."""

    def ingest(kind: str, records: list[dict]) -> None:
        replay.ingest(kind, records)

    return ingest


@pytest.fixture
def anomalies_command(db_url, tmp_path):
    """`ledger anomalies ARGS` in process."""
    from typer.testing import CliRunner

    from ledger.cli.main import app

    env = {"LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "home"), "COLUMNS": "120"}

    def run(*args: str):
        return CliRunner().invoke(app, ["anomalies", *args], env=env, catch_exceptions=False)

    return run


def export_text(ledger, conn, name: str, fmt: str = "csv") -> str:
    """`ledger export NAME --format FMT` (in process while the export is not registered yet)."""
    if name in projector.EXPORTS:
        return ledger("export", name, "--format", fmt, check_exit=0).stdout
    projector.register_export(name, *EXPORT_SPECS[name])
    try:
        out = io.StringIO()
        projector.export(conn, name, fmt, out)
        return out.getvalue()
    finally:
        projector.EXPORTS.pop(name)


def export_rows(ledger, conn, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(export_text(ledger, conn, name))))


EXPORT_SPECS = {  # (table, columns keys first, keys): what the export registry gets
    "adoption": ("adoption", ("customer_id", "month", "active_days", "meters_used", "usage_units", "units_mom_pct",
                              "first_usage_at", "last_usage_at"), ("customer_id", "month")),
    "anomalies": ("anomalies", ("customer_id", "day", "meter", "units", "baseline_units", "score"),
                  ("customer_id", "day", "meter")),
}


# ------------------------------------------------------------------------------------------------ builders
class Usage:
    """Usage records with deterministic, unique event ids."""

    def __init__(self, prefix: str):
        self.prefix, self.n = prefix, 0

    def __call__(self, scid: str, meter: str, quantity: int, at: str | datetime, source: str = "product") -> dict:
        self.n += 1
        when = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return usage(event_id=f"{self.prefix}-{self.n:06d}", source=source, source_customer_id=scid, meter=meter,
                     quantity=quantity, event_time=when)

    def daily(self, scid: str, meter: str, first: date, units: list[int], pieces: int = 3) -> list[dict]:
        """Each day's units (from FIRST on) as PIECES facts spread over the day; a 0 day has no fact at all."""
        records = []
        for offset, total in enumerate(units):
            if total == 0:
                continue
            day = datetime(first.year, first.month, first.day, tzinfo=UTC) + timedelta(days=offset)
            shares = [total // pieces] * (pieces - 1) + [total - (total // pieces) * (pieces - 1)]
            for i, share in enumerate(shares):
                records.append(self(scid, meter, share, day + timedelta(hours=1 + 7 * i, minutes=13)))
        return records


def flagged(conn) -> set[tuple[str, date, str]]:
    return {tuple(r) for r in conn.execute(f"SELECT customer_id, day, meter FROM {LIVE_SCHEMA}.anomalies")}


def anomaly(conn, customer: str, day: date, meter: str = "api_calls"):
    return conn.execute(f"SELECT units, baseline_units, score FROM {LIVE_SCHEMA}.anomalies "
                        "WHERE customer_id = %s AND day = %s AND meter = %s", (customer, day, meter)).fetchone()


def expected_score(series: dict[date, int], first: date, day: date) -> tuple[int, Decimal, Decimal]:
    """The rule written out independently: median and MAD of the previous 28 days on or after FIRST (0 if none)."""
    baseline = [series.get(day - timedelta(days=k), 0) for k in range(1, 29) if day - timedelta(days=k) >= first]
    median = Decimal(str(statistics.median(baseline)))
    mad = Decimal(str(statistics.median([abs(Decimal(v) - median) for v in baseline])))
    units = series[day]
    score = (units - median) / (Decimal("1.4826") * mad + 1)
    return units, median, score.quantize(Decimal("0.01"), ROUND_HALF_UP)


def noise(seed: int, days: int, level: int = 300, spread: int = 30) -> list[int]:
    rng = random.Random(seed)
    return [max(1, round(rng.gauss(level, spread))) for _ in range(days)]


JAN1 = date(2026, 1, 1)


# ------------------------------------------------------------------------------------------------ anomalies
def test_injected_spikes_are_flagged_and_noise_is_not(feed, project, conn, rebuild_equals_incremental):
    u = Usage("spk")
    feed("identities", [link("product", "pr_noise", "cus_noise"), link("product", "pr_spike", "cus_spike")])
    spiky = noise(2, 60)
    spiky[40], spiky[50] = 3000, 2500  # 2026-02-10 and 2026-02-20
    feed("usage", u.daily("pr_noise", "api_calls", JAN1, noise(1, 60)) + u.daily("pr_spike", "api_calls", JAN1, spiky))
    project()

    assert flagged(conn) == {("cus_spike", date(2026, 2, 10), "api_calls"),
                             ("cus_spike", date(2026, 2, 20), "api_calls")}
    series = {JAN1 + timedelta(days=i): v for i, v in enumerate(spiky)}
    for day in (date(2026, 2, 10), date(2026, 2, 20)):
        assert anomaly(conn, "cus_spike", day) == expected_score(series, JAN1, day)
    rebuild_equals_incremental()


def test_both_forms_flag_the_same_days_in_a_rebuild_and_an_increment(feed, project, conn, monkeypatch):
    """The anomalies are evaluated in one window pass over the days or from each candidate's own baseline (rebuild:
    fill, increment: refill): the rows are the same."""
    from ledger.projector import engine

    u = Usage("fills")
    feed("identities", [link("product", f"pr_f{i}", f"cus_f{i}") for i in range(5)])
    edge = [1000] * 14 + [0] * 14 + [3000]  # the 28th day back decides: median 500 (not flagged), not 0 (flagged)
    spiky = noise(3, 70)
    spiky[30], spiky[45], spiky[46] = 2600, 3100, 900
    dormant = [200] * 3 + [0] * 27 + [300] + [0] * 5 + [150] * 6 + [4000]
    feed("usage", u.daily("pr_f0", "api_calls", JAN1, spiky[:40]) + u.daily("pr_f1", "api_calls", JAN1, noise(4, 70))
         + u.daily("pr_f2", "api_calls", JAN1, dormant[:20]) + u.daily("pr_f3", "fraud_checks", JAN1, spiky[::-1])
         + u.daily("pr_f4", "api_calls", JAN1, edge[:20]))
    checkpoint = runner._head_position(conn)
    feed("usage", u.daily("pr_f0", "api_calls", JAN1 + timedelta(days=40), spiky[40:])
         + u.daily("pr_f2", "api_calls", JAN1 + timedelta(days=20), dormant[20:])
         + u.daily("pr_f4", "api_calls", JAN1 + timedelta(days=20), edge[20:]))
    head = runner._head_position(conn)
    new = engine.count_new_facts(conn, checkpoint, head)
    from ledger.projector import risk

    rows, real = {}, risk.anomaly_form
    for form, share in (("dense", 0.0), ("sparse", 2.0)):
        monkeypatch.setattr(risk, "SPARSE_ANOMALY_FILL_BELOW", share)
        chosen = []
        monkeypatch.setattr(risk, "anomaly_form", lambda *a: chosen.append(real(*a)) or chosen[-1])
        for run in ("rebuild", "increment"):
            with conn.transaction(force_rollback=True):
                engine.build(conn, "forms", head if run == "rebuild" else checkpoint)
                if run == "increment":
                    engine.apply_increment(conn, "forms", checkpoint, head, new)
                    engine.apply_risk_increment(conn, "forms", checkpoint, head)
                rows[form, run] = conn.execute("SELECT * FROM forms.anomalies ORDER BY 1, 2, 3").fetchall()
        assert chosen == [form] * 3
    assert len(rows["dense", "rebuild"]) >= 4
    assert rows["sparse", "increment"] == rows["dense", "increment"] == rows["sparse", "rebuild"] == rows["dense", "rebuild"]


def test_quiet_days_count_as_zero_usage_in_the_baseline(feed, project, conn):
    u = Usage("qt")
    feed("identities", [link("product", "pr_steady", "cus_steady"), link("product", "pr_dormant", "cus_dormant")])
    # steady for 20 days, quiet for 10, back at its level: 18 days of 200 and 10 zeros, median 200
    steady = [200] * 20 + [0] * 10 + [200]
    # three days of use, 27 quiet days, then 300: the baseline is one 200 and 27 zeros (median 0, MAD 0)
    dormant = [200] * 3 + [0] * 27 + [300]
    feed("usage", u.daily("pr_steady", "api_calls", JAN1, steady) + u.daily("pr_dormant", "api_calls", JAN1, dormant))
    project()

    assert flagged(conn) == {("cus_dormant", date(2026, 1, 31), "api_calls")}
    assert anomaly(conn, "cus_dormant", date(2026, 1, 31)) == (300, Decimal(0), Decimal("300.00"))


def test_a_new_customer_needs_seven_baseline_days(feed, project, conn):
    u = Usage("new")
    feed("identities", [link("product", "pr_new", "cus_new"), link("product", "pr_newer", "cus_newer")])
    # first usage on Jan 10 (days before it are not baseline days): the spike on its 7th day has 6 baseline days
    six = [0] * 9 + [150] * 6 + [5000]
    seven = [0] * 9 + [150] * 7 + [5000]
    feed("usage", u.daily("pr_new", "api_calls", JAN1, six) + u.daily("pr_newer", "api_calls", JAN1, seven))
    project()

    assert flagged(conn) == {("cus_newer", date(2026, 1, 17), "api_calls")}
    assert anomaly(conn, "cus_newer", date(2026, 1, 17)) == (5000, Decimal(150), Decimal("4850.00"))


def test_below_min_units_is_not_flagged_and_thresholds_come_from_settings(feed, project, conn, ledger):
    u = Usage("min")
    feed("identities", [link("product", "pr_small", "cus_small")])
    small = [10] * 30 + [90] + [10] * 5  # score 80, but 90 units < 100
    feed("usage", u.daily("pr_small", "api_calls", JAN1, small))
    project()
    assert flagged(conn) == set()

    # other thresholds: the next run re-evaluates every pair (it had new facts: one unrelated fact)
    feed("usage", [u("pr_other", "api_calls", 1, "2026-03-01T00:00:00Z")])
    project(env={"LEDGER_ANOMALY_MIN_UNITS": "50"})
    assert flagged(conn) == {("cus_small", date(2026, 1, 31), "api_calls")}
    assert anomaly(conn, "cus_small", date(2026, 1, 31)) == (90, Decimal(10), Decimal("80.00"))

    # and a rebuild with a score threshold above 80 flags nothing
    project("--rebuild", env={"LEDGER_ANOMALY_MIN_UNITS": "50", "LEDGER_ANOMALY_SCORE": "80.5"})
    assert flagged(conn) == set()


def test_a_late_fact_lands_on_the_day_it_happened(feed, project, conn, ledger, rebuild_equals_incremental):
    u = Usage("late")
    feed("identities", [link("product", "pr_late", "cus_late")])
    feed("usage", u.daily("pr_late", "api_calls", JAN1, [200] * 41))
    project()
    ledger("period", "close", "2026-01", "--actor", "risk@test", check_exit=0)
    feed("usage", [u("pr_late", "api_calls", 4800, "2026-01-20T16:00:00Z")])  # after January's close
    project()

    assert flagged(conn) == {("cus_late", date(2026, 1, 20), "api_calls")}
    assert anomaly(conn, "cus_late", date(2026, 1, 20)) == (5000, Decimal(200), Decimal("4800.00"))
    # the late fact is not on-time usage: January's adoption is unchanged
    assert conn.execute(f"SELECT usage_units FROM {LIVE_SCHEMA}.adoption WHERE customer_id = 'cus_late' "
                        "AND month = '2026-01'").fetchone() == (6200,)
    rebuild_equals_incremental()


def test_usage_counts_for_the_customer_resolved_now_with_every_link(feed, project, conn, rebuild_equals_incremental):
    u = Usage("rl")
    feed("identities", [link("product", "pr_m", "cus_old")])
    series = [200] * 20 + [0] * 11
    feed("usage", u.daily("pr_m", "api_calls", JAN1, series) + [
        u("pr_m", "api_calls", 3000, "2026-01-25T08:00:00Z"), u("pr_m", "api_calls", 2800, "2026-01-25T20:00:00Z")])
    project()
    assert flagged(conn) == {("cus_old", date(2026, 1, 25), "api_calls")}

    # a merge from noon on the 25th: the day's morning stays with cus_old, its evening and nothing before moves
    feed("identities", [link("product", "pr_m", "cus_new", "2026-01-25T12:00:00Z")])
    project()
    assert flagged(conn) == {("cus_old", date(2026, 1, 25), "api_calls")}
    assert anomaly(conn, "cus_old", date(2026, 1, 25)) == (3000, Decimal(200), Decimal("2800.00"))
    assert conn.execute(f"SELECT sum(units) FROM {LIVE_SCHEMA}.usage_daily WHERE customer_id = 'cus_new'"
                        ).fetchone() == (2800,)  # cus_new's first usage day: no baseline
    rebuild_equals_incremental()


# ------------------------------------------------------------------------------------------------ adoption
ADOPTION = """\
customer_id,month,active_days,meters_used,usage_units,units_mom_pct,first_usage_at,last_usage_at
cus_a,2026-01,2,2,18,,2026-01-05T08:00:00.000000Z,2026-01-12T09:30:00.000000Z
cus_a,2026-02,0,0,0,-100.0,,
cus_a,2026-03,1,1,30,,2026-03-31T23:59:59.999999Z,2026-03-31T23:59:59.999999Z
cus_a,2026-04,2,1,50,66.7,2026-04-01T00:00:00.000000Z,2026-04-02T23:00:00.000000Z
cus_b,2026-04,1,1,15,,2026-04-01T22:30:00.000000Z,2026-04-01T22:30:00.000000Z
"""


def test_adoption_on_a_hand_checked_fixture(feed, project, conn, ledger, rebuild_equals_incremental):
    u = Usage("ad")
    feed("identities", [link("product", "pr_a", "cus_a"), link("gateway", "gw_a", "cus_a")])
    feed("usage", [
        u("pr_a", "api_calls", 10, "2026-01-05T08:00:00Z"),
        u("pr_a", "api_calls", 5, "2026-01-05T20:00:00Z"),
        u("gw_a", "fraud_checks", 3, "2026-01-12T09:30:00Z", source="gateway"),
        u("pr_a", "rules_evaluated", 0, "2026-01-20T10:00:00Z"),        # quantity 0: no active day, no meter used
        u("gw_a", "api_calls", 0, "2026-01-25T00:00:00Z", source="gateway"),
        u("pr_a", "api_calls", 0, "2026-02-03T00:00:00Z"),              # February: only a quantity-0 fact
    ])
    project()
    ledger("period", "close", "2026-01", "--actor", "risk@test", check_exit=0)
    ledger("period", "close", "2026-02", "--actor", "risk@test", check_exit=0)
    feed("usage", [
        u("pr_a", "api_calls", 100, "2026-01-07T00:00:00Z"),           # late: not on time, not in January
        u("pr_a", "api_calls", 30, "2026-03-31T23:59:59.999999Z"),
        u("pr_a", "api_calls", 45, "2026-04-01T00:00:00Z"),
        u("pr_a", "api_calls", 5, "2026-04-03T01:00:00+02:00"),        # UTC day 2026-04-02
        u("gw_a", "fraud_checks", 15, "2026-04-02T00:30:00+02:00", source="gateway"),  # UTC day 2026-04-01
        u("pr_x", "api_calls", 999, "2026-03-10T00:00:00Z"),           # resolves nowhere: no one's usage
    ])
    project()
    # gw_a moves to cus_b from the start: closed January keeps it with cus_a, open April follows the link
    feed("identities", [link("gateway", "gw_a", "cus_b", "2025-12-01T00:00:01Z")])
    project()

    assert export_text(ledger, conn, "adoption") == ADOPTION
    as_json = json.loads(export_text(ledger, conn, "adoption", "json"))
    assert as_json[1] == {"customer_id": "cus_a", "month": "2026-02", "active_days": 0, "meters_used": 0,
                          "usage_units": 0, "units_mom_pct": -100.0, "first_usage_at": None, "last_usage_at": None}
    assert_adoption_matches_on_time_units(conn)
    rebuild_equals_incremental()


def assert_adoption_matches_on_time_units(conn) -> None:
    """usage_units is customer_month_meter's on_time_units summed over meters, for every customer-month using any."""
    mismatches = conn.execute(f"""
        WITH cmm AS (SELECT customer_id, month, sum(on_time_units) AS units
                     FROM {LIVE_SCHEMA}.customer_month_meter GROUP BY 1, 2)
        SELECT * FROM {LIVE_SCHEMA}.adoption a FULL JOIN cmm c USING (customer_id, month)
        WHERE a.usage_units IS DISTINCT FROM c.units AND (a.customer_id IS NOT NULL OR c.units > 0)""").fetchall()
    assert mismatches == []


# ------------------------------------------------------------------------------------------------ the command
def test_ledger_anomalies_lists_newest_first_with_segment_and_owner(feed, project, anomalies_command):
    u = Usage("cmd")
    feed("identities", [link("product", "pr_1", "cus_1"), link("product", "pr_2", "cus_2")])
    feed("attributes", [{"customer_id": "cus_1", "effective_from": "2025-12-01T00:00:00Z", "segment": "smb",
                         "owner": "ana"},
                        {"customer_id": "cus_1", "effective_from": "2026-03-01T00:00:00Z", "owner": "ben"}])
    one, two = [200] * 40, [300] * 40
    one[20], one[35], two[30] = 4000, 3000, 9000
    feed("usage", u.daily("pr_1", "api_calls", JAN1, one) + u.daily("pr_2", "fraud_checks", JAN1, two))
    project()

    result = anomalies_command()
    assert result.exit_code == 0, result.output
    store, *out = result.stdout.splitlines()
    assert store.startswith("store: ") and store.endswith(" facts")
    assert out[0] == "usage spikes against each customer's own 28-day baseline (flagged: score >= 6, units >= 100)"
    assert out[1].split() == ["day", "customer_id", "segment", "owner", "meter", "units", "baseline_units", "score"]
    body = [row.split() for row in out[3:-1]]
    assert [r[:2] for r in body] == [["2026-02-05", "cus_1"], ["2026-01-31", "cus_2"], ["2026-01-21", "cus_1"]]
    assert body[0] == ["2026-02-05", "cus_1", "smb", "ben", "api_calls", "3,000", "200", "2800.00"]
    assert out[3].index("3,000") + len("3,000") == out[1].index("units") + len("units")  # numbers right-aligned
    assert body[1][2:4] == ["fraud_checks", "9,000"]  # cus_2 has no attributes: empty segment and owner
    assert out[-1] == "3 anomalies"

    since = json.loads(anomalies_command("--since", "2026-01-31", "--json").stdout)
    assert [(r["day"], r["customer_id"]) for r in since] == [("2026-02-05", "cus_1"), ("2026-01-31", "cus_2")]
    assert since[0] == {"day": "2026-02-05", "customer_id": "cus_1", "segment": "smb", "owner": "ben",
                        "meter": "api_calls", "units": 3000, "baseline_units": 200, "score": 2800.0}
    bad = anomalies_command("--since", "31/01/2026")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr


def test_anomalies_export_lists_only_flagged_rows_sorted_by_keys(feed, project, conn, ledger):
    u = Usage("exp")
    feed("identities", [link("product", "pr_1", "cus_1"), link("product", "pr_2", "cus_2")])
    one, two = [200] * 40, [300] * 40
    one[35], one[20], two[30] = 3000, 4000, 9000
    feed("usage", u.daily("pr_1", "api_calls", JAN1, one) + u.daily("pr_2", "fraud_checks", JAN1, two))
    project()
    rows = export_rows(ledger, conn, "anomalies")
    assert [(r["customer_id"], r["day"], r["meter"], r["units"], r["baseline_units"], r["score"]) for r in rows] == [
        ("cus_1", "2026-01-21", "api_calls", "4000", "200", "3800.00"),
        ("cus_1", "2026-02-05", "api_calls", "3000", "200", "2800.00"),
        ("cus_2", "2026-01-31", "fraud_checks", "9000", "300", "8700.00"),
    ]


# ------------------------------------------------------------------------------------------------ a busier history
@pytest.mark.slow  # thousands of facts over several runs
def test_rebuild_equals_incremental_over_a_busy_history(feed, project, conn, ledger, rebuild_equals_incremental):
    """Several runs with new usage, late usage after closes, mid-day merges, quantity-0 facts and unknown ids."""
    rng = random.Random(7)
    u = Usage("busy")
    feed("identities", [link("product", f"pr_{i}", f"cus_{i % 6}") for i in range(8)])
    feed("attributes", [{"customer_id": f"cus_{i}", "effective_from": "2025-12-01T00:00:00Z",
                         "segment": "smb", "owner": "ana"} for i in range(6)])

    def batch(start: date, days: int, n: int) -> list[dict]:
        records = []
        for _ in range(n):
            at = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(
                seconds=rng.randrange(days * 86400))
            spike = rng.random() < 0.01
            quantity = 0 if rng.random() < 0.05 else (rng.randrange(2000, 4000) if spike else rng.randrange(1, 80))
            records.append(u(f"pr_{rng.randrange(9)}", rng.choice(("api_calls", "fraud_checks")), quantity, at))
        return records

    feed("usage", batch(JAN1, 31, 1500))
    project()
    feed("usage", batch(date(2026, 2, 1), 14, 700))
    ledger("period", "close", "2026-01", "--actor", "risk@test", check_exit=0)
    feed("usage", batch(date(2026, 1, 10), 20, 60) + batch(date(2026, 2, 15), 14, 700))  # late January usage
    project()
    feed("identities", [link("product", "pr_3", "cus_5", "2026-02-10T12:34:56Z"),   # a merge mid-day
                        link("product", "pr_8", "cus_0", "2026-01-01T00:00:00Z"),   # an unknown id now known
                        link("product", "pr_1", "cus_2", "2026-01-05T00:00:00Z")])  # back into closed January
    project()
    ledger("period", "close", "2026-02", "--actor", "risk@test", check_exit=0)
    feed("usage", batch(date(2026, 2, 20), 20, 400))
    feed("identities", [link("product", "pr_4", "cus_1", "2026-02-25T06:00:00Z")])  # after February's close
    project()

    rebuild_equals_incremental()
    assert_adoption_matches_on_time_units(conn)
    assert conn.execute(f"SELECT count(*) FROM {LIVE_SCHEMA}.anomalies").fetchone()[0] > 0


def test_the_day_grain_hashed_in_one_pass_equals_the_sorted_partitions(feed, conn, ledger, monkeypatch):
    """A rebuild fills usage_daily sorted from the facts, one month partition at a time, or, where the facts far
    outnumber the possible days, slices the partitions from one hash of every fact: the same partitions and rows
    (late facts, a relink mid-day, usage after the newest fact's month), and the same anomalies from them."""
    from ledger.projector import engine, risk

    rng = random.Random(11)
    u = Usage("grain")
    feed("identities", [link("product", f"pr_g{i}", f"cus_g{i % 3}") for i in range(5)])
    records = []
    for _ in range(4000):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(70 * 86400))
        records.append(u(f"pr_g{rng.randrange(6)}", rng.choice(("api_calls", "fraud_checks")),
                         rng.choice((0, rng.randrange(1, 90), rng.randrange(2000, 5000) if rng.random() < 0.01 else 7)),
                         at))
    feed("usage", records)
    ledger("period", "close", "2026-01", "--actor", "risk@test", check_exit=0)
    feed("identities", [link("product", "pr_g1", "cus_g2", "2026-02-03T17:45:00Z")])
    feed("usage", [u("pr_g0", "api_calls", 40, "2026-01-20T08:00:00Z"),   # late, for closed January
                   u("pr_g2", "api_calls", 9, "2026-01-31T23:59:59.999999Z")])  # the newest fact: January's
    conn.execute("ANALYZE usage_facts")
    head = runner._head_position(conn)
    built, chosen, real, default = {}, [], risk.day_grain_by_hash, risk.HASHED_DAY_GRAIN_FROM
    monkeypatch.setattr(risk, "day_grain_by_hash", lambda *a: chosen.append(real(*a)) or chosen[-1])
    for way, threshold in (("hashed", 0.0), ("sorted", float("inf"))):
        monkeypatch.setattr(risk, "HASHED_DAY_GRAIN_FROM", threshold)
        with conn.transaction(force_rollback=True):
            engine.build(conn, "grain", head)
            parts = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                 " WHERE i.inhparent = 'grain.usage_daily'::regclass ORDER BY 1").fetchall()
            built[way] = (parts, conn.execute("SELECT * FROM grain.usage_daily ORDER BY 1, 2, 3").fetchall(),
                          conn.execute("SELECT * FROM grain.anomalies ORDER BY 1, 2, 3").fetchall())
    assert chosen == [True, False]
    assert built["hashed"] == built["sorted"]
    parts, days, anomalies = built["hashed"]
    assert [p for (p,) in parts] == ["usage_daily_history", "usage_daily_p202601", "usage_daily_p202602",
                                     "usage_daily_p202603"]
    assert len(days) > 300 and anomalies

    monkeypatch.setattr(risk, "HASHED_DAY_GRAIN_FROM", default)
    with conn.transaction(force_rollback=True):  # 4,000 facts over 3 customers, 2 meters, 70 days: hashed
        engine.build(conn, "grain", head)
    assert chosen[-1] is True


# ------------------------------------------------------------------------------------------------ increments
def series_of(*parts: tuple[int, list[int]]) -> dict[date, int]:
    """{day: units} from (first day offset from JAN1, daily units) parts, summed where they overlap; 0s left out."""
    out: dict[date, int] = {}
    for first, units in parts:
        for i, v in enumerate(units):
            day = JAN1 + timedelta(days=first + i)
            out[day] = out.get(day, 0) + v
    return {d: v for d, v in out.items() if v}


def test_an_increment_rescores_the_days_whose_baseline_it_changes(feed, project, conn, rebuild_equals_incremental):
    u = Usage("inc")
    feed("identities", [link("product", "pr_inc", "cus_inc")])
    # ten days of 200, twenty quiet ones, then 300 on Jan 31: a baseline of 8 x 200 and 20 zeros (median 0)
    first = [200] * 10 + [0] * 20 + [300]
    feed("usage", u.daily("pr_inc", "api_calls", JAN1, first))
    project()
    assert flagged(conn) == {("cus_inc", date(2026, 1, 31), "api_calls")}
    assert anomaly(conn, "cus_inc", date(2026, 1, 31)) == (300, Decimal(0), Decimal("300.00"))

    # the quiet days filled in, with a spike 20 days after the first usage: Jan 31's baseline is now 200s
    later = [200] * 16
    later[10] = 5000  # Jan 21
    feed("usage", u.daily("pr_inc", "api_calls", JAN1 + timedelta(days=10), later))
    project()
    series = series_of((0, first), (10, later))
    assert flagged(conn) == {("cus_inc", date(2026, 1, 21), "api_calls"), ("cus_inc", date(2026, 1, 31), "api_calls")}
    for day in (date(2026, 1, 21), date(2026, 1, 31)):
        assert anomaly(conn, "cus_inc", day) == expected_score(series, JAN1, day)
    assert anomaly(conn, "cus_inc", date(2026, 1, 31)) == (300, Decimal(200), Decimal("100.00"))
    rebuild_equals_incremental()


def test_an_earlier_first_usage_day_rescores_the_28_days_after_the_old_one(feed, project, conn,
                                                                           rebuild_equals_incremental):
    u = Usage("first")
    feed("identities", [link("product", "pr_first", "cus_first")])
    # first usage on Jan 11, every other day; spikes on Jan 21 (10 baseline days) and Feb 6 (26 baseline days: 13 zeros
    # and 13 with usage, median 100, MAD 100, score 6.03), far from the day the increment changes
    units = [200 if i % 2 == 0 else 0 for i in range(31)]
    units[10], units[26] = 1000, 1000
    feed("usage", u.daily("pr_first", "api_calls", JAN1 + timedelta(days=10), units))
    project()
    before = anomaly(conn, "cus_first", date(2026, 2, 6))

    # one unit on Jan 1: every day up to Feb 8 (Jan 11 + 28) gets a longer, zero-filled baseline (Feb 6: median 0)
    feed("usage", [u("pr_first", "api_calls", 1, "2026-01-01T12:00:00Z")])
    project()
    series = series_of((10, units), (0, [1]))
    for day in (date(2026, 1, 21), date(2026, 2, 6)):
        assert anomaly(conn, "cus_first", day) == expected_score(series, JAN1, day)
    assert before == (1000, Decimal(100), Decimal("6.03"))
    assert anomaly(conn, "cus_first", date(2026, 2, 6)) == (1000, Decimal(0), Decimal("1000.00"))
    rebuild_equals_incremental()


def test_a_new_link_moves_a_source_ids_days_and_rescores_both_customers(feed, project, conn,
                                                                        rebuild_equals_incremental):
    u = Usage("mv")
    feed("identities", [link("product", "pr_a1", "cus_a"), link("product", "pr_a2", "cus_a"),
                        link("product", "pr_b", "cus_b")])
    a1, a2, b = [200] * 40, [200] * 40, [100] * 40
    a1[35], b[38] = 2000, 900  # Feb 5 for cus_a (2200 against 400), Feb 8 for cus_b (900 against 100)
    feed("usage", u.daily("pr_a1", "api_calls", JAN1, a1) + u.daily("pr_a2", "api_calls", JAN1, a2)
         + u.daily("pr_b", "api_calls", JAN1, b))
    project()
    assert anomaly(conn, "cus_a", date(2026, 2, 5)) == (2200, Decimal(400), Decimal("1800.00"))
    assert anomaly(conn, "cus_b", date(2026, 2, 8)) == (900, Decimal(100), Decimal("800.00"))

    # pr_a2 moves to cus_b from (almost) the start: its days leave cus_a's series and join cus_b's
    feed("identities", [link("product", "pr_a2", "cus_b", "2025-12-01T00:00:01Z")])
    project()
    assert flagged(conn) == {("cus_a", date(2026, 2, 5), "api_calls"), ("cus_b", date(2026, 2, 8), "api_calls")}
    assert anomaly(conn, "cus_a", date(2026, 2, 5)) == (2000, Decimal(200), Decimal("1800.00"))
    assert anomaly(conn, "cus_b", date(2026, 2, 8)) == (1100, Decimal(300), Decimal("800.00"))
    totals = dict(conn.execute(f"SELECT customer_id, sum(units) FROM {LIVE_SCHEMA}.usage_daily GROUP BY 1"))
    assert totals == {"cus_a": sum(a1), "cus_b": sum(a2) + sum(b)}
    rebuild_equals_incremental()


def test_project_reports_the_risk_views_catching_up_on_their_own(feed, ledger):
    u = Usage("report")
    feed("identities", [link("product", "pr_rep", "cus_rep")])
    feed("usage", u.daily("pr_rep", "api_calls", JAN1, [10, 20]))
    built = json.loads(ledger("project", "--json", check_exit=0).stdout)
    assert built["mode"] == "rebuild"
    feed("usage", u.daily("pr_rep", "api_calls", JAN1 + timedelta(days=2), [30]))
    finance = json.loads(ledger("project", "--finance-only", "--json", check_exit=0).stdout)
    assert (finance["mode"], finance["risk_from_position"]) == ("incremental", None)  # left for a later run

    caught_up = json.loads(ledger("project", "--json", check_exit=0).stdout)
    # nothing new for Finance; the risk views came from their own checkpoint, where the build left them
    assert (caught_up["mode"], caught_up["facts_applied"]) == ("noop", 0)
    assert caught_up["risk_from_position"] == built["to_position"] < caught_up["to_position"]
    assert "risk and sales views" not in ledger("project", check_exit=0).stdout  # all current: nothing to say


def test_a_relink_that_takes_a_customers_only_usage_removes_its_month_meter_rows(feed, project, conn, ledger):
    """Finance's scoped refill is applied as a difference: a key left without facts must be deleted, not kept."""
    u = Usage("gone")
    feed("identities", [link("product", "pr_g", "cus_before")])
    feed("usage", [u("pr_g", "api_calls", 5, "2026-01-10T08:00:00Z"),
                   u("pr_g", "fraud_checks", 2, "2026-01-11T08:00:00Z")])
    project()

    def meters(customer: str) -> set[tuple[str, str, int]]:
        return set(conn.execute(f"SELECT month, meter, on_time_units FROM {LIVE_SCHEMA}.customer_month_meter"
                                " WHERE customer_id = %s", (customer,)).fetchall())

    assert meters("cus_before") == {("2026-01", "api_calls", 5), ("2026-01", "fraud_checks", 2)}
    # January is open: its on-time facts resolve with every link known now, all of them to cus_after
    feed("identities", [link("product", "pr_g", "cus_after", "2025-12-15T00:00:00Z")])
    project()
    assert meters("cus_before") == set()
    assert meters("cus_after") == {("2026-01", "api_calls", 5), ("2026-01", "fraud_checks", 2)}
    result = json.loads(ledger("project", "--check", "--json", check_exit=0).stdout)
    assert all(r["equal"] for r in result.values()), result


def test_the_risk_views_read_finance_as_of_one_commit_while_finance_goes_on(feed, db_url, conn, ledger,
                                                                           rebuild_equals_incremental):
    """A Risk run holds its own lock and a REPEATABLE READ snapshot: Finance applies newer facts (a relink among
    them) beside it without waiting, the views catch up to the Finance checkpoint their snapshot saw, and a rebuild
    waits for the Risk run to end."""
    import psycopg

    from ledger.settings import Settings

    u = Usage("snap")
    feed("identities", [link("product", "pr_s1", "cus_s"), link("product", "pr_s2", "cus_t")])
    feed("usage", u.daily("pr_s1", "api_calls", JAN1, [100] * 20) + u.daily("pr_s2", "api_calls", JAN1, [50] * 20))
    ledger("project", check_exit=0)
    feed("usage", u.daily("pr_s1", "api_calls", JAN1 + timedelta(days=20), [120] * 5))
    ledger("project", "--finance-only", check_exit=0)
    settings = Settings.from_env()

    with psycopg.connect(db_url, autocommit=True) as risk, psycopg.connect(db_url, autocommit=True) as finance:
        finance.execute("SET lock_timeout = '20s'")
        with runner._risk_locked(risk):
            seen = runner._checkpoint(risk, LIVE_SCHEMA)  # the snapshot: Finance's checkpoint now
            # Finance goes on while the Risk lock is held: pr_s2 moves to cus_s, and more usage arrives
            feed("identities", [link("product", "pr_s2", "cus_s", "2026-01-01T00:00:00Z")])
            feed("usage", u.daily("pr_s2", "api_calls", JAN1 + timedelta(days=20), [70] * 5))
            moved = projector.project(finance, settings, risk=False)
            assert moved.mode == "incremental" and moved.to_position > seen
            assert runner._checkpoint(risk, LIVE_SCHEMA) == seen  # not in this snapshot
            assert runner._catch_up_risk(risk, seen, settings) is not None
            totals = dict(risk.execute(f"SELECT customer_id, sum(units) FROM {LIVE_SCHEMA}.usage_daily GROUP BY 1"))
            assert totals == {"cus_s": 100 * 20 + 120 * 5, "cus_t": 50 * 20}  # as of the snapshot's links

            rebuilt = []

            def rebuild() -> None:
                with psycopg.connect(db_url, autocommit=True) as other:
                    rebuilt.append(projector.rebuild(other, settings))

            waiting = threading.Thread(target=rebuild)
            waiting.start()
            waiting.join(timeout=1.5)
            assert waiting.is_alive()  # a rebuild takes the Risk lock too: it waits for this run
        waiting.join(timeout=120)
        assert rebuilt and rebuilt[0].mode == "rebuild"

    ledger("project", check_exit=0)
    totals = dict(conn.execute(f"SELECT customer_id, sum(units) FROM {LIVE_SCHEMA}.usage_daily GROUP BY 1"))
    assert totals == {"cus_s": 100 * 20 + 120 * 5 + 50 * 20 + 70 * 5}
    rebuild_equals_incremental()
