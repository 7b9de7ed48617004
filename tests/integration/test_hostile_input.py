"""Hostile input: every record of every kind and format becomes a fact or a quarantined record with a reason,
and nothing a file holds can make a later `project`, export or `verify` fail."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime, timezone

import pytest

from ledger import projector
from ledger.audit.verify import verify_store
from ledger.commands.ingest import ingest_file
from ledger.errors import InputFileError
from tests.builders import invoice, link, usage

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
NUL_ESCAPE = "\\u0000"


def attributes(n: int = 1, **overrides):
    return {"customer_id": f"cus_{n}", "effective_from": "2025-12-01T00:00:00Z", "name": f"Customer {n}",
            **overrides}


def price(n: int = 1, **overrides):
    return {"plan": f"plan_{n}", "effective_month": "2026-01", "base_fee_cents": 1000,
            "meters": {"api_calls": {"included_units": 10, "unit_price_cents": 2}}, **overrides}


def credit(n: int = 1, **overrides):
    return {"credit_id": f"cr_{n}", "customer_id": "cus_1", "amount_cents": 100, "reason": "goodwill",
            "actor": "finance@example.com", "issued_at": "2026-02-10T00:00:00Z", **overrides}


# (kind, a valid record builder, the string field to poison)
KINDS = {
    "usage": (lambda n: usage(n), "source_customer_id"),
    "identities": (lambda n: link(scid=f"pr_{n}"), "customer_id"),
    "attributes": (lambda n: attributes(n), "name"),
    "prices": (lambda n: price(n), "plan"),
    "invoices": (lambda n: invoice(f"in_{n}", lines=[{"line_id": "L1", "kind": "subscription",
                                                        "amount_cents": 1000}]), "source_customer_id"),
    "credits": (lambda n: credit(n), "memo"),
}


def hostile_lines(kind: str) -> list[bytes]:
    """One valid record first, then records that carry what the store cannot hold."""
    build, name = KINDS[kind]
    valid = json.dumps(build(1)).encode()

    def poisoned(n: int, value: str) -> bytes:
        # `value` is JSON text for the field: escapes stay as written
        record = build(n)
        record[name] = "@@"
        return json.dumps(record).encode().replace(b'"@@"', value.encode("utf-8", "surrogatepass"))

    nul_key = build(5)
    nul_key_line = json.dumps(nul_key).encode()[:-1] + b', "a' + NUL_ESCAPE.encode() + b'b": 1}'
    if kind == "usage":
        nul_key = usage(5, properties={"ok": 1})
        nul_key_line = json.dumps(nul_key).encode().replace(b'"ok"', b'"o' + NUL_ESCAPE.encode() + b'k"')
    return [
        valid,
        poisoned(2, f'"x{NUL_ESCAPE}y"'),                         # \u0000 inside a string
        poisoned(3, '"x\x00y"'),                                 # a raw 0x00 byte
        poisoned(4, '"x\\ud800y"'),                              # a lone surrogate escape
        nul_key_line,                                            # \u0000 inside a key
        poisoned(6, '"ok"').replace(b'"ok"', b'"caf\xe9"'),      # invalid UTF-8
        poisoned(7, '"a"').replace(b"{", b'{"' + name.encode() + b'": "b", ', 1),  # the field given twice
    ]


def ingest(db, tmp_path, kind: str, lines: list[bytes], name: str = "hostile.ndjson", fmt: str | None = None):
    path = tmp_path / name
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    return ingest_file(db, kind, str(path), fmt, now=NOW)


def assert_store_readable(conn) -> None:
    """Every reader of the facts still works: project, every export, verify with its projection check."""
    projector.project(conn)
    for name in projector.EXPORTS:
        for fmt in ("csv", "json"):
            projector.export(conn, name, fmt, io.StringIO())
    report = verify_store(conn)
    assert report.ok, report.as_dict()


def quarantined(conn) -> list[tuple]:
    return conn.execute("SELECT line_number, field, reason FROM quarantine ORDER BY line_number").fetchall()


def setup_customer(db, tmp_path) -> None:
    """A customer and its invoice, so that credits can be issued."""
    ingest(db, tmp_path, "identities", [json.dumps(link(scid="bc_1", source="billing")).encode()], "l.ndjson")
    ingest(db, tmp_path, "invoices", [json.dumps(invoice("in_0", scid="bc_1")).encode()], "i.ndjson")


@pytest.mark.parametrize("kind", list(KINDS))
def test_characters_the_store_cannot_hold_are_quarantined_by_name(db, conn, tmp_path, kind):
    if kind == "credits":
        setup_customer(db, tmp_path)
    report = ingest(db, tmp_path, kind, hostile_lines(kind))
    assert (report.read, report.appended, report.quarantined) == (7, 1, 6), report
    rows = quarantined(conn)
    reasons = {line: (field, reason) for line, field, reason in rows}
    field = KINDS[kind][1]
    assert "U+0000 (NUL)" in reasons[2][1] and reasons[2][0] == field
    assert "U+0000 (NUL)" in reasons[3][1] and "raw 0x00 byte" in reasons[3][1]
    assert "surrogate" in reasons[4][1]
    assert "U+0000 (NUL)" in reasons[5][1]
    assert reasons[6][1].startswith("invalid UTF-8 at byte")
    assert reasons[7][0] == field and reasons[7][1].endswith(
        f"the key {field!r} appears twice in one object: the record is ambiguous (which value is meant?)")
    raw = conn.execute("SELECT raw_text, raw_bytes FROM quarantine WHERE line_number = 3").fetchone()
    assert "\\x00" in raw[0] and b"\x00" in raw[1]  # shown escaped, kept exactly
    assert_store_readable(conn)


@pytest.mark.parametrize("fmt", ["csv", "cloudevents"])
def test_usage_in_csv_and_cloudevents_quarantines_nul(db, conn, tmp_path, fmt):
    if fmt == "csv":
        lines = [b"event_id,source,source_customer_id,meter,quantity,event_time,properties",
                 b"e1,product,pr_1,api_calls,3,2026-01-15T10:00:00Z,",
                 b"e2,product,pr\x001,api_calls,3,2026-01-15T10:00:00Z,",
                 b'e3,product,pr_1,api_calls,3,2026-01-15T10:00:00Z,"{""a"":""\\u0000""}"',
                 b'e4,product,pr_1,api_calls,3,2026-01-15T10:00:00Z,"{""a"":1,""a"":2}"']
        report = ingest(db, tmp_path, "usage", lines, "hostile.csv")
        assert (report.read, report.appended, report.quarantined) == (4, 1, 3)
        fields = {line: (field, reason) for line, field, reason in quarantined(conn)}
        assert fields[3][0] == "source_customer_id" and "U+0000" in fields[3][1]
        assert fields[4][0] == "properties" and "U+0000" in fields[4][1]
        assert fields[5][0] == "properties" and "appears twice" in fields[5][1]
    else:
        event = {"specversion": "1.0", "id": "c1", "source": "product", "type": "api_calls", "subject": "pr_1",
                 "time": "2026-01-15T10:00:00Z", "data": {"quantity": 2}}
        bad = dict(event, id="c2", subject="pr" + "\x00")
        bad_ext = dict(event, id="c3", tenant="t\x00")
        report = ingest(db, tmp_path, "usage", [json.dumps(e).encode() for e in (event, bad, bad_ext)],
                        "hostile.cloudevents.ndjson")
        assert (report.read, report.appended, report.quarantined) == (3, 1, 2)
        fields = {line: field for line, field, _ in quarantined(conn)}
        assert fields == {2: "subject", 3: "tenant"}
    assert_store_readable(conn)


def test_a_valid_record_beside_bad_ones_is_appended_on_the_fast_path(db, conn, tmp_path):
    lines = [json.dumps(usage(i, properties={"k": i})).encode() for i in range(50)]
    lines[10] = lines[10].replace(b'"k"', b'"k\\u0000"')
    lines[20] = lines[20].replace(b'{"event_id"', b'{"quantity": 9, "event_id"')  # quantity given twice
    lines[30] = lines[30].replace(b'"k": 30', b'"k": 30, "k": 31')
    report = ingest(db, tmp_path, "usage", lines)
    assert (report.appended, report.quarantined) == (47, 3)
    assert [line for line, *_ in quarantined(conn)] == [11, 21, 31]
    assert conn.execute("SELECT sum(quantity) FROM usage_facts").fetchone()[0] == 47
    assert_store_readable(conn)


def test_a_quoted_escape_is_not_mistaken_for_a_repeated_key(db, conn, tmp_path):
    tricky = usage(1, source_customer_id='pr "x":1', properties={"note": 'say "a": b', "k": {"z": 1}})
    spaced = b'{"event_id" : "evt-2", "source" : "product", "source_customer_id" : "pr_1", "meter": "api_calls",' \
             b' "quantity" : 1, "event_time" : "2026-01-15T10:00:00Z"}'
    report = ingest(db, tmp_path, "usage", [json.dumps(tricky).encode(), spaced])
    assert (report.appended, report.quarantined) == (2, 0)


def test_nesting_deeper_than_the_ledger_keeps_is_quarantined(db, conn, tmp_path):
    def nested(depth: int) -> dict:
        value: dict = {}
        for _ in range(depth):
            value = {"a": value}
        return value

    lines = [json.dumps(usage(1, properties=nested(10))).encode()]
    for n, depth in enumerate((63, 100, 300, 500, 2000, 10_000), start=2):
        lines.append(b'{"event_id": "e%d", "source": "product", "source_customer_id": "pr_1", "meter": "api_calls",'
                     b' "quantity": 1, "event_time": "2026-01-15T10:00:00Z", "properties": ' % n
                     + b'{"a":' * depth + b"1" + b"}" * depth + b"}")
    report = ingest(db, tmp_path, "usage", lines)
    assert (report.read, report.appended, report.quarantined) == (7, 2, 5)
    assert all("the ledger keeps at most 64 levels" in reason for _, _, reason in quarantined(conn))
    assert_store_readable(conn)


@pytest.mark.parametrize("kind", ["usage", "identities", "attributes", "invoices", "credits"])
def test_a_utc_instant_outside_years_1_to_9999_is_quarantined(db, conn, tmp_path, kind):
    if kind == "credits":
        setup_customer(db, tmp_path)
    field = {"usage": "event_time", "invoices": "issued_at", "credits": "issued_at"}.get(kind, "effective_from")
    build = KINDS[kind][0]
    lines = [json.dumps(build(1)).encode()]
    for n, moment in enumerate(("9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"), start=2):
        lines.append(json.dumps({**build(n), field: moment}).encode())
    report = ingest(db, tmp_path, kind, lines)
    assert (report.appended, report.quarantined) == (1, 2)
    for _, name, reason in quarantined(conn):
        assert name == field and "outside the years 0001–9999" in reason
    assert_store_readable(conn)


def test_hours_of_24_and_huge_quantities_are_refused_in_the_ledgers_words(db, conn, tmp_path):
    lines = [json.dumps(usage(1, event_time="2026-01-15T10:00:00+24:00")).encode(),
             json.dumps(usage(2, quantity=2**64)).encode(),
             json.dumps(usage(3, quantity=2**53)).encode(),
             json.dumps(usage(4, event_time="2026-01-15T24:00:00Z")).encode()]
    ingest(db, tmp_path, "usage", lines)
    reasons = {line: reason.split(": ", 1)[1] for line, _, reason in quarantined(conn)}
    assert reasons[1] == "timestamp '2026-01-15T10:00:00+24:00' has offset +24:00; an offset is at most ±23:59"
    assert reasons[2] == "must be below 2^53, got 18446744073709551616"
    assert reasons[3] == "must be below 2^53, got 9007199254740992"
    assert "hour 24" in reasons[4]


def test_a_byte_order_mark_is_accepted_in_ndjson_and_csv(db, conn, tmp_path):
    report = ingest(db, tmp_path, "usage", [b"\xef\xbb\xbf" + json.dumps(usage(1)).encode(),
                                            json.dumps(usage(2)).encode()])
    assert (report.appended, report.quarantined) == (2, 0)
    csv_lines = [b"\xef\xbb\xbfevent_id,source,source_customer_id,meter,quantity,event_time",
                 b"c1,product,pr_1,api_calls,3,2026-01-15T10:00:00Z"]
    report = ingest(db, tmp_path, "usage", csv_lines, "bom.csv")
    assert (report.appended, report.quarantined) == (1, 0)
    report = ingest(db, tmp_path, "identities", [b"\xef\xbb\xbfsource,source_customer_id,customer_id,effective_from",
                                                  b"product,pr_1,cus_1,2025-12-01T00:00:00Z"], "bom_links.csv")
    assert (report.appended, report.quarantined) == (1, 0)


def test_rfc_4180_quoted_line_breaks_are_one_record(db, conn, tmp_path):
    lines = [b"customer_id,effective_from,name,segment",
             b'cus_1,2025-12-01T00:00:00Z,"Acme,',
             b'Inc. ""North""",smb',
             b"cus_2,2025-12-01T00:00:00Z,Beta,enterprise",
             b'cus_3,2025-12-01T00:00:00Z,"never closed,smb',
             b"cus_4,2025-12-01T00:00:00Z,Delta,smb"]
    report = ingest(db, tmp_path, "attributes", lines, "attrs.csv")
    assert (report.read, report.appended, report.quarantined) == (4, 3, 1)
    names = dict(conn.execute("SELECT ledger_state(state) ->> 'customer_id', ledger_state(state) -> 'attributes' ->> "
                              "'name' FROM ledger_events").fetchall())
    assert names == {"cus_1": 'Acme,\nInc. "North"', "cus_2": "Beta", "cus_4": "Delta"}
    assert [line for line, *_ in quarantined(conn)] == [5]
    assert_store_readable(conn)


