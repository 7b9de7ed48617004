"""Realistic scenarios in the interchange formats of SPEC §3, deterministic by seed, written as streams.

`scenario(directory, params)` writes the input files of a few months of a usage-billed business and returns
the steps that feed them to the ledger in order (ingest, close, credit, each dated `at`), the shape of
`examples/basic/input/steps.json`. What it holds, on purpose:

- source systems (`billing`, `product`, `gateway`, …) with their own source ids linked to canonical customers,
  some customers with two product ids, one source id never linked, one linked only after its usage was closed;
- plans with prices (starter / growth / enterprise; meters api_calls, fraud_checks, rules_evaluated) and a
  price change for growth in a later month;
- attributes (name, segment, owner, plan, region), new customers mid-scenario, plan changes mid-month, one
  back-dated change arriving after two closes, a cleared region, a change that changes nothing;
- a merge: a later identity link moving a product id to another customer;
- usage as NDJSON (product), CSV (billing) and CloudEvents (gateway), with exact duplicates (immediate and
  resent later), malformed lines, conflicting resends, and late usage ingested after the month's close;
- invoices per customer-month from billing (a few with a header total off the sum of lines, a few billing a
  quantity other than the metered one, one for an unlinked billing id, one in a foreign currency);
- credits through the credit command (some refused: over the invoice, wrong customer; one idempotent repeat);
- period closes in order (and one refused because the month had not ended).

Nothing is held per event: files are written line by line; what is kept is per customer-month.
The fast path for benchmarks (`usage_only`, `usage_only_reference`) is in `ledger.demo.bulk`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from ledger.domain.time import month_start, next_month, previous_month

UTC = timezone.utc
SYSTEMS = ("billing", "product", "gateway", "mobile", "partner")  # billing first: it issues the invoices
PREFIX = {"billing": "bc", "product": "pr", "gateway": "gw", "mobile": "mb", "partner": "pt"}
FORMAT = {"billing": "csv", "product": "ndjson", "gateway": "cloudevents", "mobile": "ndjson", "partner": "csv"}
EXTENSION = {"ndjson": "ndjson", "csv": "csv", "cloudevents": "cloudevents.ndjson"}
METERS = ("api_calls", "fraud_checks", "rules_evaluated")
SOURCE_METERS = {  # (meter, weight, largest quantity) of what each system meters; an event is a rollup
    "billing": (("fraud_checks", 1.0, 10),),
    "product": (("api_calls", 0.7, 400), ("rules_evaluated", 0.3, 300)),
    "gateway": (("api_calls", 0.8, 300), ("fraud_checks", 0.2, 6)),
    "mobile": (("api_calls", 1.0, 100),),
    "partner": (("api_calls", 0.6, 250), ("rules_evaluated", 0.4, 100)),
}
PRICES = {  # plan: (base_fee_cents, {meter: (included_units, unit_price_cents)}); starter has no rules engine
    "starter": (4_900, {"api_calls": (5_000, 1), "fraud_checks": (50, 10)}),
    "growth": (19_900, {"api_calls": (15_000, 1), "fraud_checks": (200, 8), "rules_evaluated": (2_000, 1)}),
    "enterprise": (99_900, {"api_calls": (60_000, 1), "fraud_checks": (1_000, 5), "rules_evaluated": (20_000, 1)}),
}
GROWTH_REPRICED = (24_900, {"api_calls": (20_000, 1), "fraud_checks": (250, 7), "rules_evaluated": (3_000, 1)})
RULES_ON_STARTER = 0.04  # starter customers who call the rules engine anyway: unpriced usage
SEGMENT_PLAN = {"smb": ("starter", "starter", "growth"), "midmarket": ("growth", "growth", "starter", "enterprise"),
                "enterprise": ("enterprise", "enterprise", "growth")}
OWNERS = ("ana", "ben", "cy", "dee", "eli", "fay", "gus")
REGIONS = ("us", "eu", "apac")
OFFSETS = (0, 0, 0, 60, -480, 330, -300)  # minutes: the same instant written in other zones
CLOSER = "fin.close@example.com"
CREDITOR = "fin.ops@example.com"


@dataclass(frozen=True)
class ScenarioParams:
    """What to generate. `usage_events`, when given, is the total and overrides the per customer-month figure."""

    customers: int = 300
    start_month: str = "2026-01"
    months: int = 4
    events_per_customer_month: int = 125
    usage_events: int | None = None
    late_share: float = 0.03
    duplicate_share: float = 0.01
    malformed_share: float = 0.002
    source_systems: int = 3
    currency: str = "USD"
    seed: int = 7

    def check(self) -> None:
        if self.customers < 10:
            raise ValueError("a scenario needs at least 10 customers (merges, plan changes, refusals need them)")
        if self.months < 3:
            raise ValueError("a scenario needs at least 3 months (a back-dated change arrives after two closes)")
        if not 2 <= self.source_systems <= len(SYSTEMS):
            raise ValueError(f"source_systems must be 2–{len(SYSTEMS)} (billing issues the invoices)")
        for name in ("late_share", "duplicate_share", "malformed_share"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5)")


@dataclass
class FileStats:
    """What one generated file holds; lines = events + duplicates + conflicts + malformed (+ header)."""

    kind: str
    file: str
    format: str
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    conflicts: int = 0
    malformed: int = 0


@dataclass
class Scenario:
    """The generated files, the steps that replay them, and where the interesting cases are."""

    directory: Path
    params: ScenarioParams
    steps: list[dict[str, Any]]
    files: list[FileStats]
    highlights: dict[str, Any]
    seconds: float = 0.0

    @property
    def usage_events(self) -> int:
        return sum(f.events for f in self.files if f.kind == "usage")

    def totals(self) -> dict[str, int]:
        usage = [f for f in self.files if f.kind == "usage"]
        return {"customers": self.params.customers, "months": self.params.months, "files": len(self.files),
                "usage_events": self.usage_events, "usage_lines": sum(f.lines for f in usage),
                "duplicates": sum(f.duplicates for f in self.files), "malformed": sum(f.malformed for f in self.files),
                "late_events": sum(f.events for f in usage if "_late_" in f.file),
                "invoices": sum(f.events for f in self.files if f.kind == "invoices"),
                "credits": sum(1 for s in self.steps if s["op"] == "credit"), "steps": len(self.steps)}


# -- the world: customers, their source ids, plans and links --------------------------------------------
@dataclass
class Customer:
    customer_id: str
    name: str
    segment: str
    owner: str
    plan: str
    region: str
    weight: float
    first_month: int  # index of the month it signs up
    billing_id: str
    usage_ids: list[tuple[str, str]] = field(default_factory=list)  # (source, source_customer_id)
    plan_from: tuple[int, str] | None = None  # (month index of the first month billed on it, new plan)
    uses_rules: bool = True  # whether its product traffic evaluates rules (starter plans mostly do not)

    def source_ids(self) -> list[tuple[str, str]]:
        """Every source id of the customer, each once (its billing id also meters usage)."""
        return list(dict.fromkeys([("billing", self.billing_id), *self.usage_ids]))

    def plan_for(self, index: int) -> str:
        return self.plan_from[1] if self.plan_from and index >= self.plan_from[0] else self.plan


@dataclass(frozen=True)
class Link:
    source: str
    source_customer_id: str
    customer_id: str
    effective_from: datetime
    known_at: datetime  # when its file is ingested: only links known before a close count for that month


class World:
    """Customers, links and prices, decided up front from the seed (small: per customer, not per event)."""

    def __init__(self, p: ScenarioParams, rng: random.Random):
        self.p, self.rng = p, rng
        self.months = [p.start_month]
        for _ in range(p.months - 1):
            self.months.append(next_month(self.months[-1]))
        self.systems = SYSTEMS[:p.source_systems]
        self.usage_systems = [s for s in self.systems if s != "billing"] + ["billing"]
        self.epoch = month_start(previous_month(p.start_month))
        self.customers = self._customers()
        self.links: dict[tuple[str, str], list[Link]] = {}
        self._resolution: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        for c in self.customers:
            known = self.epoch + timedelta(days=19) if c.first_month == 0 else self.month_at(c.first_month, 1, 0, 10)
            effective = self.epoch if c.first_month == 0 else month_start(self.months[c.first_month])
            for source, scid in c.source_ids():
                self.add_link(Link(source, scid, c.customer_id, effective, known))

    def month_at(self, index: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
        """An instant in month `index` (index = len(months) is the month after the last)."""
        base = month_start(self.months[index]) if index < len(self.months) else month_start(
            next_month(self.months[-1]))
        return base + timedelta(days=day - 1, hours=hour, minutes=minute)

    def _customers(self) -> list[Customer]:
        rng, p = self.rng, self.p
        width = max(4, len(str(p.customers)))
        numbers = rng.sample(range(10_000, 10_000 + 4 * p.customers), 3 * p.customers)
        customers = []
        for i in range(p.customers):
            segment = rng.choices(("smb", "midmarket", "enterprise"), (6, 3, 1))[0]
            first = 0 if i < p.customers * 0.85 else rng.randrange(1, p.months)
            c = Customer(f"cus_{i + 1:0{width}d}", f"Merchant {i + 1:0{width}d}", segment, rng.choice(OWNERS),
                         rng.choice(SEGMENT_PLAN[segment]), rng.choice(REGIONS),
                         rng.lognormvariate(0, 0.7) * {"smb": 0.6, "midmarket": 1.2, "enterprise": 3.0}[segment],
                         first, f"bc_{numbers[3 * i]}")
            c.uses_rules = c.plan != "starter" or rng.random() < RULES_ON_STARTER
            c.usage_ids.append(("product", f"pr_{numbers[3 * i + 1]}"))
            if rng.random() < 0.05:
                c.usage_ids.append(("product", f"pr_{numbers[3 * i + 2]}"))
            c.usage_ids.append(("billing", c.billing_id))
            for system in self.systems[2:]:
                if rng.random() < 0.6:
                    c.usage_ids.append((system, f"{PREFIX[system]}_{numbers[3 * i + 2] + 7}"))
            customers.append(c)
        mean = sum(c.weight for c in customers) / len(customers)
        for c in customers:
            c.weight /= mean
        return customers

    def add_link(self, link: Link) -> None:
        self.links.setdefault((link.source, link.source_customer_id), []).append(link)
        self._resolution.setdefault((link.source, link.source_customer_id), []).append(
            (micros(link.effective_from), micros(link.known_at), link.customer_id))

    def resolve(self, source: str, scid: str, moment: int, known_before: int) -> str | None:
        """SPEC §3.2 resolution at `moment` with only the links ingested before `known_before` (µs since 1970)."""
        best = None
        for effective, known, customer in self._resolution.get((source, scid), ()):
            if known < known_before and effective <= moment and (best is None or effective >= best[0]):
                best = (effective, customer)
        return best[1] if best else None

    def price(self, plan: str, index: int, repriced_from: int) -> tuple[int, dict[str, tuple[int, int]]]:
        return GROWTH_REPRICED if plan == "growth" and index >= repriced_from else PRICES[plan]


# -- rendering -------------------------------------------------------------------------------------------
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
FOREVER = 2**63
ZONES = {0: "Z", 60: "+01:00", -480: "-08:00", 330: "+05:30", -300: "-05:00"}
_DATES: dict[int, str] = {}  # day number → "YYYY-MM-DDT": a cache, so the hot path skips strftime


def micros(moment: datetime) -> int:
    """An instant as whole microseconds since 1970 (the generator's hot path works in integers)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def stamp_us(instant: int, offset_minutes: int = 0) -> str:
    """`stamp` for an instant in microseconds since 1970; the offset must be one of ZONES."""
    day, rest = divmod(instant + offset_minutes * 60_000_000, DAY_US)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = f"{EPOCH + timedelta(days=day):%Y-%m-%d}T"
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date}{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}{ZONES[offset_minutes]}"


