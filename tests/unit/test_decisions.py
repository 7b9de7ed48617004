"""Finance's decisions without a database: given a command and what the store knows, the facts to append
(a payload, or None when there is nothing to append) or the refusal that names the rule and its fields."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import errors
from ledger.domain.commands import ClosePeriod, InvoiceState, IssueCredit, decide_close, decide_credit

UTC = timezone.utc
NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def credit(**overrides) -> IssueCredit:
    fields = {"customer_id": "cus_1", "amount_cents": 500, "reason": "goodwill", "actor": "ana@example.com",
              "idempotency_key": "cr_1", "invoice_id": None, "memo": None}
    return IssueCredit(**{**fields, **overrides})


def invoice(customer_id: str | None = "cus_1", total_cents: int = 1000, credited_cents: int = 0) -> InvoiceState:
    return InvoiceState("in_1", customer_id, total_cents, credited_cents, version=1)


def decide(command: IssueCredit, *, customer_exists: bool = True, invoice: InvoiceState | None = None,
           existing: dict | None = None):
    return decide_credit(command, now=NOW, customer_exists=customer_exists, invoice=invoice, existing=existing)


# ------------------------------------------------------------------------------------------------ credits
def test_a_credit_to_a_known_customer_is_the_payload_to_append():
    assert decide(credit(memo="sorry")) == {
        "credit_id": "cr_1", "customer_id": "cus_1", "invoice_id": None, "amount_cents": 500, "reason": "goodwill",
        "memo": "sorry", "actor": "ana@example.com", "issued_at": "2026-03-04T05:06:07.891011+00:00"}


def test_a_credit_against_its_customers_invoice_up_to_what_remains():
    payload = decide(credit(invoice_id="in_1", amount_cents=300), invoice=invoice(credited_cents=700))
    assert (payload["invoice_id"], payload["amount_cents"]) == ("in_1", 300)


@pytest.mark.parametrize("actor", [None, "", "   "])
def test_a_credit_needs_an_actor(actor):
    with pytest.raises(errors.MissingActorError) as refused:
        decide(credit(actor=actor))
    assert refused.value.rule == "missing_actor" and "--actor" in str(refused.value)


@pytest.mark.parametrize("key", ["", "   "])
def test_a_credit_needs_a_non_empty_idempotency_key(key):
    with pytest.raises(errors.MissingIdempotencyKeyError) as refused:
        decide(credit(idempotency_key=key))
    assert refused.value.rule == "missing_idempotency_key" and "--idempotency-key" in str(refused.value)


@pytest.mark.parametrize("amount", [0, -1])
def test_a_credit_amount_must_be_positive(amount):
    with pytest.raises(errors.NonPositiveAmountError) as refused:
        decide(credit(amount_cents=amount))
    assert refused.value.fields == {"amount_cents": amount}


def test_a_credit_reason_must_be_one_of_the_known_ones():
    with pytest.raises(errors.InvalidReasonError) as refused:
        decide(credit(reason="because"))
    assert "'because'" in str(refused.value) and "goodwill" in str(refused.value)


def test_an_unknown_customer_is_refused():
    with pytest.raises(errors.UnknownCustomerError) as refused:
        decide(credit(customer_id="cus_nobody"), customer_exists=False)
    assert refused.value.fields == {"customer_id": "cus_nobody"}


def test_an_unknown_invoice_is_refused():
    with pytest.raises(errors.UnknownInvoiceError) as refused:
        decide(credit(invoice_id="in_404"), invoice=None)
    assert refused.value.fields == {"invoice_id": "in_404"}


@pytest.mark.parametrize("owner", ["cus_2", None])
def test_an_invoice_of_another_or_no_customer_is_refused(owner):
    with pytest.raises(errors.InvoiceCustomerMismatchError) as refused:
        decide(credit(invoice_id="in_1"), invoice=invoice(customer_id=owner))
    assert refused.value.fields == {"invoice_id": "in_1", "customer_id": owner}
    assert (owner or "no attributed customer") in str(refused.value)


def test_more_than_the_invoice_has_left_is_refused_naming_what_remains():
    with pytest.raises(errors.CreditExceedsInvoiceError) as refused:
        decide(credit(invoice_id="in_1", amount_cents=301), invoice=invoice(credited_cents=700))
    assert refused.value.fields == {"invoice_id": "in_1", "remaining_cents": 300}
    assert "total 1000" in str(refused.value) and "credited 700" in str(refused.value)


@given(total=st.integers(1, 10_000), credited=st.integers(0, 10_000), amount=st.integers(1, 20_000))
def test_a_credit_against_an_invoice_is_accepted_exactly_when_it_fits(total, credited, amount):
    state = invoice(total_cents=total, credited_cents=min(credited, total))
    command = credit(invoice_id="in_1", amount_cents=amount)
    if amount <= state.remaining_cents:
        assert decide(command, invoice=state)["amount_cents"] == amount
    else:
        with pytest.raises(errors.CreditExceedsInvoiceError):
            decide(command, invoice=state)


def test_a_repeat_with_the_same_arguments_appends_nothing():
    first = {**credit().arguments(), "credit_id": "cr_1", "position": 42, "issued_at": "2026-03-01T00:00:00Z"}
    # decided against the stored credit alone: even a customer unknown now or an invoice used up changes nothing
    assert decide(credit(), customer_exists=False, existing=first) is None


def test_a_repeat_with_other_arguments_is_refused_naming_the_fields():
    first = {**credit().arguments(), "credit_id": "cr_1", "position": 42}
    with pytest.raises(errors.IdempotencyKeyReusedError) as refused:
        decide(credit(amount_cents=600, memo="again"), existing=first)
    assert refused.value.fields == {"differing": ["amount_cents", "memo"]}
    assert "position 42" in str(refused.value)


def test_the_first_broken_rule_is_the_one_named():
    with pytest.raises(errors.MissingActorError):
        decide(credit(actor=None, amount_cents=0, reason="because"), customer_exists=False)
    with pytest.raises(errors.NonPositiveAmountError):
        decide(credit(amount_cents=0, reason="because"), customer_exists=False)


def test_every_credit_refusal_is_a_refused_command_with_exit_2():
    with pytest.raises(errors.CommandRefusedError) as refused:
        decide(credit(), customer_exists=False)
    assert refused.value.exit_code == 2 and str(refused.value).startswith("refused (unknown_customer): ")


# ------------------------------------------------------------------------------------------------ period close
def close(month: str = "2026-02", actor: str | None = "fin@example.com", *, now: datetime = NOW,
          closed: set[str] = frozenset(), usage: set[str] = frozenset()):
    return decide_close(ClosePeriod(month, actor), now=now, closed=set(closed), months_with_usage=set(usage))


def test_an_ended_month_closes_with_its_actor_and_time():
    assert close(usage={"2026-01", "2026-02", "2026-03"}, closed={"2026-01"}) == {
        "month": "2026-02", "actor": "fin@example.com", "closed_at": "2026-03-04T05:06:07.891011+00:00"}


def test_a_month_closes_from_the_first_instant_of_the_next_one():
    first_instant = datetime(2026, 3, 1, tzinfo=UTC)
    assert close(now=first_instant)["closed_at"] == "2026-03-01T00:00:00.000000+00:00"
    with pytest.raises(errors.MonthNotEndedError) as refused:
        close(now=first_instant - timedelta(microseconds=1))
    assert refused.value.fields == {"month": "2026-02"}
    assert "2026-03-01T00:00:00+00:00" in str(refused.value)


def test_a_closed_month_closes_again_as_nothing_to_append():
    assert close(closed={"2026-01", "2026-02"}, usage={"2026-01"}) is None


@pytest.mark.parametrize("month", ["2026-13", "2026-2", "26-02", "february", ""])
def test_a_month_must_be_written_yyyy_mm(month):
    with pytest.raises(errors.InvalidMonthError) as refused:
        close(month)
    assert repr(month) in str(refused.value)


@pytest.mark.parametrize("actor", [None, "", "  "])
def test_a_close_needs_an_actor(actor):
    with pytest.raises(errors.MissingActorError):
        close(actor=actor)


def test_an_earlier_month_with_usage_must_close_first_the_earliest_named():
    with pytest.raises(errors.EarlierMonthOpenError) as refused:
        close("2026-03", now=datetime(2026, 5, 1, tzinfo=UTC), usage={"2025-12", "2026-01", "2026-02"},
              closed={"2025-12"})
    assert refused.value.fields == {"month": "2026-03", "open_month": "2026-01"}


def test_open_months_without_usage_and_later_months_do_not_hold_a_close_back():
    assert close("2026-02", usage={"2026-02", "2026-03"}, closed=set())["month"] == "2026-02"
