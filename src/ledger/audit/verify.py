"""Tamper evidence: recompute what the store says about itself and name the first position that disagrees.

Three checks, each independent of the others:

1. **chain** — every `ledger_events` row carries `chain_hash = sha256(previous link || position || topic || 0x00
   || state)` (`ledger.store.appender.chain_hash`), genesis 32 zero bytes. Recomputing it in position order,
   streamed through a server-side cursor, finds the first row whose stored link differs: an edited state, topic
   or position breaks the chain at that row; a deleted or inserted row breaks it at the next one. A rewrite that
   recomputes every later link is caught only against a head recorded elsewhere: `anchor`.
2. **usage batches** — usage facts are rows of `usage_facts`, each appended batch recorded by a
   `ledger.UsageBatchRecorded` event (in the chain) with its positions, count and the sha256 of its rows as
   copied. Each batch's stored rows are read back in the same binary encoding and hashed; every row must lie
   in a recorded batch. An edited, deleted or inserted usage row is found, named by its batch's positions
   (a deleted or stray row by its own position).
3. **quarantine** — the quarantine's own chain (migration 0031), recomputed over every column in id order.
4. **derived tables** — tables commands decide with (`usage_months`, which the period-close rule reads) are
   recomputed from the facts and compared: a month missing or added is named. The typed rows of the links,
   attribute changes, invoices and invoice lines (migration 0080, which the projections read) are decoded again
   from their events' JSON and compared: the first position whose rows differ is named. The calculation facts (SPEC §3.8)
   are checked against the rules that decided them: each promotion the next of its stream, of a name defined
   before it, with that definition's rule; each name defined once.
5. **anchors** — each anchor given (`--anchor POS:HASH`, or signed anchors from `ledger anchor`,
   `ledger.audit.anchors`) is checked against the recomputed chains.
6. **projections** — `ledger.projector.check`: every projection table, incremental against a rebuild from 0.

The chain covers every column of every events row: from migration 0030's boundary on, a link also covers the
row's stream and stream version (`ledger.store.appender.chain_hash`); rows before it keep the first format.
Checks 1–5 read one REPEATABLE READ snapshot, so appends running meanwhile cannot cause a false alarm.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import psycopg
from psycopg.pq import TransactionStatus

from ledger.domain.facts import CALC_DEFINED, CALC_PROMOTED, INITIAL_CALCULATION, USAGE_BATCH
from ledger.settings import Settings
from ledger.store.appender import GENESIS, chain_hash
from ledger.store.usage import stored_rows_digest

CHAIN_BATCH = 20_000

Progress = Callable[[int, int | None], None]  # (facts read so far, None)


@dataclass(frozen=True)
class Mismatch:
    """The first position at which a check found stored and recomputed to differ, and what differs."""

    check: str  # "chain" | "usage_batches"
    position: int | None
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "reason": self.reason, **self.details}


@dataclass(frozen=True)
class Anchor:
    """A chain link recorded outside the store (e.g. a previous `verify`'s head): position and hash."""

    position: int
    chain_hash: bytes
    label: str = "anchor"

    @classmethod
    def parse(cls, text: str) -> "Anchor":
        position, _, digest = text.partition(":")
        try:
            anchor = cls(int(position), bytes.fromhex(digest))
        except ValueError:
            raise ValueError(f"an anchor is POSITION:HEX (a verify head), got {text!r}") from None
        if len(anchor.chain_hash) != 32:
            raise ValueError(f"an anchor's hash is 64 hex digits, got {len(digest)}")
        return anchor


@dataclass(frozen=True)
class ChainResult:
    events: int  # rows of ledger_events: facts other than usage, and usage batches
    batches: int
    head_position: int | None
    head_hash: bytes
    mismatch: Mismatch | None
    breaks: int = 0  # links that differ, each counted once
    anchor_breaks: list[Mismatch] = field(default_factory=list)
    by_topic: dict[str, int] = field(default_factory=dict)  # rows of the topics counted apart (calculations)


@dataclass(frozen=True)
class UsageResult:
    facts: int  # usage rows stored
    batches: int
    mismatch: Mismatch | None


@dataclass
class VerifyReport:
    """What `ledger verify` found; `ok` when every check that ran agreed with the store."""

    chain: ChainResult
    usage: UsageResult
    projections: dict[str, dict[str, Any]] | None  # None: not checked
    projection_error: str | None = None  # the projector failed on these facts: not ok either
    seconds: float = 0.0
    quarantine: Mismatch | None = None
    quarantine_records: int = 0
    derived: Mismatch | None = None
    anchors: list[Mismatch] = field(default_factory=list)
    anchors_checked: int = 0
    calculations: Mismatch | None = None

    @property
    def calculation_facts(self) -> dict[str, int]:
        """The calculation facts walked by the chain: definitions and promotions."""
        return {"defined": self.chain.by_topic.get(CALC_DEFINED.topic, 0),
                "promoted": self.chain.by_topic.get(CALC_PROMOTED.topic, 0)}

    @property
    def projection_differences(self) -> list[str]:
        return sorted(t for t, r in (self.projections or {}).items() if not r.get("equal"))

    @property
    def first_mismatch(self) -> Mismatch | None:
        return _first(self.chain.mismatch, self.usage.mismatch, self.derived, self.calculations, *self.anchors)

    @property
    def ok(self) -> bool:
        return (self.first_mismatch is None and self.quarantine is None and not self.projection_differences
                and self.projection_error is None)

    @property
    def facts(self) -> int:
        return self.chain.events - self.chain.batches + self.usage.facts

    def as_dict(self) -> dict[str, Any]:
        first = self.first_mismatch
        return {
            "facts": self.facts,
            "head": {"position": self.chain.head_position, "chain_hash": self.chain.head_hash.hex()},
            "chain": "ok" if self.chain.mismatch is None else {**self.chain.mismatch.as_dict(),
                                                                "broken_links": self.chain.breaks},
            "usage_batches": "ok" if self.usage.mismatch is None else self.usage.mismatch.as_dict(),
            "quarantine": "ok" if self.quarantine is None else self.quarantine.as_dict(),
            "derived_tables": "ok" if self.derived is None else self.derived.as_dict(),
            "calculations": {**self.calculation_facts,
                             "check": "ok" if self.calculations is None else self.calculations.as_dict()},
            "anchors": {"checked": self.anchors_checked, "broken": [m.as_dict() for m in self.anchors]},
            "projections": ({"error": self.projection_error} if self.projection_error is not None
                            else "skipped" if self.projections is None else self.projections),
            "first_mismatch": None if first is None else {"check": first.check, **first.as_dict()},
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
        }


def verify_store(conn: psycopg.Connection, *, projections: bool = True, anchor: Anchor | None = None,
                 signed: list | None = None, trusted_key: str | None = None,
                 batch_size: int = CHAIN_BATCH, progress: Progress | None = None,
                 settings: Settings | None = None) -> VerifyReport:
    """Run every check; the chain and the mirror read one snapshot, projections are rechecked after."""
    started = time.perf_counter()
    signed = signed or []
    with _snapshot(conn):
        bad_anchors, chain_anchors, quarantine_anchors = _anchors_to_check(anchor, signed, trusted_key)
        chain = verify_chain(conn, anchors=chain_anchors, batch_size=batch_size, progress=progress)
        usage = verify_usage_batches(conn)
        quarantine, quarantined = verify_quarantine(conn, quarantine_anchors)
        derived = _first(verify_usage_months(conn), verify_fact_rows(conn))
        calculations = verify_calculations(conn)
        bad_anchors += chain.anchor_breaks + _recorded_after_anchors(conn, signed)
    checked, error = None, None
    if projections:
        try:
            checked = check_projections(conn, settings)
        except psycopg.Error as failure:  # facts the projector cannot read are a finding, not a crash
            error = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    report = VerifyReport(chain, usage, checked, error, time.perf_counter() - started, quarantine, quarantined,
                          derived, bad_anchors, len(signed) + (anchor is not None), calculations)
    record_run(conn, report)
    return report


def record_run(conn: psycopg.Connection, report: VerifyReport) -> None:
    """Keep what this verify found in `verify_runs` (migration 0060), which the web pages' badge reads. A store
    that cannot take the row (a read-only transaction of the caller's) still gets its report: the row is skipped."""
    first = report.first_mismatch
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO verify_runs (head_position, head_hash, facts, ok, projections, first_mismatch, seconds)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)",
                (report.chain.head_position, report.chain.head_hash.hex(), report.facts, report.ok,
                 report.projections is not None or report.projection_error is not None,
                 None if first is None else json.dumps({"check": first.check, **first.as_dict()}, default=str),
                 report.seconds))
    except psycopg.Error as error:
        from ledger.logging import get_logger

        get_logger().warning("verify_run_not_recorded", error=str(error).strip().splitlines()[0])


@contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[None]:
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield  # the caller's transaction is the snapshot
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


# -- 1. the hash chain ---------------------------------------------------------------------------------
def chain_format_boundary(conn: psycopg.Connection) -> int:
    """The first position whose link covers its stream and version too (migration 0030)."""
    row = conn.execute("SELECT from_position FROM ledger_chain_format WHERE format = 2").fetchone()
    return row[0] if row else 1


def verify_chain(conn: psycopg.Connection, *, anchor: Anchor | None = None, anchors: list[Anchor] | None = None,
                 batch_size: int = CHAIN_BATCH, progress: Progress | None = None) -> ChainResult:
    """Each stored link equals the link recomputed from genesis; streams the log with flat memory.

    After a break the walk goes on from the stored link, so every independent break is counted (an edit
    breaks one link, a deletion the link after it) and the first is reported. Each anchor's link is compared
    with the link recomputed at its position.
    """
    previous, previous_position = GENESIS, None
    events = batches = breaks = 0
    first: Mismatch | None = None
    anchor_breaks: list[Mismatch] = []
    waiting = sorted([*(anchors or []), *([anchor] if anchor else [])], key=lambda a: a.position)
    batch_topic = USAGE_BATCH.topic
    by_topic = {CALC_DEFINED.topic: 0, CALC_PROMOTED.topic: 0}
    with _snapshot(conn):
        boundary = chain_format_boundary(conn)
        with conn.cursor(name="ledger_verify_chain", binary=True) as cur:
            cur.itersize = batch_size
            cur.execute("SELECT notification_id, originator_id, originator_version, topic, state, chain_hash"
                        " FROM ledger_events ORDER BY notification_id")
            while rows := cur.fetchmany(batch_size):
                for position, stream, version, topic, state, stored in rows:
                    if topic is None or state is None:
                        link = None
                    elif position >= boundary:
                        link = chain_hash(previous, position, topic, state, stream.bytes, version)
                    else:
                        link = chain_hash(previous, position, topic, state)
                    if stored != link:
                        breaks += 1
                        if first is None:
                            first = Mismatch("chain", position, _link_reason(previous_position, stored, link),
                                             _hashes(previous_position, stored, link))
                        link = stored or link or previous
                    while waiting and position >= waiting[0].position:
                        found = _anchor_break(waiting.pop(0), position, link)
                        if found is not None:
                            anchor_breaks.append(found)
                    previous, previous_position = link, position
                    events += 1
                    batches += topic == batch_topic
                    if topic in by_topic:
                        by_topic[topic] += 1
                if progress is not None:
                    progress(events, None)
    for left in waiting:  # the log ends before the anchored position
        anchor_breaks.append(Mismatch("anchor", left.position,
                                      f"{left.label}: the log ends at position {previous_position} but position "
                                      f"{left.position} was anchored: facts were removed from its end"))
    return ChainResult(events, batches, previous_position, previous, first, breaks, anchor_breaks, by_topic)


