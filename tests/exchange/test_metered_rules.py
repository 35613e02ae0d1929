"""The pure rules of metered sessions capture exactly what the receipts owe, once.

Proves, on plain ``MeteredRow`` values (no database, no NATS), that
``decide_claim`` takes only receipts above the units already claimed, prices
the cumulative count (so per-thousand rounding never loses or invents a
millicredit across claims), stops at the ceiling and splits each capture by
the session's own fee rate; that ``claimed`` adds a claim and moves the hold
on only when something was captured; that a buyer's close, the expiry timer
and the claim window's end move the state exactly at their instants; that
``closed`` releases the rest; and that a ``MeteredRow`` whose numbers do not
add up cannot be built. Hypothesis then claims random increasing receipts on
random terms and checks, after every claim and at the close, that
captured = min(price, ceiling), fee + net = captured and captured + released
= ceiling.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client import metering
from agent_client.protocol import MeteredState
from exchange.domain.metered_rules import (
    Claim,
    MeteredRow,
    claim_window_passed,
    claimed,
    closed,
    decide_claim,
    metered_id_for_offer,
    price_of_units,
    state_after_buyer_close,
    timer_due,
)
from exchange.errors import ErrorCode, ExchangeError

CONTRACT_ID = "m_" + "3c" * 16
CREATED_AT_MS = 1_700_000_000_000
SESSION_MS = 3_600_000
EXPIRES_AT_MS = CREATED_AT_MS + SESSION_MS
WINDOW_MS = 600_000
FEE_RATE_BPS = 500  # the product plan's 5 %
UNIT_PRICE = 100
CEILING = 1_000


def session(**changes: Any) -> MeteredRow:
    """An open per-call session, nothing claimed, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "contract_id": CONTRACT_ID,
        "buyer_id": "agent:buyer",
        "provider_id": "agent:provider",
        "capability": "text.echo",
        "unit_price_millicredits": UNIT_PRICE,
        "units_per_price": 1,
        "ceiling_millicredits": CEILING,
        "fee_rate_bps": FEE_RATE_BPS,
        "state": MeteredState.OPEN,
        "claimed_units": 0,
        "captured_millicredits": 0,
        "fee_millicredits": 0,
        "net_millicredits": 0,
        "released_millicredits": 0,
        "hold_sequence": 0,
        "expires_at_ms": EXPIRES_AT_MS,
        "closes_at_ms": None,
        "offer_envelope": "{}",
        "acceptance_envelope": "{}",
        "created_at_ms": CREATED_AT_MS,
        "updated_at_ms": CREATED_AT_MS,
    }
    fields.update(changes)
    return MeteredRow(**fields)


def claim_all(row: MeteredRow, *units: int, now_ms: int = CREATED_AT_MS + 1) -> MeteredRow:
    """``row`` after a claim of each cumulative count in ``units``, in order."""
    for count in units:
        row = claimed(row, decide_claim(row, count), now_ms=now_ms)
    return row


def refusal_code(row: MeteredRow, units: int) -> ErrorCode:
    with pytest.raises(ExchangeError) as refused:
        decide_claim(row, units)
    assert refused.value.contract_id == CONTRACT_ID
    return refused.value.code


# --- decide_claim ---------------------------------------------------------------------


def test_a_first_claim_captures_the_price_of_its_units_and_splits_off_the_fee() -> None:
    # 3 calls at 100: 300, of which 5 % (15) is the fee.
    assert decide_claim(session(), 3) == Claim(3, 300, 15, 285)


def test_a_later_claim_captures_only_what_the_new_units_add() -> None:
    after_three = claim_all(session(), 3)
    assert decide_claim(after_three, 5) == Claim(5, 200, 10, 190)


@pytest.mark.parametrize("units", [3, 2, 0])
def test_a_receipt_not_above_the_units_claimed_is_refused(units: int) -> None:
    assert refusal_code(claim_all(session(), 3), units) is ErrorCode.INVALID_STATE


def test_a_zero_unit_receipt_of_a_fresh_session_is_refused() -> None:
    assert refusal_code(session(), 0) is ErrorCode.INVALID_STATE


def test_a_closed_session_takes_no_claim() -> None:
    row = closed(claim_all(session(), 2), now_ms=CREATED_AT_MS + 5)
    assert refusal_code(row, 3) is ErrorCode.INVALID_STATE


def test_a_closing_session_still_takes_claims() -> None:
    row = state_after_buyer_close(session(), now_ms=CREATED_AT_MS + 5, window_ms=WINDOW_MS)
    assert decide_claim(row, 1) == Claim(1, 100, 5, 95)