def test_a_json_array_file_is_refused_with_one_reason(db, conn, tmp_path):
    path = tmp_path / "array.json"
    path.write_text(json.dumps([usage(1), usage(2)], indent=2))
    with pytest.raises(InputFileError, match="is a JSON array"):
        ingest_file(db, "usage", str(path), now=NOW)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_an_empty_file_says_so(db, conn, tmp_path, ledger):
    path = tmp_path / "empty.ndjson"
    path.write_bytes(b"")
    result = ledger("ingest", "usage", str(path), check_exit=0)
    assert "the file holds no records" in result.stdout
    path.write_bytes(b"\n  \n")
    assert "the file holds no records" in ledger("ingest", "identities", str(path), check_exit=0).stdout


def test_a_truncated_gzip_is_refused_naming_what_was_appended(db, conn, tmp_path, ledger):
    records = b"".join(json.dumps(usage(i)).encode() + b"\n" for i in range(30_000))
    whole = gzip.compress(records)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[:int(len(whole) * 0.7)])
    result = ledger("ingest", "usage", str(path), extra_env={"LEDGER_BATCH_SIZE": "5000"})
    assert result.returncode == 4, result
    appended = conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]
    assert 0 < appended < 30_000
    error = result.stderr.strip().splitlines()[-1]
    assert "the gzip stream ends before its end marker" in error
    assert f"appended {appended} facts" in error and "a re-run of the same file" in error
    path.write_bytes(whole)
    rerun = ledger("ingest", "usage", str(path), "--json", check_exit=0)
    assert json.loads(rerun.stdout)["appended"] == 30_000 - appended


