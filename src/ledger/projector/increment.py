"""The incremental step of Finance's read models: the facts in (checkpoint, head] applied to a built schema.

1. Each fact kind opens its scope (FACT_KINDS): the customer-months, source ids, invoices and customers its new
   facts can change, in temporary tables.
2. A batch of usage facts only (the common case) is split (batch.py): its on-time facts of open months are added
   in place (the `added in place` steps), and the run stops there unless some facts are late or resolve nowhere.
3. Otherwise the declarations are walked in dependency order: each read model whose `increment on` facts are new
   (or that runs on every run) runs its increment steps - over the scope, or whole when it is declared
   `recompute whole` or facts it is `recomputed whole on` are new (a promotion); a model refilled as a
   difference writes only the rows that changed.
A period close changes no existing row (facts before it keep their status) but the posting of later late facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..logging import get_logger
from .batch import SplitMismatch, apply_usage_batch, scope_daily_priced
from .models import ReadModel, read_models
from .risk import Thresholds
from .steps import analyze_scopes, create_scopes, drop_stage, run_section, run_steps
from .templates import FULL, SCOPED, STAGE, Scope, Target, sections

_WINDOW = "WHERE position > %(cp)s AND position <= %(head)s"
# The fact relations (docs/fact-relations.md), each with the scope its new facts open before the read models are
# walked ({q}: the schema; the rows of the read models they read are those of the checkpoint). A new kind of fact
# goes here, and into the `increment on` / `recomputed whole on` lines of the read models it reaches.
FACT_KINDS: dict[str, tuple[str, ...]] = {
    "usage_facts": (),              # usage_on_time's and usage_late's own steps write their scopes
    "identity_link_facts": (        # each relinked source id, with the instant from which its facts may resolve
        f"INSERT INTO {STAGE}.relink_source SELECT source, source_customer_id, min(effective_from)"
        f" FROM identity_link_facts {_WINDOW} GROUP BY 1, 2",
        # its size, for the one pass over usage_facts that follows (unanalysed, the planner took a merge join on
        # `source` alone through the (source, event_id) key: 16 s at 10M facts instead of a 2 s hash join)
        f"ANALYZE {STAGE}.relink_source",
    ),
    "invoice_facts": (),            # with identity_link_facts: see INVOICES_IN_SCOPE
    "invoice_line_facts": (),       # at their invoice's position: not facts of their own
    "credit_facts": (
        f"INSERT INTO {STAGE}.scope_cm SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM')"
        f" FROM credit_facts {_WINDOW}",
    ),
    "attribute_facts": (            # a customer's attributes reach every month it is reported for
        f"INSERT INTO {STAGE}.scope_cust SELECT DISTINCT customer_id FROM attribute_facts {_WINDOW}",
        f"INSERT INTO {STAGE}.scope_cm SELECT a.customer_id, a.month FROM {{q}}.customer_month_attrs a"
        f" JOIN {STAGE}.scope_cust s USING (customer_id)",
    ),
    "price_facts": (                # a plan's price reaches, from its effective month on, the months of every
                                    # customer who ever had the plan that were still open at the checkpoint: a
                                    # month closed before is priced at its close (SPEC §4.0), its change is a
                                    # restatement, and a late adjustment already posted keeps its margin (§4.2)
        f"INSERT INTO {STAGE}.scope_cm SELECT a.customer_id, a.month FROM {{q}}.customer_month_attrs a"
        f" JOIN (SELECT DISTINCT h.customer_id, p.effective_month FROM price_facts p"
        f"       JOIN attribute_facts h ON h.attrs ->> 'plan' = p.plan AND h.position <= %(head)s"
        f"       {_WINDOW.replace('position', 'p.position')}) n"
        f" ON n.customer_id = a.customer_id AND a.month >= n.effective_month"
        f" WHERE a.month NOT IN (SELECT month FROM period_close_facts WHERE position <= %(cp)s)",
    ),
    "period_close_facts": (         # a month just closed is priced at its close from now on (SPEC §4.0)
        f"INSERT INTO {STAGE}.scope_cm SELECT a.customer_id, a.month FROM {{q}}.customer_month_attrs a"
        f" JOIN period_close_facts p ON p.month = a.month {_WINDOW.replace('position', 'p.position')}",
    ),
    "calculation_defined_facts": (),  # a definition changes nothing until promoted
    "calculation_promoted_facts": (),  # recomputes the customer-month read models whole (every open month's
                                       # calculation changes)
}
# New invoices, and the invoices of relinked source ids (resolved with every link known now).
INVOICES_IN_SCOPE = (
    f"INSERT INTO {STAGE}.scope_inv SELECT invoice_id FROM invoice_facts {_WINDOW}"
    f" UNION SELECT i.invoice_id FROM {{q}}.invoice_resolved i"
    f" JOIN {STAGE}.relink_source r USING (source, source_customer_id) WHERE i.issued_at >= r.since")


@dataclass(frozen=True)
class NewFacts:
    """How many facts of each relation lie in (checkpoint, head]."""

    counts: dict[str, int]

    def __getitem__(self, relation: str) -> int:
        return self.counts.get(relation, 0)

    @property
    def relations(self) -> set[str]:
        return {rel for rel, n in self.counts.items() if n}

    @property
    def total(self) -> int:
        # invoice lines share their invoice's position: they are not facts of their own
        return sum(n for rel, n in self.counts.items() if rel != "invoice_line_facts")


def count_new_facts(conn: psycopg.Connection, checkpoint: int, head: int) -> NewFacts:
    parts = " UNION ALL ".join(f"SELECT '{rel}', count(*) FROM {rel} {_WINDOW}" for rel in FACT_KINDS)
    rows = conn.execute(parts, {"cp": checkpoint, "head": head}).fetchall()
    return NewFacts({rel: int(n) for rel, n in rows})


def apply_increment(conn: psycopg.Connection, schema: str, checkpoint: int, head: int, new: NewFacts,
                    thresholds: Thresholds = Thresholds()) -> str:
    """Applies the facts in (CHECKPOINT, HEAD] to Finance's read models of SCHEMA (inside the caller's transaction).

    Returns the path it took: "additive" (usage facts only, every one on time in an open month: added in place),
    "additive+scoped" (usage facts only: those added in place, the others, late or resolving nowhere, through
    scoped refills) or "scoped" (scoped refills for everything; a promotion refills the customer-month models whole).
    """
    since = _relinked_since(conn, checkpoint, head) if new["identity_link_facts"] else None
    t = Target(schema, head, checkpoint, since)
    q = sql.Identifier(schema).as_string(conn)
    conn.execute("SET LOCAL work_mem = '256MB'")
    conn.execute("SET LOCAL jit = off")
    # An increment reaches a few rows of large tables that every increment reads again: their index pages are
    # cached, and the default cost of a random page (4, a disk seek) made the planner hash whole tables instead
    # (1.2M invoices and customer-months for 13k changed rows, wide benchmark shape: a 48k-fact batch 1.3 s at 4,
    # 0.85 s at 1.1; with 2% late, 6.0 s and 4.5 s).
    conn.execute("SET LOCAL random_page_cost = 1.1")
    drop_stage(conn)
    create_scopes(conn)
    window = {"cp": checkpoint, "head": head}
    relations = new.relations
    for relation in FACT_KINDS:
        if relation in relations:
            for statement in FACT_KINDS[relation]:
                conn.execute(statement.format(q=q), window)
    if relations & {"invoice_facts", "identity_link_facts"}:
        conn.execute(INVOICES_IN_SCOPE.format(q=q), window)

    path, usage_applied = "scoped", False
    if new["usage_facts"] and new.total == new["usage_facts"]:
        try:
            with conn.transaction():  # a savepoint: a split that does not add up leaves nothing behind
                path = apply_usage_batch(conn, t, new["usage_facts"])
            usage_applied = True
        except SplitMismatch as error:  # never expected; the general path below is the reference
            get_logger().error("usage_batch_split_mismatch", detail=str(error))
        if usage_applied and path == "additive" and scope_daily_priced(conn, t):
            path = "additive+scoped"
        if path == "additive":
            _finish(conn, q, head)
            return path

    scopes_analyzed = False
    for m in read_models():
        if m.group == "risk" or not m.increment or not m.triggered(relations):
            continue
        if usage_applied and m.increment_on and "usage_facts" in m.increment_on:
            continue  # the batch brought the usage stage and read models up to date
        if m.increment_on is None and not scopes_analyzed:  # before the customer-month models: the scopes' sizes
            analyze_scopes(conn, SCOPED)
            scopes_analyzed = True
        _apply(conn, t, m, FULL if m.whole(relations) else SCOPED)
    _finish(conn, q, head)
    return path


def _apply(conn: psycopg.Connection, t: Target, m: ReadModel, scopes: dict[str, Scope]) -> None:
    """M's increment steps over SCOPES (FULL: whole, and without recording what they touched)."""
    if m.mode == "refill as difference" and scopes is not FULL:
        _refill_as_difference(conn, t, m.name, scopes)
        return
    steps = [s for s in m.increment if not (scopes is FULL and s.section in ("touched", "apply"))]
    run_steps(conn, t, m, steps, scopes)


