"""The read-model declarations of projections/*.sql, checked against the SQL they declare (no database)."""

from __future__ import annotations

import re
import shutil

import pytest

from ledger.projector import models, steps, templates
from ledger.projector.models import DeclarationError, read_models
from ledger.projector.templates import _projection_dir, sections

_CREATED = re.compile(r"CREATE (?:TEMP )?(?:TABLE|FUNCTION|STATISTICS) (?:IF NOT EXISTS )?\{(?:schema|stage)\}\.(\w+)")
_READ = re.compile(r"\{(?:schema|stage)\}\.(\w+)")


def _text(name: str, step_sections) -> str:
    held = sections(name)
    return "\n".join(held[s] for s in step_sections if s in held)


def _created_by() -> dict[str, set[str]]:
    """Each table (or function, or statistics object) of {schema} or {stage}: the models whose sections create it."""
    out: dict[str, set[str]] = {}
    for m in read_models():
        out.setdefault(m.name, set()).add(m.name)
        for text in sections(m.name).values():
            for table in _CREATED.findall(text):
                out.setdefault(table, set()).add(m.name)
    return out


def _rebuild_sections(m) -> list[str]:
    return [s for step in m.rebuild for s in step.sections] + ["create"]


@pytest.mark.parametrize("m", read_models(), ids=lambda m: m.name)
def test_a_rebuild_reads_only_its_own_tables_and_those_of_its_declared_dependencies(m):
    creators = _created_by()
    text = _text(m.name, _rebuild_sections(m))
    for table in set(_READ.findall(text)) - set(steps.SCOPE_TABLES):
        found = creators.get(table)
        assert found, (m.name, table, "no model creates it")
        assert found & {m.name, *m.depends_on}, (m.name, table, f"created by {sorted(found)}, not a dependency")
    if "{cutoff" in text:  # c(m) is rendered from period_close
        assert "period_close" in m.depends_on, m.name


@pytest.mark.parametrize("m", read_models(), ids=lambda m: m.name)
def test_every_declared_dependency_is_read(m):
    creators = _created_by()
    text = _text(m.name, sections(m.name))
    read = {creator for table in _READ.findall(text) for creator in creators.get(table, ())}
    if "{cutoff" in text:
        read.add("period_close")
    assert set(m.depends_on) <= read, (m.name, sorted(set(m.depends_on) - read))


def test_every_model_comes_after_what_it_depends_on():
    seen: set[str] = set()
    for m in read_models():
        assert set(m.depends_on) <= seen, m.name
        seen.add(m.name)


def test_every_file_declares_a_read_model_or_is_included_by_one():
    declared = {m.name for m in read_models()}
    included = set()
    for path in _projection_dir().glob("*.sql"):
        included |= set(re.findall(r"^--\s*@include\s+(\w+)\.", path.read_text(), re.MULTILINE))
    for path in _projection_dir().glob("*.sql"):
        assert path.stem in declared or path.stem in included, path.name


def test_read_models_and_their_modes():
    by_name = {m.name: m for m in read_models()}
    assert {m.group for m in read_models()} == {"finance", "risk", "stage", "rules"}
    assert by_name["customer_month_meter"].mode == "refill as difference"
    assert by_name["plan_month_fee"].mode == "recompute whole"
    assert by_name["anomalies"].rebuild[0].forms == ("fill_sparse", "fill_dense")
    assert by_name["usage_daily"].rebuild[0].per_month
    assert by_name["customer_month"].triggered(set()) and not by_name["dim_customer"].triggered({"credit_facts"})
    assert by_name["customer_month"].whole({"calculation_promoted_facts"})
    assert not by_name["customer_month"].whole({"usage_facts"}) and not by_name["customer_month"].whole({"price_facts"})