def test_trace_escapes_what_a_terminal_would_interpret(db, conn, tmp_path, ledger):
    hostile = "in_\x1b[2J\u202eevil\r"
    ingest(db, tmp_path, "identities", [json.dumps(link(scid="bc_\x07", source="billing")).encode()], "l.ndjson")
    ingest(db, tmp_path, "invoices", [json.dumps(invoice(hostile, scid="bc_\x07")).encode()], "i.ndjson")
    out = ledger("trace", "invoice", hostile, check_exit=0).stdout
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out and "\x07" not in out
    assert "invoice in_\\x1b[2J\\u202eevil\\x0d " in out and "billing:bc_\\x07" in out
    assert json.loads(ledger("trace", "invoice", hostile, "--json", check_exit=0).stdout)["invoice"]["invoice_id"] \
        == hostile


def test_huge_amounts_are_refused_for_every_money_field(db, conn, tmp_path):
    setup_customer(db, tmp_path)
    lines = [json.dumps(invoice("in_1", total_cents=2**63)).encode(),
             json.dumps(invoice("in_2", total_cents=2**64)).encode(),
             json.dumps(price(1, base_fee_cents=2**53)).encode(),
             json.dumps(credit(1, amount_cents=2**62)).encode(),
             json.dumps(credit(2, amount_cents=2**62)).encode()]  # two of them once took a sum past bigint
    ingest(db, tmp_path, "invoices", lines[:2])
    ingest(db, tmp_path, "prices", lines[2:3], "p.ndjson")
    ingest(db, tmp_path, "credits", lines[3:], "c.ndjson")
    reasons = [reason for _, _, reason in quarantined(conn)]
    assert len(reasons) == 5 and all("must be between -2^53 and 2^53" in r for r in reasons), reasons
    assert_store_readable(conn)


