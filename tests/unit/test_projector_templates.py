"""The projection SQL files and their rendering, without a database."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from ledger.projector import engine, exports as export
from ledger.projector.templates import FULL, SCOPED, BatchMonths, CutoffCase, Target, _projection_dir, sections

OWN = (*engine.TABLES, "usage_group_stage", "usage_fact_stage", "usage_fact_resolved")


@pytest.mark.parametrize("name", OWN)
def test_every_projection_file_states_grain_key_and_facts_first(name):
    head = (_projection_dir() / f"{name}.sql").read_text().splitlines()
    assert head[0].startswith("-- grain: one row per") and "key:" in " ".join(head[:3])
    assert any(line.startswith("-- facts read:") for line in head[:4])


@pytest.mark.parametrize("name", OWN)
def test_every_section_renders_full_and_scoped(name):
    target = Target("ledger_proj", head=42, checkpoint=7)
    for section, text in sections(name).items():
        cutoff = {"cutoff": CutoffCase([(dt.datetime(2026, 1, 1), 10)]), "anomaly_score": 6.0,
                  "anomaly_min_units": 100, "part": "p202605", "since": "'-infinity'::timestamptz",
                  "until": "'2026-06-01'::timestamptz", "from": "MINVALUE", "to": "'2026-06-01'",
                  "day_since": "'-infinity'::date", "day_until": "'2026-06-01'::date",
                  "month": dt.date(2026, 7, 1), "month_end": dt.date(2026, 8, 1),
                  "batch_months": BatchMonths(probing=False)}
        for scopes in (FULL, SCOPED):
            rendered = target.render(text, {**scopes, **cutoff})
            assert "{" not in rendered and "}" not in rendered, (name, section)
            assert '"ledger_proj".' in rendered or "pg_temp." in rendered


def test_tables_have_create_and_fill_sections():
    for name in engine.TABLES:
        names = set(sections(name))
        assert "create" in names and names & {"fill", "fill_rebuild", "fill_dense"}, name


def test_every_risk_step_names_a_section():
    for name, section in (*engine.RISK_STEPS_BUILD, *engine.RISK_STEPS_INCREMENT):
        # the anomalies' fill and refill are each one of two sections, picked by the candidates' share
        wanted = {f"{section}_sparse", f"{section}_dense"} if (name, section) in engine.TWO_FORMS else {section}
        assert wanted <= set(sections(name)), (name, section)


def test_scope_predicates():
    assert FULL["cm"]["x.customer_id, x.month"] == "TRUE"
    assert SCOPED["cm"]["x.customer_id, x.month"] == (
        "(x.customer_id, x.month) IN (SELECT customer_id, month FROM pg_temp.scope_cm)")
    assert SCOPED["inv"]["i.invoice_id"] == "(i.invoice_id) IN (SELECT invoice_id FROM pg_temp.scope_inv)"


def test_an_addition_filters_by_its_batch_months_unless_it_probes():
    """Read whole (hash joins), a table is filtered to the batch's months; probed per key, nothing filters by month
    alone, which the planner could take as the index condition and read the whole month once per key."""
    assert BatchMonths(probing=False)["c.month"] == (
        "c.month = ANY (ARRAY(SELECT DISTINCT month FROM pg_temp.usage_batch_stage))")
    assert BatchMonths(probing=True)["c.month"] == "TRUE"
    target = Target("ledger_proj", head=42, checkpoint=7)
    text = sections("customer_month_meter")["add_on_time"]
    assert target.render(text, {**SCOPED, "batch_months": BatchMonths(False)}).count("month = ANY (ARRAY(") == 2
    assert "= ANY" not in target.render(text, {**SCOPED, "batch_months": BatchMonths(True)})


def test_cutoff_case_maps_closed_months_and_leaves_the_rest_open():
    top = "9223372036854775807"
    assert CutoffCase([])["t"] == top
    case = CutoffCase([(dt.datetime(2026, 1, 1), 219), (dt.datetime(2025, 12, 1), 100)])["t"]
    assert case.startswith(f"(CASE WHEN t >= '2026-02-01 00:00:00+00'::timestamptz THEN {top}")
    assert "WHEN t >= '2026-01-01 00:00:00+00'::timestamptz AND t < '2026-02-01 00:00:00+00'::timestamptz THEN 219" in case
    assert "'2025-12-01 00:00:00+00'::timestamptz AND t < '2026-01-01 00:00:00+00'::timestamptz THEN 100" in case
    assert case.endswith(f"ELSE {top} END)")


def test_cutoff_case_handles_december():
    case = CutoffCase([(dt.datetime(2025, 12, 1), 5)])["t"]
    assert "'2026-01-01 00:00:00+00'" in case


def test_timestamps_export_as_utc_microseconds():
    t = dt.datetime(2026, 3, 3, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert export.format_timestamp(t) == "2026-03-03T08:30:00.000000Z"


def test_exports_list_keys_first_and_registry_is_extensible():
    for spec in export.EXPORTS.values():
        assert spec.columns[: len(spec.keys)] == spec.keys
    with pytest.raises(ValueError):
        export.register_export("bad", "t", ("a", "b"), ("b",))
    export.register_export("tmp-test", "tmp_test", ("k", "v"), ("k",))
    assert export.EXPORTS.pop("tmp-test").table == "tmp_test"


def test_only_the_contract_relations_are_read_from_public():
    contract = set(engine.FACT_RELATIONS)
    for name in OWN:
        text = re.sub(r"--[^\n]*|DISTINCT FROM", "", (_projection_dir() / f"{name}.sql").read_text())
        ctes = set(re.findall(r"\b([a-z_]+) AS (?:NOT )?(?:MATERIALIZED )?\(", text))
        for rel in re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b(?!\.)", text):
            if not rel.startswith("lateral") and rel not in ("jsonb_each", "jsonb_array_elements", "unnest"):
                assert rel in contract or rel in ctes, (name, rel)


def test_build_work_mem_is_a_postgresql_memory_size():
    from ledger.errors import ConfigurationError
    from ledger.settings import Settings

    assert Settings.from_env({}).build_work_mem == "1GB"
    assert Settings.from_env({"LEDGER_BUILD_WORK_MEM": "512MB"}).build_work_mem == "512MB"
    for bad in ("lots", "1 GB", "0MB", "1TB", "-5MB"):
        with pytest.raises(ConfigurationError, match="LEDGER_BUILD_WORK_MEM"):
            Settings.from_env({"LEDGER_BUILD_WORK_MEM": bad})


def test_definition_digest_changes_with_any_projection_file(tmp_path, monkeypatch):
    import shutil

    from ledger.projector import templates

    for path in _projection_dir().glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(templates, "_projection_dir", lambda: tmp_path)

    def digest() -> str:
        templates.definition_digest.cache_clear()
        return templates.definition_digest()

    shipped = digest()
    assert len(shipped) == 64 and digest() == shipped
    with open(tmp_path / "usage_daily.sql", "a") as out:
        out.write("\n-- a comment is a change too\n")
    edited = digest()
    assert edited != shipped
    (tmp_path / "zz_new.sql").write_text("-- @create\nSELECT 1;\n")
    assert digest() not in (shipped, edited)
    templates.definition_digest.cache_clear()
