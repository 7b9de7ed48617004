"""How the CLI prints for people: counts, cents, pages, and tables that fit (no database)."""

from __future__ import annotations

import pytest

from ledger.cli.output import cents, count, escape_text, page_note, table
from ledger.cli.runtime import error_object, month_argument, wants_json
from ledger.errors import InvalidArgumentError, NonPositiveAmountError


@pytest.mark.parametrize("n,noun,text", [(1, "fact", "1 fact"), (0, "fact", "0 facts"), (1000, "fact", "1,000 facts"),
                                         (2, "anomaly", "2 anomalies"), (3, "batch", "3 batches"),
                                         (2, "process", "2 processes")])
def test_counts_carry_their_noun_in_the_right_number(n, noun, text):
    assert count(n, noun) == text


def test_cents_have_thousands_separators():
    assert (cents(799600), cents(-94928), cents(5, signed=True), cents(None)) == ("799,600", "-94,928", "+5", "-")


def test_a_page_says_how_to_get_the_rest():
    assert page_note(1000, 3412, "record") == "1,000 of 3,412 records; --limit/--offset for more"
    assert page_note(412, 3412, "record", offset=3000) == "3,001–3,412 of 3,412 records"
    assert page_note(16, 16, "quarantined record") == "16 quarantined records"


def test_numbers_are_right_aligned_and_text_left_aligned():
    lines = table(["id", "name", "units"], [(7, "a", 1234567), (1000, "bb", 5)], width=80).splitlines()
    assert lines[0] == "   id  name      units"
    assert lines[2] == "    7  a     1,234,567"
    assert lines[3] == "1,000  bb            5"


def test_a_wide_table_is_cut_to_the_width_with_an_ellipsis_numbers_whole():
    lines = table(["file", "line", "reason"], [("/a/very/long/path/" * 5, 123456, "x" * 200)], width=50).splitlines()
    assert all(len(line) <= 50 for line in lines), lines
    assert lines[2].count("…") == 2 and "123,456" in lines[2]


def test_booleans_read_yes_no_and_controls_are_escaped():
    lines = table(["equal", "text"], [(True, "a\x1b[2J"), (False, "b")], width=80).splitlines()
    assert lines[2].split() == ["yes", "a\\x1b[2J"] and lines[3].split() == ["no", "b"]
    assert escape_text("\u202e") == "\\u202e"


@pytest.mark.parametrize("value", ["2026-13", "2026-00", "2026-1", "26-01", "", "2026-01-01"])
def test_a_month_argument_must_be_a_month(value):
    with pytest.raises(InvalidArgumentError, match="is not a month"):
        month_argument(value)


def test_json_is_asked_by_flag_or_format():
    assert wants_json(["export", "x", "--format", "json"]) and wants_json(["verify", "--json"])
    assert not wants_json(["export", "x", "--format", "csv"])


def test_a_refusal_for_machines_has_its_class_rule_and_fields():
    body = error_object(NonPositiveAmountError("amount must be positive", amount_cents=0), 2)
    assert body == {"error": "NonPositiveAmountError", "exit_code": 2, "rule": "amount_not_positive",
                    "amount_cents": 0, "message": "refused (amount_not_positive): amount must be positive"}
