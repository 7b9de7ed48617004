"""The projection SQL files: loading their sections and rendering their placeholders.

A file in `projections/` states its grain, key and facts in its first lines, then holds sections that start
with a `-- @name` line: `create` (DDL), `fill` / `fill_rebuild` / `fill_incremental` / `merge` (fill the
table), `delete` (drop the rows of an incremental scope), `apply` (write an incremental scope's recomputed
rows, from {stage}.NAME_new, as a difference), `touched` (record the keys an incremental step changed) and
`index`. A line `-- @include NAME.SECTION` stands for that section of projections/NAME.sql: a rule shared by
several read models is written once. Placeholders, filled by `render`:

    {schema}      the target schema (a quoted identifier)
    {stage}       where transient tables live (pg_temp)
    {head}        the position the projection is brought up to (inclusive)
    {checkpoint}  the position it was at before (exclusive lower bound of the new facts)
    {relinked_since}  the earliest effective_from of the new identity links (a timestamptz; infinity if none)
    {cutoff[t]}   c(month of instant t) as a CASE over the closed months; {cutoff.first}: the first close position
    {cm[c, m]}    a predicate: (customer, month) in the incremental scope, TRUE in a full build
    {src[s, i]}   source id in scope;  {inv[i]} invoice in scope;  {cust[c]} customer in scope
    {adopt[c, m]} customer-month whose adoption row is derived again (adoption_scope; TRUE in a full build)
    {batch_months[m]}  in an in-place addition's sections: month m is one of the batch's, or TRUE (BatchMonths)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from psycopg import sql

_SECTION = re.compile(r"^--\s*@(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^--\s*@include\s+(\w+)\.(\w+)\s*$", re.MULTILINE)
STAGE = "pg_temp"


def _projection_dir() -> Path:
    """The shipped copy (ledger/sql/projections) when installed, else the repository's projections/."""
    try:
        shipped = resources.files("ledger.sql") / "projections"
        if shipped.is_dir():
            return Path(str(shipped))
    except ModuleNotFoundError:  # pragma: no cover - the sql package is part of the distribution
        pass
    return Path(__file__).resolve().parents[3] / "projections"


@lru_cache(maxsize=None)
def _raw_sections(name: str) -> dict[str, str]:
    text = (_projection_dir() / f"{name}.sql").read_text()
    parts = _SECTION.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


@lru_cache(maxsize=None)
def sections(name: str) -> dict[str, str]:
    """The sections of projections/NAME.sql, by section name, their includes resolved."""
    return {section: _resolve(text) for section, text in _raw_sections(name).items()}


def _resolve(text: str, depth: int = 0) -> str:
    if depth > 8:
        raise ValueError("-- @include nested more than 8 deep (a cycle?)")
    return _INCLUDE.sub(lambda match: _resolve(_included(match), depth + 1), text)


def _included(match: re.Match) -> str:
    name, section = match.groups()
    found = _raw_sections(name).get(section)
    if found is None:
        raise KeyError(f"-- @include {name}.{section}: projections/{name}.sql has no @{section} section")
    return found


@lru_cache(maxsize=None)
def definition_digest() -> str:
    """sha256 over every projection file (name and text): read models built by other definitions are rebuilt."""
    digest = hashlib.sha256()
    for path in sorted(_projection_dir().glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Scope:
    """Renders `{cm[a, b]}`: a membership predicate on a scope table, or TRUE for a full build."""

    def __init__(self, table: str | None, columns: tuple[str, ...]):
        self.table, self.columns = table, columns

    def __getitem__(self, args: str) -> str:
        if self.table is None:
            return "TRUE"
        return f"({args}) IN (SELECT {', '.join(self.columns)} FROM {STAGE}.{self.table})"


FULL = {
    "cm": Scope(None, ("customer_id", "month")),
    "src": Scope(None, ("source", "source_customer_id")),
    "inv": Scope(None, ("invoice_id",)),
    "cust": Scope(None, ("customer_id",)),
    "adopt": Scope(None, ("customer_id", "month")),
}
SCOPED = {
    "cm": Scope("scope_cm", ("customer_id", "month")),
    "src": Scope("scope_src", ("source", "source_customer_id")),
    "inv": Scope("scope_inv", ("invoice_id",)),
    "cust": Scope("scope_cust", ("customer_id",)),
    "adopt": Scope("adoption_scope", ("customer_id", "month")),
}


class BatchMonths:
    """Renders `{batch_months[m]}` for an in-place addition (batch.py): a filter on the rows its joins read.

    Joined by hash or merge, a table is read whole: the filter keeps the rows of the batch's months (the open
    ones), so the cost follows them and not the history. Joined by index probes (PROBING) it renders TRUE: each
    probe finds its key's month by itself, and a filter on the month alone would let the planner read a month by
    it (the month's rows estimated from the last ANALYZE, a few for a month that began since) once for each key.
    """

    def __init__(self, probing: bool):
        self.probing = probing

    def __getitem__(self, month: str) -> str:
        if self.probing:
            return "TRUE"
        return f"{month} = ANY (ARRAY(SELECT DISTINCT month FROM {STAGE}.usage_batch_stage))"


class CutoffCase:
    """Renders `{cutoff[t]}`: c(month of instant t), the close position or the largest bigint while open."""

    def __init__(self, closes: list[tuple[dt.datetime, int]]):
        self.closes = sorted(closes, reverse=True)  # (month start as naive UTC, close position)

    def __getitem__(self, t: str) -> str:
        top = "9223372036854775807"
        if not self.closes:
            return top
        def instant(month_start: dt.datetime) -> str:
            return f"'{month_start.isoformat(sep=' ')}+00'::timestamptz"
        def month_end(month_start: dt.datetime) -> dt.datetime:
            y, m = divmod(month_start.month, 12)
            return month_start.replace(year=month_start.year + y, month=m + 1)
        whens = [f"WHEN {t} >= {instant(month_end(self.closes[0][0]))} THEN {top}"]
        whens += [f"WHEN {t} >= {instant(start)} AND {t} < {instant(month_end(start))} THEN {int(pos)}"
                  for start, pos in self.closes]
        return f"(CASE {' '.join(whens)} ELSE {top} END)"

    @property
    def first(self) -> int:
        """The smallest close position (the largest bigint with no close): every late-by-position fact is after it."""
        return min((int(pos) for _, pos in self.closes), default=9223372036854775807)


@dataclass(frozen=True)
class Target:
    """Where and up to which positions a run writes."""

    schema: str
    head: int
    checkpoint: int = 0
    # The earliest effective_from of the identity links in (checkpoint, head], if any: every usage fact before it
    # resolves as it did at the checkpoint (a link only changes the resolution from its effective_from on).
    relinked_since: dt.datetime | None = None

    def render(self, text: str, scopes: dict[str, Scope]) -> str:
        since = "infinity" if self.relinked_since is None else self.relinked_since.isoformat()
        return text.format(
            schema=sql.Identifier(self.schema).as_string(None),
            stage=STAGE,
            head=int(self.head),
            checkpoint=int(self.checkpoint),
            relinked_since=f"'{since}'::timestamptz",
            **scopes,
        )