def test_per_thousand_pricing_rounds_down_on_the_cumulative_count() -> None:
    row = session(unit_price_millicredits=7, units_per_price=1000)
    # 900 units cost 6.3, rounded down to 6.
    first = decide_claim(row, 900)
    assert (first.units, first.capture_millicredits) == (900, 6)
    row = claimed(row, first, now_ms=CREATED_AT_MS + 1)
    # 1,500 units cost 10.5, so 10 in all: the second claim takes the 4 more.
    second = decide_claim(row, 1500)
    assert (second.units, second.capture_millicredits) == (1500, 4)
    assert claimed(row, second, now_ms=CREATED_AT_MS + 2).captured_millicredits == 10


def test_claims_below_one_millicredit_each_lose_nothing_in_all() -> None:
    # Per thousand units at 7: a claim every 100 units owes 0.7 each time.
    # Priced one by one every claim would round to 0; on the cumulative count
    # the thousand units cost exactly 7.
    row = session(unit_price_millicredits=7, units_per_price=1000)
    captures = []
    for units in range(100, 1001, 100):
        claim = decide_claim(row, units)
        captures.append(claim.capture_millicredits)
        row = claimed(row, claim, now_ms=CREATED_AT_MS + units)
    assert captures == [0, 1, 1, 0, 1, 1, 0, 1, 1, 1]
    assert (row.claimed_units, row.captured_millicredits) == (1000, 7)
    # Only the claims that captured moved the hold on.
    assert row.hold_sequence == 7


def test_the_ceiling_caps_a_claim_and_later_claims_capture_nothing() -> None:
    row = session(ceiling_millicredits=250)
    capped = decide_claim(row, 3)
    assert capped == Claim(3, 250, 12, 238)
    row = claimed(row, capped, now_ms=CREATED_AT_MS + 1)
    assert row.held_millicredits == 0
    assert decide_claim(row, 4) == Claim(4, 0, 0, 0)
    after = claimed(row, decide_claim(row, 4), now_ms=CREATED_AT_MS + 2)
    assert (after.claimed_units, after.captured_millicredits) == (4, 250)
    assert after.hold_sequence == row.hold_sequence == 1


@pytest.mark.parametrize(
    ("fee_rate_bps", "unit_price", "units", "expected"),
    [
        (0, 100, 3, Claim(3, 300, 0, 300)),
        (10_000, 100, 3, Claim(3, 300, 300, 0)),
        (250, 100, 3, Claim(3, 300, 7, 293)),  # 7.5 rounds down
        # 5 % of 19 is 0.95 and of 20 is 1: the fee rounds down.
        (FEE_RATE_BPS, 1, 19, Claim(19, 19, 0, 19)),
        (FEE_RATE_BPS, 1, 20, Claim(20, 20, 1, 19)),
    ],
)
def test_the_fee_is_split_by_the_sessions_own_rate(
    fee_rate_bps: int, unit_price: int, units: int, expected: Claim
) -> None:
    row = session(fee_rate_bps=fee_rate_bps, unit_price_millicredits=unit_price)
    assert decide_claim(row, units) == expected


# --- claimed ----------------------------------------------------------------------------


def test_claimed_adds_the_claim_and_moves_the_hold_on() -> None:
    row = claimed(session(), Claim(3, 300, 15, 285), now_ms=CREATED_AT_MS + 9)
    assert row == session(
        claimed_units=3,
        captured_millicredits=300,
        fee_millicredits=15,
        net_millicredits=285,
        hold_sequence=1,
        updated_at_ms=CREATED_AT_MS + 9,
    )
    assert row.held_millicredits == CEILING - 300
    again = claimed(row, Claim(5, 200, 10, 190), now_ms=CREATED_AT_MS + 10)
    assert (again.captured_millicredits, again.fee_millicredits, again.net_millicredits) == (
        500,
        25,
        475,
    )
    assert (again.hold_sequence, again.state) == (2, MeteredState.OPEN)


def test_a_claim_that_captures_nothing_keeps_the_hold() -> None:
    row = claimed(session(), Claim(2, 0, 0, 0), now_ms=CREATED_AT_MS + 1)
    assert (row.claimed_units, row.hold_sequence, row.captured_millicredits) == (2, 0, 0)


# --- closing ----------------------------------------------------------------------------


