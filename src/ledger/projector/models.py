"""The read-model declarations: how each table of `projections/` is kept, read from the header of its file.

A projection file's header (the comment lines before its first `-- @section`) declares, after its grain, key and
facts read:

    -- read model: finance | risk | stage | rules
                                             (stage: transient tables of a run, in {stage}; rules: SQL functions
                                             the others share, no table; neither is compared by check)
    -- depends on: NAME, NAME ... | none       (the models whose tables its rebuild reads; they are built first)
    -- rebuild: STEP, STEP ... | none          (what a full build runs, in order)
    -- increment: MODE (STEP, STEP ...) | none
    -- increment on: RELATION, ... | every run (the new facts that bring it into an increment; default: every run)
    -- recomputed whole on: RELATION, ...      (new facts after which a scoped refill recomputes it whole)
    -- added in place: STEP, STEP ...          (what a batch of on-time usage facts in open months runs instead)

MODE is how an increment updates it: `add in place`, `refill scope` (its rows of the incremental scope deleted
and derived again), `refill as difference` (the scope's rows derived into {stage}.NAME_new, then only what
changed written by its @apply; recomputed whole: @delete and @fill) or `recompute whole`.

A STEP names a section of the file, with three forms the engine knows: `A|B` (one of two equivalent sections,
the cheaper for the data: the anomalies' sparse and dense forms), `NAME per month` (run for each month partition,
see risk.py) and `analyze` (the section of that name, else an ANALYZE of the table with a small sample).
`index` sections that a rebuild does not list run at the end of the build, after every fill.

A file without `read model:` holds rules included by others (`-- @include pricing.price`).
Every declared step must name a section of its file and every dependency a declared model: anything else is an
error when the declarations are loaded.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from functools import lru_cache

from .templates import _projection_dir, sections

GROUPS = ("finance", "risk", "stage", "rules")
MODES = ("add in place", "refill scope", "refill as difference", "recompute whole")
EVERY_RUN = "every run"
_FIELD = re.compile(r"^--\s*(read model|depends on|rebuild|increment|increment on|recomputed whole on|added in place)"
                    r":\s*(.*?)\s*$")
_MODE = re.compile(r"^(?P<mode>[a-z ]+?)\s*\((?P<steps>[^)]*)\)$")
_SECTION_LINE = re.compile(r"^--\s*@\w+\s*$")


class DeclarationError(ValueError):
    """A projection file's declaration is missing, malformed, or names what its file does not hold."""


@dataclass(frozen=True)
class Step:
    """One declared step: the section (or its two forms) and how the engine runs it."""

    section: str
    forms: tuple[str, ...] = ()   # ("fill_sparse", "fill_dense"): one of them, picked per run
    per_month: bool = False

    @property
    def sections(self) -> tuple[str, ...]:
        return self.forms or (self.section,)


@dataclass(frozen=True)
class ReadModel:
    name: str
    group: str
    depends_on: tuple[str, ...]
    rebuild: tuple[Step, ...]
    mode: str | None
    increment: tuple[Step, ...]
    increment_on: frozenset[str] | None  # None: every run
    whole_on: frozenset[str]
    added_in_place: tuple[Step, ...]

    def triggered(self, new_relations: set[str]) -> bool:
        return self.increment_on is None or bool(self.increment_on & new_relations)

    def whole(self, new_relations: set[str]) -> bool:
        return self.mode == "recompute whole" or bool(self.whole_on & new_relations)


def _steps(text: str, name: str) -> tuple[Step, ...]:
    if text in ("", "none"):
        return ()
    out = []
    for raw in (s.strip() for s in text.split(",")):
        per_month = raw.endswith(" per month")
        raw = raw.removesuffix(" per month")
        if not re.fullmatch(r"\w+(\|\w+)?", raw):
            raise DeclarationError(f"projections/{name}.sql: step {raw!r} is not a section name (or A|B)")
        forms = tuple(raw.split("|")) if "|" in raw else ()
        out.append(Step(raw.split("|")[0].rsplit("_", 1)[0] if forms else raw, forms, per_month))
    return tuple(out)