def _refill_as_difference(conn: psycopg.Connection, t: Target, name: str, scopes: dict[str, Scope]) -> None:
    """NAME's @fill for the scope into {stage}.NAME_new (a copy of the table's columns), then its @apply."""
    into = f"INSERT INTO {{schema}}.{name}\n"
    fill = sections(name)["fill"]
    if not fill.startswith(into) or fill.count("INSERT INTO") != 1:
        raise ValueError(f"{name}.sql @fill must be one INSERT INTO {{schema}}.{name} to be applied as a difference")
    conn.execute(sql.SQL("CREATE TABLE {}.{} (LIKE {}.{})").format(
        sql.Identifier(STAGE), sql.Identifier(f"{name}_new"), sql.Identifier(t.schema), sql.Identifier(name)))
    conn.execute(t.render(f"INSERT INTO {{stage}}.{name}_new\n" + fill[len(into):], scopes))
    run_section(conn, t, name, "apply", scopes)


def _finish(conn: psycopg.Connection, q: str, head: int) -> None:
    conn.execute(f"UPDATE {q}.checkpoint SET position = %s", (head,))
    drop_stage(conn)


def _relinked_since(conn: psycopg.Connection, checkpoint: int, head: int):
    """The earliest effective_from of the identity links in (CHECKPOINT, HEAD], or None: the facts before it keep
    their resolution, and the relinked source ids' facts are read from there on (usage_facts' BRIN index on
    event_time skips the blocks written before it)."""
    return conn.execute("SELECT min(effective_from) FROM identity_link_facts WHERE position > %s AND position <= %s",
                        (checkpoint, head)).fetchone()[0]
