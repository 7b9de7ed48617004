"""Given what the store knows of calculations, when a define or promote command, then a payload, nothing, or a
typed refusal (SPEC §3.8)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger import errors
from ledger.domain.calculations import (
    Calculations, DefineCalculation, PromoteCalculation, decide_define, decide_promote, require_defined,
)

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
KNOWN = Calculations({"v1": "month_start", "prorated": "daily_prorated"}, "v1", 0)


def test_a_new_name_is_defined_with_its_rule_actor_and_note():
    payload = decide_define(DefineCalculation("v2", "daily_prorated", "fin@x", "why"), known=KNOWN, now=NOW)
    assert payload == {"name": "v2", "plan_rule": "daily_prorated", "actor": "fin@x", "note": "why",
                       "defined_at": "2026-03-01T00:00:00.000000+00:00"}


def test_defining_a_name_again_with_its_rule_appends_nothing_whoever_asks():
    assert decide_define(DefineCalculation("prorated", "daily_prorated", "someone@else"), known=KNOWN, now=NOW) is None
    assert decide_define(DefineCalculation("v1", "month_start", "a"), known=Calculations.initial(), now=NOW) is None


@pytest.mark.parametrize("command, error", [
    (DefineCalculation("prorated", "month_start", "a"), errors.CalculationRuleConflictError),
    (DefineCalculation("v1", "daily_prorated", "a"), errors.CalculationRuleConflictError),
    (DefineCalculation("Bad Name", "month_start", "a"), errors.InvalidCalculationNameError),
    (DefineCalculation("", "month_start", "a"), errors.InvalidCalculationNameError),
    (DefineCalculation("x" * 65, "month_start", "a"), errors.InvalidCalculationNameError),
    (DefineCalculation("v3", "weekly", "a"), errors.UnknownPlanRuleError),
    (DefineCalculation("v3", "month_start", None), errors.MissingActorError),
    (DefineCalculation("v3", "month_start", "  "), errors.MissingActorError),
])
def test_a_definition_is_refused_naming_its_rule(command, error):
    with pytest.raises(error):
        decide_define(command, known=KNOWN, now=NOW)


def test_a_promotion_is_the_next_version_of_the_promotions_stream():
    payload = decide_promote(PromoteCalculation("prorated", "fin@x", "approved"), known=KNOWN, now=NOW)
    assert payload["sequence"] == 1 and payload["plan_rule"] == "daily_prorated" and payload["name"] == "prorated"


def test_promoting_the_calculation_in_force_appends_nothing():
    assert decide_promote(PromoteCalculation("v1", "fin@x", "again"), known=KNOWN, now=NOW) is None


@pytest.mark.parametrize("command, error", [
    (PromoteCalculation("v9", "a", "r"), errors.UndefinedCalculationError),
    (PromoteCalculation("prorated", None, "r"), errors.MissingActorError),
    (PromoteCalculation("prorated", "a", ""), errors.MissingReasonError),
    (PromoteCalculation("No", "a", "r"), errors.InvalidCalculationNameError),
])
def test_a_promotion_is_refused_naming_its_rule(command, error):
    with pytest.raises(error):
        decide_promote(command, known=KNOWN, now=NOW)


def test_a_diff_of_an_undefined_name_is_refused():
    assert require_defined("prorated", KNOWN) == "daily_prorated"
    with pytest.raises(errors.UndefinedCalculationError):
        require_defined("v9", KNOWN)