def header(name: str) -> dict[str, str]:
    """The declared fields of projections/NAME.sql (the header's `field: value` lines)."""
    fields: dict[str, str] = {}
    for line in (_projection_dir() / f"{name}.sql").read_text().splitlines():
        if _SECTION_LINE.match(line):
            break
        match = _FIELD.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def _parse(name: str, fields: dict[str, str]) -> ReadModel:
    for required in ("read model", "depends on", "rebuild", "increment"):
        if required not in fields:
            raise DeclarationError(f"projections/{name}.sql declares no `{required}:`")
    group = fields["read model"]
    if group not in GROUPS:
        raise DeclarationError(f"projections/{name}.sql: read model {group!r} is not one of {', '.join(GROUPS)}")
    mode, increment = None, ()
    if fields["increment"] != "none":
        match = _MODE.match(fields["increment"])
        if not match or match["mode"] not in MODES:
            raise DeclarationError(f"projections/{name}.sql: increment {fields['increment']!r} is not MODE (STEPS)"
                                   f" with MODE one of {', '.join(MODES)}")
        mode, increment = match["mode"], _steps(match["steps"], name)

    def relations(field: str) -> frozenset[str]:
        return frozenset(r.strip() for r in fields.get(field, "").split(",") if r.strip())

    on = fields.get("increment on", EVERY_RUN)
    return ReadModel(
        name=name, group=group,
        depends_on=() if fields["depends on"] == "none" else tuple(d.strip() for d in fields["depends on"].split(",")),
        rebuild=_steps(fields["rebuild"], name), mode=mode, increment=increment,
        increment_on=None if on == EVERY_RUN else relations("increment on"),
        whole_on=relations("recomputed whole on"), added_in_place=_steps(fields.get("added in place", ""), name))


def _check_sections(model: ReadModel) -> None:
    held = set(sections(model.name))
    for step in (*model.rebuild, *model.increment, *model.added_in_place):
        for section in step.sections:
            if section not in held and section != "analyze":
                raise DeclarationError(f"projections/{model.name}.sql declares step {section!r} but has no"
                                       f" `-- @{section}` section")
    if model.group != "stage" and "create" not in held:
        raise DeclarationError(f"projections/{model.name}.sql: a read model needs a `-- @create` section")
    if model.mode == "refill as difference" and not {"delete", "fill", "apply"} <= held:
        raise DeclarationError(f"projections/{model.name}.sql: refilled as a difference, it needs @delete, @fill"
                               " and @apply")


def _ordered(models: dict[str, ReadModel]) -> tuple[ReadModel, ...]:
    """Dependencies first; among the models ready at once, risk last, then by name."""
    for m in models.values():
        for dep in m.depends_on:
            if dep not in models:
                raise DeclarationError(f"projections/{m.name}.sql depends on {dep!r}, which no file declares")
    waiting = {name: set(m.depends_on) for name, m in models.items()}
    rank = {name: (m.group == "risk", name) for name, m in models.items()}
    ready = [rank[n] for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[ReadModel] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(models[name])
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, rank[other])
    if len(order) < len(models):
        stuck = sorted(set(models) - {m.name for m in order})
        raise DeclarationError(f"projections/: the dependencies of {', '.join(stuck)} form a cycle")
    return tuple(order)


@lru_cache(maxsize=None)
def read_models() -> tuple[ReadModel, ...]:
    """Every declared model of projections/, in build order (each after the models it depends on)."""
    models = {}
    for path in sorted(_projection_dir().glob("*.sql")):
        fields = header(path.stem)
        if fields:
            models[path.stem] = _parse(path.stem, fields)
            _check_sections(models[path.stem])
    return _ordered(models)


def model(name: str) -> ReadModel:
    for m in read_models():
        if m.name == name:
            return m
    raise DeclarationError(f"no projection file declares the read model {name!r}")


def tables(*groups: str) -> tuple[str, ...]:
    """The tables of the read models of GROUPS (default: finance and risk, those check() compares), in build order."""
    groups = groups or ("finance", "risk")
    return tuple(m.name for m in read_models() if m.group in groups)
