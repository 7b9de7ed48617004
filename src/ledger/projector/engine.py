"""The projection engine: the read models of `projections/`, kept as their files declare (models.py).

    build(conn, schema, head)                      every read model from position 0 (build.py)
    apply_increment(conn, schema, cp, head, new)   Finance's read models, the facts in (cp, head] (increment.py,
                                                   with the usage-only batch split of batch.py)
    apply_risk_increment(conn, schema, cp, head)   the Risk and Sales views, from their own checkpoint (risk.py)

The engine walks the declarations in dependency order; it knows no read model by name beyond the few rules
stated where they live (the scopes each fact kind opens, the batch split's stage, the anomalies' two forms and their
day grain).
"""

from __future__ import annotations

from .batch import Rest, SplitMismatch
from .build import build, built_by_current_definitions, count_built_facts
from .increment import FACT_KINDS, NewFacts, apply_increment, count_new_facts
from .models import read_models, tables
from .risk import Thresholds, apply_risk_increment
from .steps import run_section as _run



def __getattr__(name: str):
    """Derived from the declarations when first asked for (not at import: a bad declaration is an error of the run
    that reads it): TABLES, every table check() compares, in build order; RISK_TABLES, the Risk and Sales views';
    RISK_STEPS_BUILD / RISK_STEPS_INCREMENT, their declared steps as (model, section) pairs; TWO_FORMS, the pairs
    that run one of two forms (SECTION_sparse or SECTION_dense)."""
    def risk():
        return [m for m in read_models() if m.group == "risk"]

    derived = {
        "TABLES": lambda: tables(),
        "RISK_TABLES": lambda: tables("risk"),
        "RISK_STEPS_BUILD": lambda: tuple((m.name, s.section) for m in risk() for s in m.rebuild),
        "RISK_STEPS_INCREMENT": lambda: tuple((m.name, s.section) for m in risk() for s in m.increment),
        "TWO_FORMS": lambda: {(m.name, s.section) for m in read_models() for s in (*m.rebuild, *m.increment)
                              if s.forms},
    }
    if name not in derived:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return derived[name]()


FACT_RELATIONS = tuple(FACT_KINDS)
__all__ = [
    "FACT_RELATIONS", "NewFacts", "RISK_STEPS_BUILD", "RISK_STEPS_INCREMENT", "RISK_TABLES", "Rest", "SplitMismatch",
    "TABLES", "TWO_FORMS", "Thresholds", "_run", "apply_increment", "apply_risk_increment", "build",
    "built_by_current_definitions", "count_built_facts", "count_new_facts",
]
