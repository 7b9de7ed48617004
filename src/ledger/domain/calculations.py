"""Calculations (SPEC §3.8): the named rule sets that turn units into cents, and the decisions to define and
promote one.

A store starts with `v1` (`month_start`) defined and in force. A decision takes the command and the
calculations the store knows, and returns the payload to append, None when there is nothing to append, or raises
the refusal that names the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger import errors
from ledger.domain.facts import INITIAL_CALCULATION, PLAN_RULES

NAME = re.compile(r"[a-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Calculations:
    """What the store knows of calculations: each defined name's rule, and the one in force at the head."""

    rules: dict[str, str]
    in_force: str
    promotions: int  # the promotions stream's version

    @classmethod
    def initial(cls) -> "Calculations":
        name, rule = INITIAL_CALCULATION
        return cls({name: rule}, name, 0)


@dataclass(frozen=True)
class DefineCalculation:
    name: str
    plan_rule: str
    actor: str | None
    note: str | None = None


@dataclass(frozen=True)
class PromoteCalculation:
    name: str
    actor: str | None
    reason: str | None


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name or ""):
        raise errors.InvalidCalculationNameError(
            f"calculation name {name!r} must be 1-64 characters of a-z, 0-9, '_', '.' or '-'", name=name)


def decide_define(command: DefineCalculation, *, known: Calculations, now: datetime) -> dict[str, Any] | None:
    """The CalculationDefined payload; None when NAME is defined with this rule already; or a refusal."""
    _check_name(command.name)
    if command.plan_rule not in PLAN_RULES:
        raise errors.UnknownPlanRuleError(
            f"plan rule {command.plan_rule!r} is not one of {', '.join(PLAN_RULES)}", plan_rule=command.plan_rule)
    if not command.actor or not command.actor.strip():
        raise errors.MissingActorError("defining a calculation needs --actor: the person who defines it")
    standing = known.rules.get(command.name)
    if standing == command.plan_rule:
        return None
    if standing is not None:
        raise errors.CalculationRuleConflictError(
            f"calculation {command.name!r} is defined with plan rule {standing!r}; a calculation's rule never "
            f"changes: define a new name for {command.plan_rule!r}", name=command.name, plan_rule=standing)
    return {"name": command.name, "plan_rule": command.plan_rule, "actor": command.actor, "note": command.note,
            "defined_at": now.isoformat(timespec="microseconds")}


def decide_promote(command: PromoteCalculation, *, known: Calculations, now: datetime) -> dict[str, Any] | None:
    """The CalculationPromoted payload; None when NAME is in force already; or a refusal."""
    _check_name(command.name)
    if command.name not in known.rules:
        raise errors.UndefinedCalculationError(
            f"calculation {command.name!r} is not defined (defined: {', '.join(sorted(known.rules))})",
            name=command.name)
    if not command.actor or not command.actor.strip():
        raise errors.MissingActorError("promoting a calculation needs --actor: the person who promotes it")
    if not command.reason or not command.reason.strip():
        raise errors.MissingReasonError("promoting a calculation needs --reason: why it replaces the one in force")
    if command.name == known.in_force:
        return None
    return {"sequence": known.promotions + 1, "name": command.name, "plan_rule": known.rules[command.name],
            "actor": command.actor, "reason": command.reason, "promoted_at": now.isoformat(timespec="microseconds")}


def require_defined(name: str, known: Calculations) -> str:
    """NAME's plan rule, or the refusal of an undefined name (calc diff)."""
    _check_name(name)
    if name not in known.rules:
        raise errors.UndefinedCalculationError(
            f"calculation {name!r} is not defined (defined: {', '.join(sorted(known.rules))})", name=name)
    return known.rules[name]