@pytest.mark.parametrize("period", ["0000-01", "\u0662\u0660\u0662\u0666-01", "2026-01\n", "2026-1"])
def test_a_period_that_is_not_an_ascii_calendar_month_is_quarantined(db, conn, tmp_path, period):
    ingest(db, tmp_path, "identities", [json.dumps(link(scid="bc_1", source="billing")).encode()], "l.ndjson")
    ingest(db, tmp_path, "attributes", [json.dumps(attributes(1)).encode()], "a.ndjson")  # months read as dates
    report = ingest(db, tmp_path, "invoices", [json.dumps(invoice("in_1")).encode(),
                                               json.dumps(invoice("in_2", period=period)).encode()])
    assert (report.appended, report.quarantined) == (1, 1)
    [(line, field, reason)] = quarantined(conn)
    assert (line, field) == (2, "period") and "must be a month written YYYY-MM" in reason
    assert_store_readable(conn)


def test_an_invoice_whose_lines_add_up_past_the_amount_limit_is_quarantined(db, conn, tmp_path):
    """Each line within 2^53 but their sum past bigint: the record is refused by name, its neighbours appended."""
    big = 2**53 - 1
    amounts = [{"line_id": f"L{i}", "kind": "other", "amount_cents": big} for i in range(1025)]
    quantities = [{"line_id": f"U{i}", "kind": "usage", "meter": "api_calls", "quantity": big, "amount_cents": 0}
                  for i in range(2)]
    signed = [{"line_id": "P", "kind": "other", "amount_cents": big},
              {"line_id": "N", "kind": "other", "amount_cents": -big}]  # sums to 0, but its parts reach 2^54
    report = ingest(db, tmp_path, "invoices", [json.dumps(invoice("in_1")).encode(),
                                               json.dumps(invoice("in_2", total_cents=0, lines=amounts)).encode(),
                                               json.dumps(invoice("in_3", total_cents=0, lines=quantities)).encode(),
                                               json.dumps(invoice("in_4", total_cents=0, lines=signed)).encode(),
                                               json.dumps(invoice("in_5")).encode()])
    assert (report.appended, report.quarantined) == (2, 3)
    reasons = {line: (field, reason) for line, field, reason in quarantined(conn)}
    assert reasons[2][0] == reasons[3][0] == reasons[4][0] == "lines"
    assert "amount_cents add up to" in reasons[2][1] and "quantities add up to" in reasons[3][1]
    assert_store_readable(conn)


def test_signed_totals_whose_running_sum_leaves_bigint_project_to_their_exact_sum(db, conn, tmp_path):
    """1,025 invoices of +(2^53 - 1) then 2 of -(2^53 - 1) for one customer-month: the total fits a bigint though
    a running sum in file order does not; a sum that keeps a bigint state would raise, in some plans only."""
    big = 2**53 - 1
    ingest(db, tmp_path, "identities", [json.dumps(link(scid="bc_1", source="billing")).encode()], "l.ndjson")
    records = [invoice(f"in_p{i}", total_cents=big, lines=[]) for i in range(1025)]
    records += [invoice(f"in_n{i}", total_cents=-big, lines=[]) for i in range(2)]
    report = ingest(db, tmp_path, "invoices", [json.dumps(r).encode() for r in records])
    assert report.appended == 1027
    projector.rebuild(conn)
    invoiced = conn.execute("SELECT invoiced_cents FROM ledger_proj.customer_month WHERE customer_id = 'cus_1'"
                            " AND month = '2026-01'").fetchone()[0]
    assert invoiced == 1023 * big
    assert_store_readable(conn)