def test_the_buyers_close_starts_the_claim_window_now() -> None:
    now_ms = CREATED_AT_MS + 1_000
    row = state_after_buyer_close(session(), now_ms=now_ms, window_ms=WINDOW_MS)
    assert (row.state, row.closes_at_ms, row.updated_at_ms) == (
        MeteredState.CLOSING,
        now_ms + WINDOW_MS,
        now_ms,
    )
    assert row.released_millicredits == 0 and row.held_millicredits == CEILING


@pytest.mark.parametrize(
    "row",
    [
        state_after_buyer_close(session(), now_ms=CREATED_AT_MS + 1, window_ms=WINDOW_MS),
        closed(session(), now_ms=CREATED_AT_MS + 1),
    ],
)
def test_a_second_close_by_the_buyer_changes_nothing(row: MeteredRow) -> None:
    assert state_after_buyer_close(row, now_ms=CREATED_AT_MS + 50, window_ms=WINDOW_MS) is row


def test_an_open_session_has_no_timer_due_before_its_expiry() -> None:
    assert timer_due(session(), now_ms=EXPIRES_AT_MS - 1, window_ms=WINDOW_MS) is None


@pytest.mark.parametrize("late_ms", [0, 1, WINDOW_MS + 5])
def test_expiry_starts_the_window_from_the_expiry_not_from_the_sweep(late_ms: int) -> None:
    now_ms = EXPIRES_AT_MS + late_ms
    row = timer_due(session(), now_ms=now_ms, window_ms=WINDOW_MS)
    assert row is not None
    assert (row.state, row.closes_at_ms, row.updated_at_ms) == (
        MeteredState.CLOSING,
        EXPIRES_AT_MS + WINDOW_MS,
        now_ms,
    )


def test_a_closing_session_closes_exactly_when_its_window_ends() -> None:
    closing = state_after_buyer_close(
        claim_all(session(), 3), now_ms=CREATED_AT_MS + 1_000, window_ms=WINDOW_MS
    )
    window_end_ms = CREATED_AT_MS + 1_000 + WINDOW_MS
    assert timer_due(closing, now_ms=window_end_ms - 1, window_ms=WINDOW_MS) is None
    for now_ms in (window_end_ms, window_end_ms + 1):
        row = timer_due(closing, now_ms=now_ms, window_ms=WINDOW_MS)
        assert row is not None
        assert (row.state, row.released_millicredits, row.closes_at_ms) == (
            MeteredState.CLOSED,
            CEILING - 300,
            window_end_ms,
        )


def test_a_closed_session_has_no_timer_due() -> None:
    row = closed(session(), now_ms=CREATED_AT_MS + 1)
    assert timer_due(row, now_ms=EXPIRES_AT_MS + 10 * WINDOW_MS, window_ms=WINDOW_MS) is None


def test_closed_releases_what_the_claims_left_held() -> None:
    row = closed(claim_all(session(), 3, 5), now_ms=CREATED_AT_MS + 7)
    assert (row.state, row.captured_millicredits, row.released_millicredits) == (
        MeteredState.CLOSED,
        500,
        500,
    )
    # The provider's close from open ends it now; a closing one keeps its window's end.
    assert row.closes_at_ms == CREATED_AT_MS + 7
    assert row.held_millicredits == 0
    closing = state_after_buyer_close(session(), now_ms=CREATED_AT_MS + 1, window_ms=WINDOW_MS)
    assert closed(closing, now_ms=CREATED_AT_MS + 2).closes_at_ms == closing.closes_at_ms


def test_a_session_capped_at_its_ceiling_releases_nothing() -> None:
    row = closed(claim_all(session(ceiling_millicredits=250), 3), now_ms=CREATED_AT_MS + 2)
    assert (row.captured_millicredits, row.released_millicredits) == (250, 0)


