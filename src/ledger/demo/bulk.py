"""The benchmarks' fast path: N usage events as NDJSON at close to a million lines a second, and the
identity links, attributes, prices and invoices of the same customers."""

from __future__ import annotations
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Sequence
from ledger.domain.time import month_start, next_month, previous_month

from ledger.demo.generate import OWNERS, PRICES, REGIONS, _price_line, stamp


@dataclass(frozen=True)
class UsageOnly:
    path: Path
    events: int
    duplicates: int
    lines: int
    bytes: int
    seconds: float

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


USAGE_ONLY_SOURCES = ("product", "gateway")
CHUNK = 8_192


def usage_only_ids(n_customers: int) -> Iterator[tuple[str, str, str]]:
    """(source, source_customer_id, customer_id) of the fast path's customers: one id per source each."""
    for i in range(n_customers):
        for source in USAGE_ONLY_SOURCES:
            yield source, f"{source[0]}{i:07d}", f"c{i:07d}"


def _months(months: Sequence[str] | int, start: str = "2026-01") -> list[str]:
    if isinstance(months, int):
        found = [start]
        for _ in range(months - 1):
            found.append(next_month(found[-1]))
        return found
    return list(months)


def _stamp_pool(rng: random.Random, months: list[str], per_month: int = 4_096) -> list[str]:
    pool = []
    for month in months:
        first = month_start(month)
        span = int((month_start(next_month(month)) - first).total_seconds() * 1_000_000)
        pool.extend(stamp(first + timedelta(microseconds=rng.randrange(span))) for _ in range(per_month))
    return pool


def usage_only(path: str | Path, n_events: int, n_customers: int, months: Sequence[str] | int = 3,
               dup_share: float = 0.0, seed: int = 0) -> UsageOnly:
    """N usage events as NDJSON, fast: every line is pre-formatted fragments joined, no JSON encoder per line.

    Customers are uniform over `usage_only_ids`; event ids are `u<n>`; a `dup_share` of lines repeat an
    earlier line of their chunk exactly (duplicates, not extra events).
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    ids = [f'","source":"{source}","source_customer_id":"{scid}","meter":"'
           for source, scid, _ in usage_only_ids(n_customers)]
    meters = [f'{meter}","quantity":{q},"event_time":"'
              for meter, top in (("api_calls", 40), ("api_calls", 40), ("fraud_checks", 3), ("rules_evaluated", 20))
              for q in range(1, top + 1)]
    stamps = _stamp_pool(rng, _months(months))
    # meter, quantity and time pre-joined into one pool: two draws a line instead of three
    tails = [f'{m}{t}"}}\n' for m, t in zip(rng.choices(meters, k=1 << 16), rng.choices(stamps, k=1 << 16))]
    choices, written, duplicates, lines = rng.choices, 0, 0, 0
    path = Path(path)
    with open(path, "w", encoding="ascii", newline="") as out:
        while written < n_events:
            n = min(CHUNK, n_events - written)
            chunk = [f'{{"event_id":"u{e}{c}{t}' for e, c, t in zip(
                range(written, written + n), choices(ids, k=n), choices(tails, k=n))]
            extra = int(n * dup_share) + (rng.random() < n * dup_share % 1)
            if extra:
                chunk.extend(choices(chunk, k=extra))
            out.write("".join(chunk))
            written += n
            duplicates += extra
            lines += n + extra
        size = out.tell()
    return UsageOnly(path, written, duplicates, lines, size, time.perf_counter() - started)


def usage_only_reference(directory: str | Path, n_customers: int, months: Sequence[str] | int = 3,
                         seed: int = 0) -> dict[str, Path]:
    """Identity links, attributes, prices and one invoice per customer-month for `usage_only`'s customers."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    months = _months(months)
    epoch = stamp(month_start(previous_month(months[0])))
    plans = list(PRICES)
    paths = {kind: directory / name for kind, name in (
        ("prices", "prices.ndjson"), ("attributes", "attributes.csv"), ("identities", "identities.ndjson"),
        ("invoices", "invoices.ndjson"))}
    with open(paths["prices"], "w") as out:
        for plan, (base, meters) in PRICES.items():
            out.write(_price_line(plan, previous_month(months[0]), base, meters))
    customer_plan = [plans[rng.randrange(3)] for _ in range(n_customers)]
    with open(paths["attributes"], "w", newline="") as out:
        out.write("customer_id,effective_from,name,segment,owner,plan,region\n")
        out.writelines(f"c{i:07d},{epoch},Customer {i},{('smb', 'midmarket', 'enterprise')[i % 3]},"
                       f"{OWNERS[i % len(OWNERS)]},{customer_plan[i]},{REGIONS[i % 3]}\n" for i in range(n_customers))
    with open(paths["identities"], "w") as out:
        for source, scid, customer in usage_only_ids(n_customers):
            out.write(f'{{"source":"{source}","source_customer_id":"{scid}","customer_id":"{customer}",'
                      f'"effective_from":"{epoch}"}}\n')
        out.writelines(f'{{"source":"billing","source_customer_id":"b{i:07d}","customer_id":"c{i:07d}",'
                       f'"effective_from":"{epoch}"}}\n' for i in range(n_customers))
    with open(paths["invoices"], "w") as out:
        for month in months:
            issued = stamp(month_start(next_month(month)) + timedelta(days=2))
            for i in range(n_customers):
                base = PRICES[customer_plan[i]][0]
                out.write(f'{{"invoice_id":"in_{month.replace("-", "")}_{i:07d}","source":"billing",'
                          f'"source_customer_id":"b{i:07d}","period":"{month}","issued_at":"{issued}",'
                          f'"currency":"USD","total_cents":{base},"lines":[{{"line_id":"L1","kind":"subscription",'
                          f'"amount_cents":{base}}}]}}\n')
    return paths
