"""The humans' spending controls refuse exactly the contracts they should (pure rules).

Proves on plain ``Controls`` and ``SpendingRequest`` values that
``spending_refusal`` refuses a frozen agent first (whoever froze it), then a
price over the per-contract limit, then a day's spending over the daily
limit (spent today + this price), each with its wire code and at the exact
boundary (equal passes, one more is refused); that a price over the
approval threshold asks for approval (and carries the request to record)
until the owner approves or rejects it, while an approval never lifts a
limit; and that a limit left unset limits nothing. ``start_of_day_ms`` and
``approval_expires_at_ms`` are checked at their boundaries.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from agent_client.limits import PRICE_MILLICREDITS_MAX
from exchange.domain.spending_rules import (
    ApprovalStatus,
    Controls,
    RefusalCause,
    SpendingRefusal,
    SpendingRequest,
    approval_expires_at_ms,
    frozen_refusal,
    spending_refusal,
    start_of_day_ms,
)
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import APPROVAL_LIFETIME_MAX_S

DAY_MS = 24 * 3600 * 1000
NOW_MS = 1_710_084_600_000  # 2024-03-10 15:30:00 UTC
PRICE = 2_000


def controls(
    *,
    daily: int | None = None,
    per_contract: int | None = None,
    threshold: int | None = None,
    frozen_by_owner: bool = False,
    frozen_by_operator: bool = False,
) -> Controls:
    return Controls(
        agent_id="buyer-agent",
        daily_limit_millicredits=daily,
        contract_limit_millicredits=per_contract,
        approval_threshold_millicredits=threshold,
        frozen_by_owner=frozen_by_owner,
        frozen_by_operator=frozen_by_operator,
        operator_freeze_reason="abuse report" if frozen_by_operator else "",
    )


def request(price: int = PRICE) -> SpendingRequest:
    return SpendingRequest(
        contract_id="c_" + "3c" * 16,
        buyer_id="buyer-agent",
        buyer_account_id="agent:buyer-agent",
        provider_id="provider-agent",
        capability="text.summarize",
        price_millicredits=price,
        now_ms=NOW_MS,
        expires_at_ms=NOW_MS + 60_000,
    )


def refusal(
    rules: Controls,
    price: int = PRICE,
    *,
    spent: int = 0,
    approval: ApprovalStatus | None = None,
) -> SpendingRefusal | None:
    return spending_refusal(
        rules, request(price), spent_today_millicredits=spent, approval_status=approval
    )


def code_of(found: SpendingRefusal | None) -> ErrorCode | None:
    return None if found is None else found.code


# --- freezes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by_owner", "by_operator", "who"),
    [(True, False, "its owner"), (False, True, "an operator"), (True, True, "its owner")],
)
def test_a_frozen_agent_is_refused_whatever_it_spends(
    by_owner: bool, by_operator: bool, who: str
) -> None:
    rules = controls(frozen_by_owner=by_owner, frozen_by_operator=by_operator)
    found = refusal(rules, 1, approval=ApprovalStatus.APPROVED)
    assert found == SpendingRefusal(
        ErrorCode.AGENT_FROZEN,
        f"the agent's spending is frozen by {who}",
        RefusalCause.FROZEN_BY_OWNER if by_owner else RefusalCause.FROZEN_BY_OPERATOR,
    )
    assert frozen_refusal(rules) == found


def test_an_agent_not_frozen_has_no_freeze_refusal() -> None:
    assert frozen_refusal(controls()) is None


def test_a_freeze_is_reported_before_any_limit() -> None:
    rules = controls(daily=1, per_contract=1, threshold=1, frozen_by_operator=True)
    assert code_of(refusal(rules, PRICE, spent=10**9)) is ErrorCode.AGENT_FROZEN


# --- limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [(PRICE - 1, None), (PRICE, None), (PRICE + 1, ErrorCode.BUDGET_EXCEEDED)],
)
def test_the_per_contract_limit_admits_a_price_equal_to_it(
    price: int, expected: ErrorCode | None
) -> None:
    assert code_of(refusal(controls(per_contract=PRICE), price)) is expected


def test_a_price_over_the_per_contract_limit_is_refused_whatever_was_spent() -> None:
    found = refusal(controls(per_contract=1_000, daily=10**9), 1_001)
    assert found == SpendingRefusal(
        ErrorCode.BUDGET_EXCEEDED,
        "the price 1001 is over the per-contract limit of 1000 millicredits",
        RefusalCause.CONTRACT_LIMIT,
    )


@pytest.mark.parametrize(
    ("spent", "expected"),
    [
        (0, None),
        (8_000, None),  # 8 000 + 2 000 is exactly the limit
        (8_001, ErrorCode.BUDGET_EXCEEDED),
        (10_000, ErrorCode.BUDGET_EXCEEDED),
    ],
)
def test_the_daily_limit_counts_what_was_spent_today_plus_this_price(
    spent: int, expected: ErrorCode | None
) -> None:
    assert code_of(refusal(controls(daily=10_000), PRICE, spent=spent)) is expected


def test_the_daily_refusal_says_how_much_was_spent() -> None:
    found = refusal(controls(daily=10_000), PRICE, spent=9_000)
    assert found is not None and found.approval is None
    assert found.message == (
        "over the daily limit: 9000 of 10000 millicredits spent today, the price is 2000"
    )


def test_a_price_over_the_daily_limit_alone_is_refused_on_a_fresh_day() -> None:
    assert code_of(refusal(controls(daily=PRICE - 1), PRICE)) is ErrorCode.BUDGET_EXCEEDED


def test_limits_left_unset_limit_nothing() -> None:
    assert refusal(controls(), PRICE_MILLICREDITS_MAX, spent=10**15) is None


# --- approvals ---------------------------------------------------------------------


@pytest.mark.parametrize("price", [PRICE - 1, PRICE])
def test_a_price_up_to_the_threshold_needs_no_approval(price: int) -> None:
    assert refusal(controls(threshold=PRICE), price) is None


@pytest.mark.parametrize("status", [None, ApprovalStatus.PENDING])
def test_a_price_over_the_threshold_waits_for_the_owners_approval(
    status: ApprovalStatus | None,
) -> None:
    found = refusal(controls(threshold=PRICE - 1), PRICE, approval=status)
    assert found is not None
    assert found.code is ErrorCode.PENDING_APPROVAL
    # The request travels with the refusal so the caller can record it.
    assert found.approval == request(PRICE)
    assert "approval threshold of 1999 millicredits" in found.message


def test_an_approved_contract_over_the_threshold_opens() -> None:
    assert refusal(controls(threshold=1), PRICE, approval=ApprovalStatus.APPROVED) is None


def test_a_rejected_contract_is_refused_and_asks_for_nothing() -> None:
    found = refusal(controls(threshold=1), PRICE, approval=ApprovalStatus.REJECTED)
    assert found == SpendingRefusal(
        ErrorCode.APPROVAL_REJECTED,
        "the agent's owner rejected this contract",
        RefusalCause.APPROVAL_REJECTED,
    )


@pytest.mark.parametrize(
    ("rules", "spent"),
    [(controls(threshold=1, per_contract=PRICE - 1), 0), (controls(threshold=1, daily=PRICE), 1)],
)
def test_an_approval_never_lifts_a_limit(rules: Controls, spent: int) -> None:
    found = refusal(rules, PRICE, spent=spent, approval=ApprovalStatus.APPROVED)
    assert code_of(found) is ErrorCode.BUDGET_EXCEEDED
    assert found is not None and found.approval is None


def test_a_refusal_becomes_the_exchanges_typed_error() -> None:
    found = refusal(controls(per_contract=1), PRICE)
    assert found is not None
    error = found.error(contract_id="c_x")
    assert isinstance(error, ExchangeError)
    assert (error.code, error.message, error.contract_id) == (
        ErrorCode.BUDGET_EXCEEDED,
        found.message,
        "c_x",
    )


# --- requests and days -------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expires_at_ms"),
    [
        (0, NOW_MS + 60_000),  # no price
        (PRICE, NOW_MS - 1),  # an approval window closed before it opens
        (PRICE, NOW_MS + APPROVAL_LIFETIME_MAX_S * 1000 + 1),  # longer than a day
    ],
)
def test_a_request_with_no_price_or_an_approval_window_out_of_bounds_cannot_exist(
    price: int, expires_at_ms: int
) -> None:
    with pytest.raises(AssertionError):
        dataclasses.replace(request(), price_millicredits=price, expires_at_ms=expires_at_ms)


@pytest.mark.parametrize(
    ("quote_expires_at_ms", "expected"),
    [
        (NOW_MS + 60_000, NOW_MS + 60_000),  # the quote expires first
        (NOW_MS + 10 * DAY_MS, NOW_MS + APPROVAL_LIFETIME_MAX_S * 1000),  # a day at most
        (NOW_MS - 1, NOW_MS),  # an expired quote: never before now
    ],
)
def test_an_approval_is_asked_for_until_the_quote_expires_and_a_day_at_most(
    quote_expires_at_ms: int, expected: int
) -> None:
    assert approval_expires_at_ms(NOW_MS, quote_expires_at_ms) == expected


def test_the_day_starts_at_midnight_utc() -> None:
    midnight_ms = int(datetime(2024, 3, 10, tzinfo=UTC).timestamp() * 1000)
    assert start_of_day_ms(NOW_MS) == midnight_ms
    assert start_of_day_ms(midnight_ms) == midnight_ms
    assert start_of_day_ms(midnight_ms - 1) == midnight_ms - DAY_MS
    assert start_of_day_ms(midnight_ms + DAY_MS - 1) == midnight_ms
    assert start_of_day_ms(0) == 0