# --- the row's invariants and the helpers ---------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"units_per_price": 10},
        {"captured_millicredits": CEILING + 1, "net_millicredits": CEILING + 1},
        {"captured_millicredits": -1, "net_millicredits": -1},
        {"captured_millicredits": 300, "fee_millicredits": 15, "net_millicredits": 284},
        # Released before closing, or a closed session not adding up to its ceiling.
        {"released_millicredits": 1},
        {"state": MeteredState.CLOSED, "released_millicredits": CEILING - 1},
        {"state": MeteredState.CLOSED, "released_millicredits": CEILING + 1},
    ],
)
def test_a_row_whose_numbers_do_not_add_up_cannot_exist(changes: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        session(**changes)


def test_the_hold_carries_the_ceiling_less_the_captures_until_closed() -> None:
    assert session().held_millicredits == CEILING
    row = claim_all(session(), 4)
    assert row.held_millicredits == CEILING - 400
    assert replace(row, state=MeteredState.CLOSING, closes_at_ms=1).held_millicredits == 600


@pytest.mark.parametrize(
    ("units", "unit_price", "units_per_price", "expected"),
    [(0, 5, 1, 0), (3, 100, 1, 300), (999, 1, 1000, 0), (1000, 1, 1000, 1), (1999, 7, 1000, 13)],
)
def test_the_exchange_and_the_client_price_units_alike(
    units: int, unit_price: int, units_per_price: int, expected: int
) -> None:
    options = {"unit_price_millicredits": unit_price, "units_per_price": units_per_price}
    assert price_of_units(units, **options) == expected
    assert metering.price_of_units(units, **options) == expected


@pytest.mark.parametrize(
    ("units", "unit_price", "units_per_price"), [(-1, 1, 1), (1, 0, 1), (1, 1, 10)]
)
def test_pricing_outside_the_terms_is_a_programmer_error(
    units: int, unit_price: int, units_per_price: int
) -> None:
    with pytest.raises(AssertionError):
        price_of_units(units, unit_price_millicredits=unit_price, units_per_price=units_per_price)


def test_an_offer_names_one_session_by_the_hash_of_its_signed_bytes() -> None:
    first = metered_id_for_offer(b'{"offer":1}')
    assert first == metered_id_for_offer(b'{"offer":1}')
    assert first != metered_id_for_offer(b'{"offer":2}')
    assert first.startswith("m_") and len(first) == 2 + 32
    assert int(first[2:], 16) >= 0


# --- every claim sequence conserves the ceiling ------------------------------------------


@given(
    unit_price=st.integers(min_value=1, max_value=10_000),
    units_per_price=st.sampled_from([1, 1000]),
    ceiling=st.integers(min_value=1, max_value=10**9),
    fee_rate_bps=st.integers(min_value=0, max_value=10_000),
    steps=st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=30),
)
def test_any_increasing_receipts_capture_the_price_up_to_the_ceiling(
    unit_price: int, units_per_price: int, ceiling: int, fee_rate_bps: int, steps: list[int]
) -> None:
    row = session(
        unit_price_millicredits=unit_price,
        units_per_price=units_per_price,
        ceiling_millicredits=ceiling,
        fee_rate_bps=fee_rate_bps,
    )
    units, nonzero_captures = 0, 0
    for step in steps:
        units += step
        claim = decide_claim(row, units)
        assert claim.fee_millicredits + claim.net_millicredits == claim.capture_millicredits >= 0
        nonzero_captures += claim.capture_millicredits > 0
        row = claimed(row, claim, now_ms=CREATED_AT_MS + units)
        owed = units * unit_price // units_per_price
        assert row.captured_millicredits == min(owed, ceiling)
        # The fee is the rate on all that was captured, rounded down once: never
        # more than the rate, and not rounded away by claiming often.
        assert row.fee_millicredits == row.captured_millicredits * fee_rate_bps // 10_000
        assert row.held_millicredits == ceiling - row.captured_millicredits
        assert row.hold_sequence == nonzero_captures
    ended = closed(row, now_ms=CREATED_AT_MS + units + 1)
    assert ended.captured_millicredits + ended.released_millicredits == ceiling
    assert ended.fee_millicredits + ended.net_millicredits == ended.captured_millicredits


def test_frequent_small_claims_do_not_round_the_fee_away():
    """One claim per unit at 19 mc a unit pays the same fee as one claim of all."""
    row = session(unit_price_millicredits=19, ceiling_millicredits=100_000)
    for units in range(1, 101):
        row = claimed(row, decide_claim(row, units), now_ms=units)
    at_once = decide_claim(session(unit_price_millicredits=19, ceiling_millicredits=100_000), 100)
    assert (row.captured_millicredits, row.fee_millicredits) == (1_900, 95)
    assert at_once.fee_millicredits == row.fee_millicredits


def test_claims_end_with_the_window_after_expiry_even_before_the_sweeper():
    row = session(ceiling_millicredits=1_000)
    end_ms = row.expires_at_ms + 600_000
    assert not claim_window_passed(row, now_ms=end_ms - 1, window_ms=600_000)
    assert claim_window_passed(row, now_ms=end_ms, window_ms=600_000)
    late_close = state_after_buyer_close(row, now_ms=end_ms - 10, window_ms=600_000)
    assert late_close.closes_at_ms == end_ms