def _link_reason(previous_position: int | None, stored: bytes | None, link: bytes | None) -> str:
    if link is None:
        return "its topic or state is null"
    if stored is None:
        return "it has no chain_hash"
    reason = ("stored chain_hash differs from the recomputed link: its state, topic or position was changed, "
              "or a fact before it was deleted or inserted")
    # gaps between events are normal (usage facts take positions of their own; a rolled-back append leaves one)
    reason += (" (it is the first event of the chain)" if previous_position is None
               else f" (the event before it in the chain is at position {previous_position})")
    return reason


def _hashes(previous_position: int | None, stored: bytes | None, link: bytes | None) -> dict[str, Any]:
    return {"previous_position": previous_position, "stored": stored.hex() if stored else None,
            "recomputed": link.hex() if link else None}


def _anchor_break(anchor: Anchor, position: int, link: bytes) -> Mismatch | None:
    if position > anchor.position:
        return Mismatch("anchor", anchor.position,
                        f"{anchor.label}: anchored position {anchor.position} is no longer in the log")
    if link != anchor.chain_hash:
        return Mismatch("anchor", position, f"{anchor.label}: the link recomputed at position {position} differs "
                                            "from the anchored one: the chain up to here was rewritten",
                        {"anchored": anchor.chain_hash.hex(), "recomputed": link.hex()})
    return None


