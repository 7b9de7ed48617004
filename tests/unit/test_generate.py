"""The scenario generator: deterministic by seed, every promised ingredient present, files the parsers accept."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledger.commands.ingest import parser_for
from ledger.demo.bulk import usage_only, usage_only_reference
from ledger.demo.generate import ScenarioParams, micros, scenario, stamp, stamp_us
from ledger.domain.time import month_of, parse_timestamp
from ledger.ingest.records import RecordContext
from ledger.ingest.usage import validate_usage
from ledger.store.appender import Candidate, Rejection
from ledger.store.usage import UsageRow

SMALL = ScenarioParams(customers=40, months=3, events_per_customer_month=15, seed=11)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return scenario(tmp_path_factory.mktemp("scenario"), SMALL)


def parse(path: Path, kind: str, fmt: str) -> list[Candidate | Rejection]:
    ctx = RecordContext(str(path), datetime(2026, 11, 23, tzinfo=timezone.utc))
    with open(path, "rb") as handle:
        lines = [(n, line.rstrip(b"\r\n")) for n, line in enumerate(handle, start=1)]
    return list(parser_for(kind, fmt, ctx)(lines))


def ingests(s, kind: str | None = None) -> list[dict]:
    return [st for st in s.steps if st["op"] == "ingest" and (kind is None or st["kind"] == kind)]


def test_the_same_seed_writes_the_same_bytes_and_steps(generated, tmp_path):
    again = scenario(tmp_path / "again", SMALL)
    assert again.steps == generated.steps
    for stats in generated.files:
        assert (tmp_path / "again" / stats.file).read_bytes() == (generated.directory / stats.file).read_bytes()
    scenario(tmp_path / "other", ScenarioParams(**{**SMALL.__dict__, "seed": 12}))
    assert (tmp_path / "other" / "usage_2026-01_product.ndjson").read_bytes() != \
        (generated.directory / "usage_2026-01_product.ndjson").read_bytes()


def test_every_file_parses_as_its_generator_says(generated):
    """The real parsers accept exactly the events, duplicates and conflicts, and reject exactly the malformed."""
    by_name = {f.file: f for f in generated.files}
    for step in ingests(generated):
        stats = by_name[step["file"]]
        results = parse(generated.directory / step["file"], step["kind"], step["format"])
        rejected = [r for r in results if isinstance(r, Rejection)]
        assert len(rejected) == stats.malformed, (step["file"], [r.reason for r in rejected])
        accepted = [r for r in results if isinstance(r, (Candidate, UsageRow))]
        assert len(accepted) == stats.events + stats.duplicates + stats.conflicts, step["file"]


def test_ndjson_lines_are_json_and_csv_files_are_rectangular(generated):
    for step in ingests(generated):
        path = generated.directory / step["file"]
        if step["format"] == "csv":
            rows = list(csv.reader(path.open()))
            widths = Counter(len(r) for r in rows)
            assert widths.most_common(1)[0][0] == len(rows[0])
        else:
            decoded = 0
            for text in path.read_text().splitlines():
                try:
                    json.loads(text)
                    decoded += 1
                except ValueError:
                    pass
            assert decoded >= len(path.read_text().splitlines()) - by_file(generated, step["file"]).malformed


def by_file(s, name):
    return next(f for f in s.files if f.file == name)


def test_usage_comes_as_ndjson_csv_and_cloudevents_from_several_sources(generated):
    formats = {st["format"] for st in ingests(generated, "usage")}
    assert formats == {"ndjson", "csv", "cloudevents"}
    sources = set()
    for step in ingests(generated, "usage"):
        for r in parse(generated.directory / step["file"], "usage", step["format"]):
            if isinstance(r, (Candidate, UsageRow)):
                sources.add(r.fact_payload()["source"])
    assert {"billing", "product", "gateway"} <= sources


def test_usage_files_hold_exact_duplicate_lines_and_malformed_lines(generated):
    seen: set[str] = set()
    for step in ingests(generated, "usage"):
        stats = by_file(generated, step["file"])
        lines = (generated.directory / step["file"]).read_text().splitlines()
        repeated = sum(n - 1 for n in Counter(lines).values() if n > 1)
        resent = len(set(lines) & seen)  # late files resend lines of earlier files
        if "_late_" in step["file"]:
            assert resent >= 1 and stats.conflicts >= 1
        else:
            assert stats.malformed >= 1 and repeated >= 1
        seen.update(lines)
    assert generated.totals()["duplicates"] > 0 and generated.totals()["malformed"] > 0


def test_late_usage_is_ingested_after_its_months_close(generated):
    order = {id(st): i for i, st in enumerate(generated.steps)}
    closes = {st["month"]: order[id(st)] for st in generated.steps if st["op"] == "close"}
    late = [st for st in ingests(generated, "usage") if "_late_" in st["file"]]
    assert len(late) == SMALL.months
    for step in late:
        month = step["file"].split("_late_")[1].split(".")[0]
        assert order[id(step)] > closes[month]
        times = {r.fact_payload()["event_time"][:7] for r in parse(generated.directory / step["file"], "usage", "ndjson")
                 if isinstance(r, (Candidate, UsageRow))}
        assert month in times


def test_closes_come_in_month_order_after_each_month_ended(generated):
    closes = [st for st in generated.steps if st["op"] == "close"]
    assert [c["month"] for c in closes] == ["2026-01", "2026-02", "2026-03"]
    for close in closes:
        assert month_of(parse_timestamp(close["at"])) > close["month"]
    refused = [st for st in generated.steps if st["op"] == "close_refused"]
    assert refused and month_of(parse_timestamp(refused[0]["at"])) == refused[0]["month"]
    ats = [parse_timestamp(st["at"]) for st in generated.steps]
    assert ats == sorted(ats)


def test_a_later_link_moves_a_source_id_to_another_customer(generated):
    links: dict[tuple, list] = {}
    for step in ingests(generated, "identities"):
        for r in parse(generated.directory / step["file"], "identities", step["format"]):
            if isinstance(r, (Candidate, UsageRow)):
                p = r.fact_payload()
                links.setdefault((p["source"], p["source_customer_id"]), []).append(
                    (p["effective_from"], p["customer_id"]))
    merge = generated.highlights["merge"]
    moved = sorted(links[("product", merge["source_customer_id"])])
    assert [c for _, c in moved] == [merge["from_customer"], merge["to_customer"]]
    assert len({c for (s, _), v in links.items() for _, c in v}) == SMALL.customers  # many-to-one: fewer customers
    assert sum(len(v) for v in links.values()) > SMALL.customers


def test_a_back_dated_attribute_change_arrives_after_closes_and_a_plan_changes_mid_month(generated):
    backdated = generated.highlights["backdated"]
    step = next(st for st in ingests(generated, "attributes") if "backdated" in st["file"])
    closed_before = [st["month"] for st in generated.steps[:generated.steps.index(step)] if st["op"] == "close"]
    assert month_of(parse_timestamp(backdated["effective_from"])) in closed_before
    records = [r.fact_payload() for r in parse(generated.directory / step["file"], "attributes", "ndjson")]
    assert any(r["customer_id"] == backdated["customer_id"] and r["attributes"]["segment"] == backdated["segment"]
               for r in records)
    assert any(r["attributes"] == {"region": None} for r in records)  # a cleared attribute
    change = generated.highlights["plan_changes"][0]
    assert parse_timestamp(change["effective_from"]).day == 15


def test_prices_change_for_a_plan_in_a_later_month(generated):
    prices = [r.fact_payload() for st in ingests(generated, "prices")
              for r in parse(generated.directory / st["file"], "prices", "ndjson")]
    assert {p["plan"] for p in prices} == {"starter", "growth", "enterprise"}
    growth = sorted(p["effective_month"] for p in prices if p["plan"] == "growth")
    assert len(growth) == 2 and growth[1] > "2026-01"
    assert {m for p in prices for m in p["meters"]} == {"api_calls", "fraud_checks", "rules_evaluated"}


def test_invoices_disagree_a_little_and_one_is_in_a_foreign_currency(generated):
    totals_off, foreign = 0, 0
    for step in ingests(generated, "invoices"):
        for r in parse(generated.directory / step["file"], "invoices", "ndjson"):
            if isinstance(r, Rejection):
                foreign += "currency" in r.reason
            elif r.fact_payload()["total_cents"] != sum(line["amount_cents"] for line in r.fact_payload()["lines"]):
                totals_off += 1
    assert totals_off >= SMALL.months and foreign == 1
    assert all(v["billed_vs_metered"] for v in generated.highlights["invoices"].values())


def test_credits_include_refusals_and_an_idempotent_repeat(generated):
    credits = [st for st in generated.steps if st["op"] == "credit"]
    assert {c["expect"] for c in credits} == {"issued", "refused", "repeat"}
    repeat = next(c for c in credits if c["expect"] == "repeat")
    first = next(c for c in credits if c["idempotency_key"] == repeat["idempotency_key"])
    assert {k: v for k, v in first.items() if k not in ("at", "expect")} == \
        {k: v for k, v in repeat.items() if k not in ("at", "expect")}
    for c in credits:
        assert c["actor"] and c["reason"] in ("late_usage", "service_issue", "goodwill", "billing_error", "other")


def test_steps_json_is_written_beside_the_files(generated):
    assert json.loads((generated.directory / "steps.json").read_text()) == generated.steps


def test_stamps_write_one_instant_in_several_zones():
    moment = datetime(2026, 1, 31, 23, 30, 0, 123456, tzinfo=timezone.utc)
    for offset in (0, 60, -480, 330, -300):
        assert parse_timestamp(stamp_us(micros(moment), offset)) == moment
        assert parse_timestamp(stamp(moment, offset)) == moment
    assert stamp_us(micros(moment)) == "2026-01-31T23:30:00.123456Z"


def test_usage_only_writes_valid_events_and_exact_duplicates(tmp_path):
    result = usage_only(tmp_path / "u.ndjson", 20_000, 50, ["2026-01", "2026-02"], dup_share=0.01, seed=3)
    lines = (tmp_path / "u.ndjson").read_text().splitlines()
    assert len(lines) == result.lines == 20_000 + result.duplicates and result.duplicates == 200
    counts = Counter(lines)
    assert len(counts) == 20_000  # every event once, plus repeats of identical lines
    months = set()
    for text in list(counts)[:2_000]:
        payload, row = validate_usage(json.loads(text))
        months.add(month_of(row[5]))
    assert months == {"2026-01", "2026-02"}
    assert usage_only(tmp_path / "v.ndjson", 20_000, 50, ["2026-01", "2026-02"], dup_share=0.01, seed=3).lines == \
        result.lines and (tmp_path / "v.ndjson").read_bytes() == (tmp_path / "u.ndjson").read_bytes()


def test_usage_only_reference_links_every_source_id_of_usage_only(tmp_path):
    paths = usage_only_reference(tmp_path, 30, 2, seed=1)
    usage_only(tmp_path / "u.ndjson", 500, 30, 2, seed=1)
    linked = {(r.fact_payload()["source"], r.fact_payload()["source_customer_id"])
              for r in parse(paths["identities"], "identities", "ndjson")}
    used = {(json.loads(t)["source"], json.loads(t)["source_customer_id"])
            for t in (tmp_path / "u.ndjson").read_text().splitlines()}
    assert used <= linked
    for kind, fmt in (("prices", "ndjson"), ("attributes", "csv"), ("invoices", "ndjson")):
        assert all(isinstance(r, (Candidate, UsageRow)) for r in parse(paths[kind], kind, fmt)), kind
    assert sum(1 for _ in paths["invoices"].open()) == 60


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        scenario("/nonexistent", ScenarioParams(months=2))
    with pytest.raises(ValueError):
        scenario("/nonexistent", ScenarioParams(source_systems=1))