@pytest.fixture
def projection_copy(tmp_path, monkeypatch):
    for path in _projection_dir().glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(templates, "_projection_dir", lambda: tmp_path)
    monkeypatch.setattr(models, "_projection_dir", lambda: tmp_path)

    def load():
        for cached in (templates._raw_sections, templates.sections, models.read_models):
            cached.cache_clear()
        return models.read_models()

    yield tmp_path, load
    for cached in (templates._raw_sections, templates.sections, models.read_models):
        cached.cache_clear()


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_declared_section_that_is_missing_is_an_error(projection_copy):
    folder, load = projection_copy
    assert load()
    _edit(folder / "customer_month.sql", "-- @add_on_time\n", "-- @add_in_place\n")
    with pytest.raises(DeclarationError, match=r"customer_month.sql declares step 'add_on_time' but has no"):
        load()


def test_a_missing_field_an_unknown_mode_or_dependency_and_a_cycle_are_errors(projection_copy):
    folder, load = projection_copy
    _edit(folder / "exceptions.sql", "-- rebuild: fill\n", "")
    with pytest.raises(DeclarationError, match=r"exceptions.sql declares no `rebuild:`"):
        load()
    _edit(folder / "exceptions.sql", "-- increment: refill scope", "-- rebuild: fill\n-- increment: refill some")
    with pytest.raises(DeclarationError, match="is not MODE"):
        load()
    _edit(folder / "exceptions.sql", "-- increment: refill some", "-- increment: refill scope")
    _edit(folder / "exceptions.sql", "-- depends on: customer_month_meter", "-- depends on: customer_month_metre")
    with pytest.raises(DeclarationError, match="depends on 'customer_month_metre', which no file declares"):
        load()
    _edit(folder / "exceptions.sql", "-- depends on: customer_month_metre", "-- depends on: customer_month_meter")
    _edit(folder / "period_close.sql", "-- depends on: none", "-- depends on: exceptions")
    with pytest.raises(DeclarationError, match="form a cycle"):
        load()


# What `ledger_sum` may add up: names whose values are never negative (quantities and units, counts, days, and
# the cents of prices and credits, which the contracts and the credit decision keep >= 0). A sum over anything
# else (an invoice's or a line's amount, a late adjustment, a restatement, a difference) is sum(...)::bigint.
NON_NEGATIVE = {"quantity", "units", "usage_units", "on_time_units", "late_units", "billed_units", "on_time_facts",
                "event_count", "included_units", "first_day", "last_day", "plan_days", "metered_cents", "credits",
                "base_fee_cents"}
FUNCTIONS = {"greatest", "coalesce"}


def _ledger_sum_arguments(text: str):
    for match in re.finditer(r"\bledger_sum\(", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                yield text[start:i]
                break


@pytest.mark.parametrize("path", sorted(_projection_dir().glob("*.sql")), ids=lambda p: p.name)
def test_ledger_sum_adds_up_only_what_is_never_negative(path):
    """ledger_sum keeps a bigint running total: over signed terms it could raise where the sum fits."""
    for argument in _ledger_sum_arguments(path.read_text()):
        names = set(re.findall(r"[a-z_]+", re.sub(r"\b[a-z_]+\.", "", argument))) - FUNCTIONS  # no table aliases
        assert names <= NON_NEGATIVE, f"{path.name}: ledger_sum({argument}) adds up {sorted(names - NON_NEGATIVE)}"


def test_the_views_built_beside_read_only_each_other_and_their_inputs():
    """build.BESIDE is built on a second connection from BESIDE_INPUTS alone, and no other model reads it."""
    from ledger.projector.build import BESIDE, BESIDE_INPUTS

    by_name = {m.name: m for m in read_models()}
    for name in BESIDE:
        assert set(by_name[name].depends_on) <= set(BESIDE) | set(BESIDE_INPUTS), name
    for m in read_models():
        if m.name not in BESIDE:
            assert not set(m.depends_on) & set(BESIDE), m.name
    for name in BESIDE_INPUTS:
        assert not by_name[name].depends_on, name  # rebuilt beside from the facts alone