def _anchors_to_check(anchor: Anchor | None, signed: list, trusted_key: str | None) -> tuple[
        list[Mismatch], list[Anchor], list[tuple[int, bytes, str]]]:
    """Signed anchors whose signature fails (rules 1–2), and the chain and quarantine links to compare."""
    from ledger.audit.anchors import signature_problem

    broken, chain, quarantine = [], [anchor] if anchor else [], []
    for number, item in enumerate(signed, start=1):
        label = f"signed anchor {number} (position {item.position}, {item.anchored_at})"
        problem = signature_problem(item, trusted_key or "")
        if problem is not None:
            broken.append(Mismatch("anchor", item.position, f"{label}: {problem}"))
            continue
        if item.position is not None:
            chain.append(Anchor(item.position, bytes.fromhex(item.chain_hash), label))
        if item.quarantine_id is not None:
            quarantine.append((item.quarantine_id, bytes.fromhex(item.quarantine_hash), label))
    return broken, chain, quarantine


_RECORDED_BEFORE = """
SELECT notification_id, ledger_state(state) -> 'timestamp' ->> '_data_' FROM ledger_events
WHERE notification_id > %(position)s
  AND (ledger_state(state) -> 'timestamp' ->> '_data_')::timestamptz < %(bound)s
ORDER BY notification_id LIMIT 1
"""


def _recorded_after_anchors(conn: psycopg.Connection, signed: list) -> list[Mismatch]:
    """Rule 5: no fact after an anchor's position says it was recorded before any session open at signing began."""
    from ledger.audit.anchors import recorded_bound

    found = []
    for number, item in enumerate(signed, start=1):
        if item.position is None:
            continue
        row = conn.execute(_RECORDED_BEFORE, {"position": item.position, "bound": recorded_bound(item)}).fetchone()
        if row is not None:
            found.append(Mismatch("anchor", row[0], f"signed anchor {number} (position {item.position}, "
                                                    f"{item.anchored_at}): the fact at position {row[0]}, after it, "
                                                    f"says it was recorded at {row[1]}, before any session open when "
                                                    "the anchor was signed: it was written behind the ledger's back"))
    return found


# -- 3. the quarantine's chain ----------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NULL_FIELD = b"\xff\xff\xff\xff"


