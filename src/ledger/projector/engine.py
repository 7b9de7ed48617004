"""The projection engine: the read models of `projections/`, kept as their files declare (models.py).

    build(conn, schema, head)                      every read model from position 0 (build.py)
    apply_increment(conn, schema, cp, head, new)   Finance's read models, the facts in (cp, head] (increment.py,
                                                   with the usage-only batch split of batch.py)
    apply_risk_increment(conn, schema, cp, head)   the Risk and Sales views, from their own checkpoint (risk.py)

The engine walks the declarations in dependency order; it knows no read model by name beyond the few rules
stated where they live (the batch split's stage, the anomalies' two forms and their day grain).
"""

from __future__ import annotations

from .batch import Rest, SplitMismatch
from .build import build, built_by_current_definitions, count_built_facts
from .increment import FACT_KINDS, NewFacts, apply_increment, count_new_facts
from .models import read_models, tables
from .risk import Thresholds, apply_risk_increment
from .steps import run_section as _run

# Derived from the declarations (build order): every table check() compares, and the Risk and Sales views'.
TABLES = tables()
RISK_TABLES = tables("risk")
FACT_RELATIONS = tuple(FACT_KINDS)
# The Risk and Sales views' declared steps, as (model, section) pairs; a pair in TWO_FORMS runs one of its two
# forms (SECTION_sparse or SECTION_dense).
RISK_STEPS_BUILD = tuple((m.name, s.section) for m in read_models() if m.group == "risk" for s in m.rebuild)
RISK_STEPS_INCREMENT = tuple((m.name, s.section) for m in read_models() if m.group == "risk" for s in m.increment)
TWO_FORMS = {(m.name, s.section) for m in read_models() for s in (*m.rebuild, *m.increment) if s.forms}

__all__ = [
    "FACT_RELATIONS", "NewFacts", "RISK_STEPS_BUILD", "RISK_STEPS_INCREMENT", "RISK_TABLES", "Rest", "SplitMismatch",
    "TABLES", "TWO_FORMS", "Thresholds", "_run", "apply_increment", "apply_risk_increment", "build",
    "built_by_current_definitions", "count_built_facts", "count_new_facts",
]