def stamp(moment: datetime, offset_minutes: int = 0) -> str:
    """RFC 3339 with microseconds, the instant written in a zone `offset_minutes` east of UTC."""
    local = moment + timedelta(minutes=offset_minutes)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}"
    if offset_minutes == 0:
        return text + "Z"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{'+' if offset_minutes > 0 else '-'}{hours:02d}:{minutes:02d}"


def usage_line(fmt: str, event_id: str, source: str, scid: str, meter: str, quantity: int, when: str,
               extra: str = "") -> str:
    """One usage record in `fmt`; ids here are plain ASCII, so templates are exact JSON/CSV."""
    if fmt == "csv":
        return f"{event_id},{source},{scid},{meter},{quantity},{when}\n"
    if fmt == "cloudevents":
        data = f'{{"quantity":{quantity}{extra}}}'
        return (f'{{"specversion":"1.0","id":"{event_id}","source":"{source}","subject":"{scid}","type":"{meter}",'
                f'"time":"{when}","datacontenttype":"application/json","data":{data}}}\n')
    props = f',"properties":{{{extra[1:]}}}' if extra else ""
    return (f'{{"event_id":"{event_id}","source":"{source}","source_customer_id":"{scid}","meter":"{meter}",'
            f'"quantity":{quantity},"event_time":"{when}"{props}}}\n')