def _field(value: bytes | None) -> bytes:
    return _NULL_FIELD if value is None else len(value).to_bytes(4, "big") + value


def quarantine_link(previous: bytes, row: tuple) -> bytes:
    """The link of one quarantine row (as migration 0031's trigger writes it), recomputed here independently."""
    qid, kind, source_file, line, raw_text, raw_bytes, name, reason, digest, at = row
    text = lambda v: None if v is None else v.encode("utf-8")  # noqa: E731
    return hashlib.sha256(b"".join((
        previous, qid.to_bytes(8, "big", signed=True), _field(text(kind)), _field(text(source_file)),
        _field(None if line is None else line.to_bytes(8, "big", signed=True)), _field(text(raw_text)),
        _field(None if raw_bytes is None else bytes(raw_bytes)), _field(text(name)), _field(text(reason)),
        _field(bytes(digest)), ((at - _EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True),
    ))).digest()


def verify_quarantine(conn: psycopg.Connection, anchors: list[tuple[int, bytes, str]] = ()) -> tuple[
        Mismatch | None, int]:
    """Every quarantine row's stored link equals the recomputed one, and each anchored link still stands."""
    previous, count, first = GENESIS, 0, None
    waiting = sorted(anchors)
    with _snapshot(conn), conn.cursor(name="ledger_verify_quarantine") as cur:
        cur.execute("SELECT quarantine_id, kind, source_file, line_number, raw_text, raw_bytes, field, reason,"
                    " record_digest, quarantined_at, chain_hash FROM quarantine ORDER BY quarantine_id")
        for *row, stored in cur:
            link = quarantine_link(previous, row)
            stored = None if stored is None else bytes(stored)
            if stored != link and first is None:
                first = Mismatch("quarantine", None, f"quarantine record {row[0]} ({row[2]} line {row[3]}): its "
                                                     "stored chain_hash differs from the recomputed link: it, or a "
                                                     "record before it, was changed, deleted or inserted",
                                 {"quarantine_id": row[0]})
            while waiting and row[0] >= waiting[0][0]:
                qid, anchored, label = waiting.pop(0)
                if first is None and (row[0] != qid or link != anchored):
                    first = Mismatch("quarantine", None, f"{label}: the quarantine link recomputed at record {qid} "
                                                         "differs from the anchored one", {"quarantine_id": qid})
            previous, count = stored or link, count + 1
    if waiting and first is None:
        first = Mismatch("quarantine", None, f"{waiting[0][2]}: quarantine record {waiting[0][0]} was anchored and "
                                             "is no longer there")
    return first, count


# -- 4. derived tables --------------------------------------------------------------------------------
_MONTHS_OF_FACTS = "SELECT DISTINCT to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM') FROM usage_facts"


def verify_usage_months(conn: psycopg.Connection) -> Mismatch | None:
    """`usage_months` (read by the period-close rule) equals the months of the usage facts."""
    with _snapshot(conn):
        stored = {m for (m,) in conn.execute("SELECT month FROM usage_months")}
        recomputed = {m for (m,) in conn.execute(_MONTHS_OF_FACTS)}
        if stored == recomputed:
            return None
        missing, extra = sorted(recomputed - stored), sorted(stored - recomputed)
        if missing:
            position = conn.execute("SELECT min(position) FROM usage_facts WHERE "
                                    "to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM') = %s", (missing[0],)).fetchone()[0]
            return Mismatch("derived_tables", position, f"usage_months lacks month {missing[0]}, which the usage "
                                                        f"fact at position {position} is in (the period-close rule "
                                                        "reads this table)", {"missing": missing, "extra": extra})
        return Mismatch("derived_tables", None, f"usage_months holds month {extra[0]}, which no usage fact is in",
                        {"missing": missing, "extra": extra})


# Each typed table of migration 0080, and its rows decoded afresh from the JSON of the facts in ledger_events (the
# statement is this check's own, not the trigger's: the check stays independent of what wrote the rows).
_TYPED_FACT_ROWS = {
    "link_fact_rows": (
        "position, source, source_customer_id, customer_id, effective_from",
        """SELECT e.notification_id, s ->> 'source', s ->> 'source_customer_id', s ->> 'customer_id',
                  (s ->> 'effective_from')::timestamptz
           FROM ledger_events e, LATERAL ledger_state(e.state) s
           WHERE e.topic = 'ledger.CustomerIdentityLinked'"""),
    "attribute_fact_rows": (
        "position, customer_id, effective_from, attrs",
        """SELECT e.notification_id, s ->> 'customer_id', (s ->> 'effective_from')::timestamptz, s -> 'attributes'
           FROM ledger_events e, LATERAL ledger_state(e.state) s
           WHERE e.topic = 'ledger.CustomerAttributesChanged'"""),
    "invoice_fact_rows": (
        "position, invoice_id, source, source_customer_id, period, issued_at, currency, total_cents, lines_cents",
        """SELECT e.notification_id, s ->> 'invoice_id', s ->> 'source', s ->> 'source_customer_id', s ->> 'period',
                  (s ->> 'issued_at')::timestamptz, s ->> 'currency', (s ->> 'total_cents')::bigint,
                  (SELECT coalesce(sum((l ->> 'amount_cents')::bigint), 0) FROM jsonb_array_elements(s -> 'lines') l)
           FROM ledger_events e, LATERAL ledger_state(e.state) s
           WHERE e.topic = 'ledger.InvoiceIssued'"""),
    "invoice_line_rows": (
        "position, line_no, invoice_id, line_id, kind, meter, quantity, amount_cents",
        """SELECT e.notification_id, l.n::int, s ->> 'invoice_id', l.line ->> 'line_id', l.line ->> 'kind',
                  l.line ->> 'meter', (l.line ->> 'quantity')::bigint, (l.line ->> 'amount_cents')::bigint
           FROM ledger_events e, LATERAL ledger_state(e.state) s,
                LATERAL jsonb_array_elements(s -> 'lines') WITH ORDINALITY AS l(line, n)
           WHERE e.topic = 'ledger.InvoiceIssued'"""),
}


def verify_fact_rows(conn: psycopg.Connection) -> Mismatch | None:
    """The typed rows the projections read equal their facts' JSON: else the first position where they differ."""
    found: list[Mismatch] = []
    with _snapshot(conn):
        for table, (columns, decoded) in _TYPED_FACT_ROWS.items():
            stored = f"SELECT {columns} FROM {table}"
            position = conn.execute(
                f"SELECT min(d.position) FROM (({decoded} EXCEPT ALL {stored}) UNION ALL"
                f" ({stored} EXCEPT ALL {decoded})) AS d({columns})").fetchone()[0]
            if position is not None:
                found.append(Mismatch("derived_tables", position,
                                      f"{table} differs at position {position} from that fact as recorded (its "
                                      "JSON in ledger_events, which the chain covers)", {"table": table}))
    return _first(*found)


def _first(*mismatches: Mismatch | None) -> Mismatch | None:
    found = [m for m in mismatches if m is not None]
    return min(found, key=lambda m: (m.position is None, m.position or 0)) if found else None


def verify_calculations(conn: psycopg.Connection) -> Mismatch | None:
    """The first calculation fact the rules of SPEC §3.8 would not have appended: a name defined twice, a promotion
    out of its stream's sequence, of a name not defined before it, or with another rule than its definition's."""
    rules = dict([INITIAL_CALCULATION])
    defined_at: dict[str, int] = {}
    with _snapshot(conn):
        facts = conn.execute("""
            SELECT position, 'defined', name, plan_rule, NULL::bigint FROM calculation_defined_facts
            UNION ALL
            SELECT position, 'promoted', name, plan_rule, sequence FROM calculation_promoted_facts
            ORDER BY 1""").fetchall()
    expected_sequence = 1
    for position, kind, name, rule, sequence in facts:
        if kind == "defined":
            if name in rules:
                where = f"position {defined_at[name]}" if name in defined_at else "every store's start"
                return Mismatch("calculations", position, f"calculation {name!r} is defined again at position "
                                f"{position}, after {where}: a name is defined once", {"name": name})
            rules[name], defined_at[name] = rule, position
            continue
        if sequence != expected_sequence:
            return Mismatch("calculations", position, f"the promotion at position {position} is number {sequence} "
                            f"of its stream, where {expected_sequence} comes next", {"name": name})
        expected_sequence += 1
        if name not in rules:
            return Mismatch("calculations", position, f"the promotion at position {position} names {name!r}, "
                            "which no definition before it defines", {"name": name})
        if rules[name] != rule:
            return Mismatch("calculations", position, f"the promotion at position {position} gives {name!r} the "
                            f"rule {rule!r}; its definition says {rules[name]!r}", {"name": name})
    return None


# -- 2. usage batches ---------------------------------------------------------------------------------
_BATCHES = """
SELECT e.notification_id, (s ->> 'first_position')::bigint, (s ->> 'last_position')::bigint,
       (s ->> 'count')::bigint, s ->> 'rows_sha256', s ->> 'recorded_from', (s ->> 'first_line')::bigint
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = %(topic)s
ORDER BY e.notification_id
"""
_HELD = "SELECT count(*) FROM usage_facts WHERE position BETWEEN %(first)s AND %(last)s"
_FIRST_MISSING = """
SELECT min(p) FROM (SELECT generate_series(%(first)s::bigint, %(last)s::bigint)
                    EXCEPT SELECT position FROM usage_facts WHERE position BETWEEN %(first)s AND %(last)s) m(p)
"""
_FIRST_STRAY = """
SELECT min(u.position) FROM usage_facts u
WHERE NOT EXISTS (SELECT 1 FROM ledger_events e, LATERAL ledger_state(e.state) s
                  WHERE e.topic = %(topic)s
                    AND u.position BETWEEN (s ->> 'first_position')::bigint AND (s ->> 'last_position')::bigint)
"""


def verify_usage_batches(conn: psycopg.Connection) -> UsageResult:
    """Every usage row lies in a recorded batch whose rows still hash to the recorded sha256; else the first that does not."""
    found: list[Mismatch] = []
    topic = {"topic": USAGE_BATCH.topic}
    batches, stored = [], 0
    try:
        with _snapshot(conn), conn.transaction():
            batches = conn.execute(_BATCHES, topic).fetchall()
            stored = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
            # a batch's rows are read once, for their digest; only a batch whose digest differs is counted, to
            # tell a missing or added row from an edited one
            for batch_at, first, last, count, digest, source, first_line in batches:
                where = (f"the batch recorded at position {batch_at} (positions {first}–{last}, {source} "
                         f"from line {first_line})")
                if last - first + 1 == count and stored_rows_digest(conn, first, last) == digest:
                    continue
                span = {"first": first, "last": last}
                held = conn.execute(_HELD, span).fetchone()[0]
                if held != count or last - first + 1 != count:
                    missing = conn.execute(_FIRST_MISSING, span).fetchone()[0]
                    found.append(Mismatch("usage_batches", missing if missing is not None else first,
                                          f"{where} records {count} usage facts, {held} are stored"
                                          + (f": position {missing} is missing" if missing is not None else ""),
                                          {"batch": batch_at}))
                else:
                    found.append(Mismatch("usage_batches", first,
                                          f"the usage rows of {where} no longer hash to its rows_sha256: "
                                          "a row was edited", {"batch": batch_at}))
                break
            # every batch holds exactly its recorded rows (their digests match): any other row lies in none
            if not found and stored != sum(b[3] for b in batches):
                stray = conn.execute(_FIRST_STRAY, topic).fetchone()[0]
                found.append(Mismatch("usage_batches", stray,
                                      f"the usage_facts row at position {stray} belongs to no recorded batch"))
    except psycopg.errors.DataException as error:
        found.append(Mismatch("usage_batches", None, f"a usage batch's state no longer decodes as JSON: "
                                                     f"{str(error).strip().splitlines()[0]}"))
    return UsageResult(stored, len(batches), found[0] if found else None)


# -- 3. projections -----------------------------------------------------------------------------------
def check_projections(conn: psycopg.Connection, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Each projection table's checksum, incremental against a rebuild from position 0 (the projector's rule)."""
    from ledger import projector

    projector.project(conn, settings)
    return projector.check(conn, settings)


def _count(n: int, noun: str) -> str:
    """`1 fact`, `2 facts`, `3 batches`."""
    if n == 1:
        return f"{n:,} {noun}"
    return f"{n:,} {noun}es" if noun.endswith("ch") else f"{n:,} {noun}s"


def describe(report: VerifyReport) -> list[str]:
    """The report for people: one line per check, then the verdict."""
    chain = report.chain
    lines = [f"verified {_count(report.facts, 'fact')} in {report.seconds:.2f} s"]
    if chain.mismatch is None:
        head = "empty log" if chain.head_position is None else \
            f"head at position {chain.head_position:,}: {chain.head_hash.hex()}"
        lines.append(f"chain: ok ({head})")
    else:
        lines.append(f"chain: first mismatch at position {chain.mismatch.position}: {chain.mismatch.reason}"
                     f" ({_count(chain.breaks, 'broken link')} in all)")
    usage = report.usage
    if usage.mismatch is None:
        lines.append(f"usage batches: ok ({_count(usage.facts, 'usage fact')} in {_count(usage.batches, 'batch')})")
    else:
        lines.append(f"usage batches: first mismatch at position {usage.mismatch.position}: {usage.mismatch.reason}")
    lines.append(f"quarantine: ok ({_count(report.quarantine_records, 'record')} chained)" if report.quarantine is None
                 else f"quarantine: {report.quarantine.reason}")
    lines.append("derived tables: ok (usage_months = the months of the usage facts; the typed link, attribute, invoice"
                 " and line rows = their facts as recorded)" if report.derived is None
                 else f"derived tables: {report.derived.reason}")
    calc = report.calculation_facts
    lines.append(f"calculations: ok ({calc['defined']} definitions, {calc['promoted']} promotions, in the chain and "
                 "as their rules decide)" if report.calculations is None
                 else f"calculations: {report.calculations.reason}")
    if report.anchors_checked:
        lines.append(f"anchors: ok ({_count(report.anchors_checked, 'anchor')} checked)" if not report.anchors else
                     f"anchors: {len(report.anchors)} of {report.anchors_checked} broken; first: "
                     f"{report.anchors[0].reason}")
    if report.projection_error is not None:
        lines.append(f"projections: could not be rebuilt from these facts: {report.projection_error}")
    elif report.projections is None:
        lines.append("projections: not checked (--skip-projections)")
    elif report.projection_differences:
        for table in report.projection_differences:
            result = report.projections[table]
            lines.append(f"projections: {table} differs: incremental {result.get('incremental')} "
                         f"≠ rebuild {result.get('rebuild')}")
    else:
        lines.append(f"projections: ok ({_count(len(report.projections), 'table')}, incremental = rebuild)")
    first = report.first_mismatch
    if first is not None:
        lines.append(f"FAILED: first mismatch at position {first.position}: {first.reason}")
    elif report.quarantine is not None:
        lines.append(f"FAILED: {report.quarantine.reason}")
    elif not report.ok:
        lines.append("FAILED: the projections do not agree with a rebuild from the facts")
    else:
        lines.append("ok")
    return lines
