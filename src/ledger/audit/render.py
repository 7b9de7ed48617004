"""Traces as text for a person: the same facts as the JSON, every number saying what it counts.

Money is integer cents with thousands separators and the currency named once per report; quantities say
`units`; counts carry their noun in the right number; a price entry reads as words, not as a mapping.
"""

from __future__ import annotations

from typing import Any, Sequence


def _n(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _count(n: int | None, noun: str) -> str:
    n = n or 0
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {noun}es" if noun.endswith(("ch", "s")) else f"{n:,} {noun}s"


def _positions(first: Any, last: Any) -> str:
    if first is None:
        return "no positions"
    return f"position {first:,}" if first == last else f"positions {first:,}–{last:,}"


def _price(entry: dict[str, Any] | None) -> str:
    """A meter's price entry in words: `5,000 units included, 2 cents a unit beyond`."""
    if not entry or entry.get("included_units") is None or entry.get("unit_price_cents") is None:
        return "the price does not list this meter"
    return (f"{_count(entry.get('included_units'), 'unit')} included, {_count(entry.get('unit_price_cents'), 'cent')} "
            "a unit beyond")


def _columns(headers: Sequence[str], rows: list[Sequence[Any]], numeric: Sequence[bool], indent: str = "  "
             ) -> list[str]:
    cells = [[("-" if v is None else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)))
              for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        return indent + "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                                  for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return [line(headers), *(line(r) for r in cells)]


def _exception_lines(exceptions: list[dict[str, Any]]) -> list[str]:
    if not exceptions:
        return ["open exceptions: none"]
    rows = [(e["kind"], e.get("meter") or "", e["expected"], e["actual"], e["difference"],
             e.get("unit") or ("cents" if e["kind"] in ("invoice_total_mismatch", "unattributed_invoice") else "units"))
            for e in exceptions]
    return ["open exceptions (difference = actual − expected, in the unit named):",
            *_columns(["kind", "meter", "expected", "actual", "difference", "unit"], rows,
                      [False, False, True, True, True, False])]


def render_invoice(trace: dict[str, Any]) -> str:
    """An invoice trace as text: the invoice, its customer's resolution, each line with the facts behind it."""
    inv, res = trace["invoice"], trace["resolution"]
    money = f"{inv['currency']} cents" if inv.get("currency") else "cents"
    out = [f"invoice {inv['invoice_id']}  period {inv['period']}  (amounts in {money})",
           f"  total {_n(inv['total_cents'])} cents; its lines sum to {_n(inv['lines_cents'])} cents",
           f"  fact at position {_n(inv['position'])}, recorded {inv['recorded_at']} from "
           f"{inv['recorded_from']} line {_n(inv['recorded_line'])}",
           f"  billed to {inv['source']}:{inv['source_customer_id']} → customer "
           + (f"{inv['customer_id']} via identity link at position {_n(res['position'])} (effective "
              f"{res['effective_from']})" if res and inv["customer_id"] else "UNATTRIBUTED (no link at issued_at)")]
    version = trace["attribute_version"]
    if version:
        out.append(f"  attributes: version {version['version']} (plan {version['plan']}, segment "
                   f"{version['segment']}, owner {version['owner']})")
    out.append("lines:")
    out.extend(_columns(["line", "kind", "meter", "quantity", "amount (cents)"],
                        [(line["line_id"], line["kind"], line.get("meter") or "", line.get("quantity"),
                          line["amount_cents"]) for line in trace["lines"]], [False, False, False, True, True]))
    for line in trace["lines"]:
        usage = line["usage"]
        if not usage:
            continue
        if usage.get("unattributed"):
            out.append(f"  {line['line_id']}: no metered usage: the invoice's customer is unattributed")
            continue
        price = usage.get("price_entry")
        positions = _positions(usage["first_position"], usage["last_position"])
        out.append(f"  {line['line_id']} ({line['meter']}): metered on time {_count(usage['units'], 'unit')} in "
                   f"{_count(usage['fact_count'], 'fact')}, {positions}, digest {usage['digest']}")
        out.append(f"      priced by plan {usage['plan']} (attribute version {usage['plan_version']}), price entry "
                   + (f"{price['effective_month']} at position {_n(price['position'])}: {_price(price['meter'])}"
                      if price else "none")
                   + f"; expected {_n(usage['expected_cents'])} cents; billed − metered = "
                     f"{_count(usage['billed_vs_metered_units'], 'unit')}")
    if trace["credits"]:
        out.append("credits:")
        out.extend(_columns(["credit", "amount (cents)", "reason", "actor", "issued at", "position"],
                            [(c["credit_id"], c["amount_cents"], c["reason"], c["actor"], c["issued_at"],
                              c["position"]) for c in trace["credits"]],
                            [False, True, False, False, False, True]))
    else:
        out.append("credits: none")
    out.extend(_late_lines(trace["late_adjustments"]))
    out.extend(render_pricing(trace.get("pricing"), trace.get("restatements", [])))
    out.extend(_exception_lines(trace["exceptions"]))
    return "\n".join(out)


def _late_lines(adjustments: list[dict[str, Any]]) -> list[str]:
    if not adjustments:
        return ["late adjustments: none"]
    return ["late adjustments:", *_columns(
        ["original month", "meter", "posted to", "units", "amount (cents)", "facts", "positions"],
        [(a["original_month"], a["meter"], a["posting_month"], a["units"], a["amount_cents"], a.get("event_count"),
          _positions(a.get("first_position"), a.get("last_position")).removeprefix("positions ")
          .removeprefix("position ")) for a in adjustments],
        [False, False, False, True, True, True, False])]


def render_customer_month(trace: dict[str, Any], currency: str) -> str:
    """A customer-month trace as text: its numbers, usage by meter, invoices, credits, adjustments, exceptions."""
    cm = trace["customer_month"]
    out = [f"customer {cm['customer_id']}  month {cm['month']}  plan {cm.get('plan') or '-'}  segment "
           f"{cm.get('segment') or '-'}  owner {cm.get('owner') or '-'}  (amounts in {currency} cents)",
           f"  usage {_count(cm['usage_units'], 'unit')} on time"]
    money = [("expected", "expected_cents"), ("invoiced", "invoiced_cents"), ("credits", "credits_cents"),
             ("late adjustments", "late_adjustment_cents"), ("restatements", "restatement_cents"),
             ("balance", "balance_cents"), ("variance", "variance_cents")]
    out.extend(_columns(["", "cents"], [(label, cm.get(key)) for label, key in money if key in cm],
                        [False, True], indent="    "))
    out.append("usage by meter (units; expected and billed in cents):")
    out.extend(_columns(["meter", "on time", "late", "included", "overage", "expected", "billed units",
                         "billed", "facts", "positions"],
                        [(u["meter"], u.get("on_time_units", 0), u.get("late_units", 0), u.get("included_units"),
                          u.get("overage_units"), u.get("expected_cents"), u.get("billed_units", 0),
                          u.get("billed_cents"), u.get("fact_count", 0),
                          _positions(u.get("first_position"), u.get("last_position")).removeprefix("positions ")
                          .removeprefix("position ")) for u in trace["usage"]],
                        [False, True, True, True, True, True, True, True, True, False]))
    if trace["invoices"]:
        out.append("invoices:")
        out.extend(_columns(["invoice", "total (cents)", "lines (cents)", "issued at", "position"],
                            [(i["invoice_id"], i["total_cents"], i.get("lines_cents"), i.get("issued_at"),
                              i["position"]) for i in trace["invoices"]], [False, True, True, False, True]))
    else:
        out.append("invoices: none")
    if trace["credits"]:
        out.append("credits:")
        out.extend(_columns(["credit", "amount (cents)", "reason", "actor", "issued at"],
                            [(c["credit_id"], c["amount_cents"], c["reason"], c["actor"], c["issued_at"])
                             for c in trace["credits"]], [False, True, False, False, False]))
    else:
        out.append("credits: none")
    out.extend(_late_lines(trace["late_adjustments"]))
    out.extend(render_pricing(trace.get("pricing"), trace.get("restatements", [])))
    out.extend(_exception_lines(trace["exceptions"]))
    return "\n".join(out)


def render_pricing(pricing: dict[str, Any] | None, restatements: list[dict[str, Any]]) -> list[str]:
    """The calculation that priced a month and its restatements with their causes, as lines of text."""
    out = []
    if pricing:
        promotion = pricing["promotion"]
        point = (f"as known at position {pricing['priced_at_position']} (closed at {pricing['close_position']})"
                 if pricing["status"] == "closed" else "as known now (open)")
        out.append(f"priced {point} by calculation {pricing['calculation']} ({pricing['plan_rule']}), in force "
                   + (f"since position {promotion['position']}: promoted by {promotion['actor']} at "
                      f"{promotion['promoted_at']} ({promotion['reason']})" if promotion
                      else "since the store's start"))
    out.append("restatements:" if restatements else "restatements: none")
    for r in restatements:
        out.append(f"  {r['original_month']} {r['meter'] or 'base fee'} → posted {r['posting_month']}: "
                   f"{r['amount_cents']:+,} cents, {r['cause']}, {_count(r['change_count'], 'change')} ({_positions(r['first_position'], r['last_position'])})")
        for fact in r["caused_by"]:
            out.append(f"      caused by {fact['kind']} fact at position {fact['position']}, recorded "
                       f"{fact['recorded_at']}: {_fact_summary(fact['fact'])}")
    return out


def _fact_summary(fact: dict[str, Any]) -> str:
    if "attributes" in fact:
        values = ", ".join(f"{k} {v if v is not None else '(cleared)'}" for k, v in sorted(fact["attributes"].items()))
        return f"{fact['customer_id']} from {fact['effective_from']}: {values or 'no change'}"
    if "effective_month" in fact:
        return f"plan {fact['plan']} from {fact['effective_month']}: base fee {fact['base_fee_cents']} cents"
    return f"{fact['name']} ({fact['plan_rule']}) by {fact['actor']}: {fact['reason']}"