CSV_HEADER = "event_id,source,source_customer_id,meter,quantity,event_time\n"


def malformed_line(fmt: str, rng: random.Random, event_id: str, source: str, scid: str, when: str) -> str:
    """A record the usage contract must reject, of a kind real feeds produce."""
    if fmt == "csv":
        return rng.choice((
            f"{event_id},{source},{scid},api_calls,1.5,{when}\n",
            f"{event_id},{source},{scid},api_calls,3\n",
            f"{event_id},{source},{scid},api_calls,3,{when[:19]}\n",
            f"{event_id},{source},{scid},API Calls,3,{when}\n",
        ))
    if fmt == "cloudevents":
        return rng.choice((
            f'{{"specversion":"0.3","id":"{event_id}","source":"{source}","subject":"{scid}","type":"api_calls",'
            f'"time":"{when}","data":{{"quantity":1}}}}\n',
            f'{{"specversion":"1.0","id":"{event_id}","source":"{source}","type":"api_calls","time":"{when}"}}\n',
            f'{{"specversion":"1.0","id":"{event_id}","source":"{source}","subject":"{scid}","type":"api_calls",'
            f'"time":"{when}","Tenant-ID":"x","data":{{"quantity":1}}}}\n',
        ))
    good = usage_line("ndjson", event_id, source, scid, "api_calls", 3, when)
    return rng.choice((
        good[: len(good) // 2] + "\n",
        good.replace(when, when[:19]),
        good.replace('"quantity":3', '"quantity":-3'),
        good.replace('"quantity":3', '"quantity":"3"'),
        good.replace('"meter":"api_calls"', '"meter":"API-Calls"'),
        good.replace('{"event_id"', '{"customer":"x","event_id"'),
    ))


class Out:
    """A text file written line by line, with its counts."""

    def __init__(self, directory: Path, name: str, kind: str, fmt: str, header: str = ""):
        self.stats = FileStats(kind, name, fmt)
        self.handle: TextIO = open(directory / name, "w", encoding="utf-8", newline="")
        if header:
            self.write(header)

    def write(self, text: str) -> None:
        self.handle.write(text)
        self.stats.lines += text.count("\n")

    def close(self) -> FileStats:
        self.handle.close()
        return self.stats


# -- the scenario ----------------------------------------------------------------------------------------
class _Generator:
    def __init__(self, directory: Path, p: ScenarioParams):
        p.check()
        self.dir, self.p = directory, p
        self.rng = random.Random(p.seed)
        self.world = World(p, self.rng)
        self.steps: list[tuple[datetime, int, dict[str, Any]]] = []
        self.files: list[FileStats] = []
        self.units: dict[tuple[str, int, str], int] = {}  # (customer, month index, meter) → on-time units
        self.late_customers: dict[int, list[str]] = {}
        self.invoices: dict[int, list[tuple[str, str, int]]] = {}  # month → (invoice_id, customer, total)
        self.highlights: dict[str, Any] = {}
        self.counter = 0
        self.first_invoice_line = ""
        n = p.months
        self.plan_change_month, self.backdate_month, self.repriced_from = 1, 2, min(2, n - 1)
        self.active_months = sum(p.months - c.first_month for c in self.world.customers)
        self.per_customer_month = (p.usage_events / self.active_months if p.usage_events is not None
                                   else p.events_per_customer_month)

    def step(self, at: datetime, op: dict[str, Any]) -> None:
        self.steps.append((at, len(self.steps), {**op, "at": stamp(at)}))

    def ingest(self, at: datetime, stats: FileStats) -> None:
        self.files.append(stats)
        self.step(at, {"op": "ingest", "kind": stats.kind, "file": stats.file, "format": stats.format})

    def run(self) -> Scenario:
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        w = self.world
        self._prices()
        self._initial_attributes()
        self._initial_identities()
        for index in range(self.p.months):
            if index > 0:
                self._new_customers(index)
            if index == self.plan_change_month:
                self._plan_changes(index)
                self._price_change(index)
            if index == self.backdate_month:
                self._backdated_attributes(index)
                self._merge(index)
            if index == 0:
                self.step(w.month_at(1, 2, 8, 55), {"op": "close_refused", "month": w.months[1], "actor": CLOSER,
                                                   "note": "the month has not ended"})
            self._usage(index)
            self.step(w.month_at(index + 1, 2, 9), {"op": "close", "month": w.months[index], "actor": CLOSER})
            self._invoices(index)
            self._credits(index)
        steps = [op for _, _, op in sorted(self.steps, key=lambda s: (s[0], s[1]))]
        (self.dir / "steps.json").write_text(json.dumps(steps, indent=1) + "\n")
        return Scenario(self.dir, self.p, steps, self.files, self.highlights, time.perf_counter() - started)

    # -- reference data ----------------------------------------------------------------------------------
    def _prices(self) -> None:
        out = Out(self.dir, "prices.ndjson", "prices", "ndjson")
        for plan, (base, meters) in PRICES.items():
            out.write(_price_line(plan, previous_month(self.p.start_month), base, meters))
            out.stats.events += 1
        self.ingest(self.world.epoch + timedelta(days=19), out.close())

    def _price_change(self, index: int) -> None:
        month = self.world.months[self.repriced_from]
        out = Out(self.dir, f"prices_{month}.ndjson", "prices", "ndjson")
        out.write(_price_line("growth", month, *GROWTH_REPRICED))
        out.stats.events += 1
        self.highlights["price_change"] = {"plan": "growth", "effective_month": month}
        self.ingest(self.world.month_at(index, 25), out.close())

    def _initial_attributes(self) -> None:
        out = Out(self.dir, "attributes_initial.csv", "attributes", "csv",
                  "customer_id,effective_from,name,segment,owner,plan,region\n")
        for c in self.world.customers:
            if c.first_month == 0:
                out.write(f"{c.customer_id},{stamp(self.world.epoch)},{c.name},{c.segment},{c.owner},{c.plan},"
                          f"{c.region}\n")
                out.stats.events += 1
        self.ingest(self.world.epoch + timedelta(days=19), out.close())

    def _initial_identities(self) -> None:
        out = Out(self.dir, "identities_initial.ndjson", "identities", "ndjson")
        written = []
        for links in self.world.links.values():
            for link in links:
                if link.effective_from == self.world.epoch:
                    written.append(_link_line(link))
                    out.write(written[-1])
                    out.stats.events += 1
        out.write(written[len(written) // 2])  # a feed that sent one link twice
        out.stats.duplicates += 1
        self.ingest(self.world.epoch + timedelta(days=19), out.close())

    def _new_customers(self, index: int) -> None:
        joining = [c for c in self.world.customers if c.first_month == index]
        if not joining:
            return
        month = self.world.months[index]
        attributes = Out(self.dir, f"attributes_new_{month}.ndjson", "attributes", "ndjson")
        identities = Out(self.dir, f"identities_new_{month}.csv", "identities", "csv",
                         "source,source_customer_id,customer_id,effective_from\n")
        start = month_start(month)
        for c in joining:
            attributes.write(json.dumps({"customer_id": c.customer_id, "effective_from": stamp(start), "name": c.name,
                                         "segment": c.segment, "owner": c.owner, "plan": c.plan,
                                         "region": c.region}) + "\n")
            attributes.stats.events += 1
            for source, scid in c.source_ids():
                identities.write(f"{source},{scid},{c.customer_id},{stamp(start)}\n")
                identities.stats.events += 1
        at = self.world.month_at(index, 1, 0, 10)
        self.ingest(at, attributes.close())
        self.ingest(at, identities.close())

    def _plan_changes(self, index: int) -> None:
        """Upgrades effective mid-month: the customer-month keeps the plan in effect at the month's start."""
        moment = self.world.month_at(index, 15, 12)
        upgrades = {"starter": "growth", "growth": "enterprise"}
        chosen = [c for c in self.world.customers if c.first_month < index and c.plan in upgrades]
        chosen = self.rng.sample(chosen, max(1, len(chosen) // 25)) if chosen else []
        out = Out(self.dir, f"attributes_plan_changes_{self.world.months[index]}.ndjson", "attributes", "ndjson")
        for c in sorted(chosen, key=lambda c: c.customer_id):
            c.plan_from = (index + 1, upgrades[c.plan])
            out.write(json.dumps({"customer_id": c.customer_id, "effective_from": stamp(moment),
                                  "plan": upgrades[c.plan]}) + "\n")
            out.stats.events += 1
        self.highlights["plan_changes"] = [{"customer_id": c.customer_id, "from": c.plan, "to": c.plan_from[1],
                                            "effective_from": stamp(moment)} for c in sorted(chosen,
                                                                                          key=lambda c: c.customer_id)]
        self.ingest(moment + timedelta(minutes=5), out.close())

    def _backdated_attributes(self, index: int) -> None:
        """Arrives after two closes but takes effect in the first month: history is reshaped (SCD2)."""
        w = self.world
        veterans = [c for c in w.customers if c.first_month == 0]
        moved, cleared, unchanged = self.rng.sample(veterans, 3)
        effective = w.month_at(0, 10)
        out = Out(self.dir, f"attributes_backdated_{w.months[index]}.ndjson", "attributes", "ndjson")
        new_segment = "enterprise" if moved.segment != "enterprise" else "midmarket"
        new_owner = next(o for o in OWNERS if o != moved.owner)
        records = [
            {"customer_id": moved.customer_id, "effective_from": stamp(effective), "segment": new_segment,
             "owner": new_owner},
            {"customer_id": cleared.customer_id, "effective_from": stamp(w.month_at(index, 1)), "region": None},
            {"customer_id": unchanged.customer_id, "effective_from": stamp(w.month_at(1, 1)),
             "owner": unchanged.owner},  # changes nothing: starts no version
        ]
        for record in records:
            out.write(json.dumps(record) + "\n")
            out.stats.events += 1
        self.highlights["backdated"] = {"customer_id": moved.customer_id, "effective_from": stamp(effective),
                                        "segment": new_segment, "owner": new_owner,
                                        "arrives": stamp(w.month_at(index, 5))}
        self.ingest(w.month_at(index, 5), out.close())

    def _merge(self, index: int) -> None:
        """A product id moves to another customer mid-month; an orphan id is finally linked, back-dated."""
        w = self.world
        veterans = [c for c in w.customers if c.first_month == 0]
        source_customer, target = self.rng.sample(veterans, 2)
        scid = next(s for src, s in source_customer.usage_ids if src == "product")
        effective, known = w.month_at(index, 15, 12), w.month_at(index, 16)
        merge = Link("product", scid, target.customer_id, effective, known)
        orphan = Link("product", "pr_orphan", target.customer_id, w.epoch, known)
        for link in (merge, orphan):
            w.add_link(link)
        target.usage_ids.append(("product", "pr_orphan"))  # it was emitting all along, unlinked
        out = Out(self.dir, f"identities_merge_{w.months[index]}.ndjson", "identities", "ndjson")
        for link in (merge, orphan):
            out.write(_link_line(link))
            out.stats.events += 1
        self.highlights["merge"] = {"source": "product", "source_customer_id": scid,
                                    "from_customer": source_customer.customer_id, "to_customer": target.customer_id,
                                    "effective_from": stamp(effective)}
        self.highlights["orphan"] = {"source": "product", "source_customer_id": "pr_orphan",
                                     "linked_to": target.customer_id, "linked_at": stamp(known)}
        self.ingest(known, out.close())

    # -- usage ----------------------------------------------------------------------------------------
    def _usage(self, index: int) -> None:
        w, p, rng = self.world, self.p, self.rng
        month = w.months[index]
        batch = _MonthOfUsage(self, index)
        first_day = micros(month_start(month))
        days = (month_start(next_month(month)) - month_start(month)).days
        active = [c for c in w.customers if c.first_month <= index]
        ghost = w.usage_systems[0]
        # until its link arrives the orphan emits on its own; afterwards as its customer's id
        extra_ids = [(ghost, f"{PREFIX[ghost]}_unknown", 0.2)]
        if "orphan" not in self.highlights:
            extra_ids.append(("product", "pr_orphan", 0.3))
        random, emit = rng.random, batch.emit
        for day in range(days):
            day_us = first_day + day * DAY_US
            for c in active:
                rate = self.per_customer_month * c.weight / days
                ids, rules = c.usage_ids, c.uses_rules or c.plan_for(index) != "starter"
                for _ in range(int(rate) + (random() < rate % 1)):
                    source, scid = ids[int(random() * len(ids))]
                    emit(source, scid, day_us, rules)
            for source, scid, rate in extra_ids:
                if random() < rate:
                    emit(source, scid, day_us, True)
        for source, out in batch.outs.items():
            for text in batch.resend[source]:  # delayed retries of a flaky sender: exact duplicates
                out.write(text)
                out.stats.duplicates += 1
            if out.stats.duplicates == 0 and p.duplicate_share > 0 and source in batch.first_line:
                out.write(batch.first_line[source])  # small scenarios: one retry at least
                out.stats.duplicates += 1
            if out.stats.malformed == 0 and p.malformed_share > 0:
                self._malformed(out, source, first_day)
            self.ingest(w.month_at(index + 1, 1, 0, 30), out.close())
        self._late_extras(index, batch.late, batch.sent_product)
        self.ingest(w.month_at(index + 1, 10), batch.late.close())

    def _malformed(self, out: Out, source: str, day_us: int) -> None:
        self.counter += 1
        when = stamp_us(day_us + DAY_US // 2)
        out.write(malformed_line(out.stats.format, self.rng, f"bad-{self.counter:09d}", source, "x_1", when))
        out.stats.malformed += 1

    def _late_extras(self, index: int, late: Out, sent_product: list[str]) -> None:
        """Late files also resend some on-time events (duplicates) and two with another quantity (conflicts)."""
        for text in sent_product[2:22]:
            late.write(text)
            late.stats.duplicates += 1
        for text in sent_product[:2]:
            late.write(text.replace('"quantity":', '"quantity":1', 1))
            late.stats.conflicts += 1
        if late.stats.events == 0 and self.p.late_share > 0:  # small scenarios: one late event at least
            c = self.world.customers[0]
            source, scid = c.usage_ids[0]
            self.counter += 1
            late.write(usage_line("ndjson", f"{PREFIX[source]}-{self.counter:09d}", source, scid,
                                  SOURCE_METERS[source][0][0], 1, stamp(self.world.month_at(index, 3))))
            late.stats.events += 1
            self.late_customers.setdefault(index, []).append(c.customer_id)

    # -- invoices and credits --------------------------------------------------------------------------
    def _invoices(self, index: int) -> None:
        """One invoice per customer-month from billing: the plan's base fee and overage on the metered units."""
        w, rng, p = self.world, self.rng, self.p
        month = w.months[index]
        issued = w.month_at(index + 1, 3, 6)
        out = Out(self.dir, f"invoices_{month}.ndjson", "invoices", "ndjson")
        issued_list = self.invoices.setdefault(index, [])
        billed = [c for c in w.customers if c.first_month <= index]
        # a few invoices disagree with the ledger: a header total off its lines, a quantity off the meter
        off_total = set(rng.sample(range(len(billed)), max(1, len(billed) // 100)))
        off_quantity = set(rng.sample(range(len(billed)), max(1, len(billed) // 50)))
        odd: dict[str, list[str]] = {"total_mismatch": [], "billed_vs_metered": []}
        for i, c in enumerate(billed):
            invoice_id = f"in_{month.replace('-', '')}_{c.customer_id}"
            base, meters = w.price(c.plan_for(index), index, self.repriced_from)
            lines = [{"line_id": "L1", "kind": "subscription", "amount_cents": base}]
            for n, (meter, (included, unit)) in enumerate(sorted(meters.items()), start=2):
                quantity = self.units.get((c.customer_id, index, meter), 0)
                if i in off_quantity and n == 2:
                    delta = rng.randint(1, 50)
                    quantity = quantity - delta if quantity >= delta and rng.random() < 0.5 else quantity + delta
                    odd["billed_vs_metered"].append(invoice_id)
                lines.append({"line_id": f"L{n}", "kind": "usage", "meter": meter, "quantity": quantity,
                              "amount_cents": max(0, quantity - included) * unit})
            total = sum(line["amount_cents"] for line in lines)
            if i in off_total:
                total += rng.choice((-1, 1)) * rng.randint(1, 500)
                odd["total_mismatch"].append(invoice_id)
            text = _invoice_line(invoice_id, c.billing_id, month, issued, p.currency, total, lines)
            out.write(text)
            out.stats.events += 1
            if not issued_list:
                self.first_invoice_line = text
            issued_list.append((invoice_id, c.customer_id, total))
        self._odd_invoice(index, out, issued)
        self.highlights.setdefault("invoices", {})[month] = odd
        self.ingest(w.month_at(index + 1, 3, 9), out.close())

    def _odd_invoice(self, index: int, out: Out, issued: datetime) -> None:
        month = self.world.months[index]
        line = [{"line_id": "L1", "kind": "subscription", "amount_cents": 4_900}]
        if index == 0:  # from a billing account nobody linked
            out.write(_invoice_line(f"in_{month.replace('-', '')}_unlinked", "bc_unlinked", month, issued,
                                    self.p.currency, 4_900, line))
            out.stats.events += 1
        elif index == 1:  # exported in the wrong currency: rejected, kept in the quarantine
            out.write(_invoice_line(f"in_{month.replace('-', '')}_fx", self.world.customers[0].billing_id, month,
                                    issued, "EUR" if self.p.currency != "EUR" else "USD", 4_900, line))
            out.stats.malformed += 1
        else:  # the billing export sent one invoice twice
            out.write(self.first_invoice_line)
            out.stats.duplicates += 1

    def _credits(self, index: int) -> None:
        w, rng = self.world, self.rng
        at = w.month_at(index + 1, 20, 14)
        invoices = self.invoices[index]
        credited: dict[str, int] = {}

        def credit(invoice: tuple[str, str, int] | None, customer: str, amount: int, reason: str, key: str,
                   memo: str, expect: str, minutes: int = 0) -> None:
            self.step(at + timedelta(minutes=minutes), {
                "op": "credit", "customer": customer, "invoice": invoice[0] if invoice else None,
                "amount_cents": amount, "reason": reason, "actor": CREDITOR, "idempotency_key": key, "memo": memo,
                "expect": expect})
            if invoice and expect == "issued":
                credited[invoice[0]] = credited.get(invoice[0], 0) + amount

        for n, invoice in enumerate(rng.sample(invoices, max(1, len(invoices) // 30))):
            credit(invoice, invoice[1], max(1, invoice[2] * rng.randint(5, 20) // 100), "service_issue",
                   f"cr_{invoice[0]}_svc", f"outage credit {w.months[index]}", "issued", n)
        late_customers = sorted(set(self.late_customers.get(index, [])))[:3]
        by_customer = {inv[1]: inv for inv in invoices}
        for customer in late_customers:
            invoice = by_customer.get(customer)
            if invoice and invoice[2] - credited.get(invoice[0], 0) > 200:
                credit(invoice, customer, 200, "late_usage", f"cr_{invoice[0]}_late", "late usage waived", "issued", 30)
                self.highlights.setdefault("late_credit_invoices", []).append(invoice[0])
        fresh = [inv for inv in invoices if inv[0] not in credited]
        over, other = fresh[0], fresh[1]
        if index == 0:
            credit(over, over[1], over[2] + 1_000, "billing_error", f"cr_{over[0]}_over", "more than the invoice",
                   "refused", 40)
            late, others = self.highlights.get("late_credit_invoices"), list(credited)
            self.highlights["trace_invoice"] = (late or others or [over[0]])[0]
            self.highlights["trace_reason"] = ("its customer had late usage and a credit" if late else
                                               "it has a credit" if others else "a refused credit named it")
        elif index == 1:
            credit(other, over[1], 500, "goodwill", f"cr_{other[0]}_wrong", "credited to the wrong customer",
                   "refused", 40)
            first = next(s for _, _, s in self.steps if s["op"] == "credit" and s["expect"] == "issued")
            self.step(at + timedelta(minutes=45), {**{k: v for k, v in first.items() if k != "at"},
                                                   "expect": "repeat"})
        else:
            target = self.highlights.get("merge", {}).get("to_customer", over[1])
            credit(None, target, 2_500, "goodwill", f"cr_goodwill_{w.months[index]}_{target}",
                   "welcome after the account merge", "issued", 50)


class _MonthOfUsage:
    """One month's usage files being written: one per source system in its format, plus the late file."""

    def __init__(self, g: "_Generator", index: int):
        self.g, self.index = g, index
        w = g.world
        month = w.months[index]
        self.close_us = micros(w.month_at(index + 1, 2, 9))
        self.outs = {s: Out(g.dir, f"usage_{month}_{s}.{EXTENSION[FORMAT[s]]}", "usage", FORMAT[s],
                            CSV_HEADER if FORMAT[s] == "csv" else "") for s in w.usage_systems}
        self.late = Out(g.dir, f"usage_late_{month}.ndjson", "usage", "ndjson")
        self.resend: dict[str, list[str]] = {s: [] for s in self.outs}
        self.sent_product: list[str] = []
        self.first_line: dict[str, str] = {}
        # ten slots per source: a meter's share of slots is its weight
        self.wheels = {s: [(m, top) for m, weight, top in SOURCE_METERS[s] for _ in range(round(weight * 10))]
                       for s in SOURCE_METERS}

    def emit(self, source: str, scid: str, day_us: int, rules: bool) -> None:
        g, p = self.g, self.g.p
        random = g.rng.random
        meter, top = self.wheels[source][int(random() * 10)]
        if meter == "rules_evaluated" and not rules:
            meter, top = SOURCE_METERS[source][0][0], SOURCE_METERS[source][0][2]
        quantity = 0 if random() < 0.02 else 1 + int(random() * top)
        moment = day_us + int(random() * DAY_US)
        g.counter += 1
        n = g.counter
        is_late = random() < p.late_share
        out = self.late if is_late else self.outs[source]
        extra = f',"route":"/v2/charge","region":"{REGIONS[n % 3]}"' if (
            source == "gateway" or (source == "product" and n % 4 == 0)) else ""
        text = usage_line(out.stats.format, f"{PREFIX[source]}-{n:09d}", source, scid, meter, quantity,
                          stamp_us(moment, OFFSETS[n % len(OFFSETS)]), extra)
        out.write(text)
        out.stats.events += 1
        if not is_late and source not in self.first_line:
            self.first_line[source] = text
        if is_late:
            customer = g.world.resolve(source, scid, moment, FOREVER)
            if customer:
                g.late_customers.setdefault(self.index, []).append(customer)
        else:
            customer = g.world.resolve(source, scid, moment, self.close_us)
            if customer:
                key = (customer, self.index, meter)
                g.units[key] = g.units.get(key, 0) + quantity
            if source == "product" and len(self.sent_product) < 200 and random() < 0.05:
                self.sent_product.append(text)
        if random() < p.duplicate_share:
            if is_late or random() < 0.5:
                out.write(text)  # an immediate retry
                out.stats.duplicates += 1
            elif len(self.resend[source]) < 2_000:
                self.resend[source].append(text)
        if random() < p.malformed_share:
            g._malformed(out, source, day_us)


def _price_line(plan: str, month: str, base: int, meters: dict[str, tuple[int, int]]) -> str:
    return json.dumps({"plan": plan, "effective_month": month, "base_fee_cents": base, "meters": {
        m: {"included_units": inc, "unit_price_cents": unit} for m, (inc, unit) in meters.items()}}) + "\n"


def _link_line(link: Link) -> str:
    return json.dumps({"source": link.source, "source_customer_id": link.source_customer_id,
                       "customer_id": link.customer_id, "effective_from": stamp(link.effective_from)}) + "\n"


def _invoice_line(invoice_id: str, scid: str, month: str, issued: datetime, currency: str, total: int,
                  lines: list[dict[str, Any]]) -> str:
    return json.dumps({"invoice_id": invoice_id, "source": "billing", "source_customer_id": scid, "period": month,
                       "issued_at": stamp(issued), "currency": currency, "total_cents": total,
                       "lines": lines}) + "\n"


def scenario(directory: str | Path, params: ScenarioParams = ScenarioParams()) -> Scenario:
    """Write a scenario's input files and steps.json into `directory`; the same params give the same bytes."""
    return _Generator(Path(directory), params).run()
