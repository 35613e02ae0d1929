"""The pure rules of subscriptions: timers, renewals, failures, cancels, tokens.

A property test drives a subscription through random outcomes of its
timers (charge succeeded or refused, cancels at random times) and checks
what must always hold: periods are charged one at a time and never for
time that has passed, a past-due subscription lapses exactly at the
grace's end, nothing happens after it ended, and the next timer is always
the one the state calls for.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.protocol import SubscriptionState
from exchange.domain.subscription_rules import (
    GRACE_MS,
    RETRY_MS,
    SubscriptionRow,
    TimerStep,
    attempt_id,
    cancelled,
    charge_id,
    due_at_ms,
    ended,
    first_period,
    lapsed,
    plan_id_for,
    renewal_failed,
    renewed,
    subscription_id_for,
    timer_step,
    token_expires_at_ms,
)

PERIOD_S = 3_600
PERIOD_MS = PERIOD_S * 1000
START_MS = 1_000_000


def new_row(*, trial_s: int = 0) -> SubscriptionRow:
    row = SubscriptionRow(
        subscription_id="sub_x",
        plan_id="plan_x",
        plan="monthly",
        buyer_id="B",
        provider_id="P",
        capability="x.y",
        price_millicredits=1_000,
        period_s=PERIOD_S,
        state=SubscriptionState.ACTIVE,
        periods_charged=0,
        charged_millicredits=0,
        period_started_at_ms=START_MS,
        period_ends_at_ms=START_MS,
        next_attempt_at_ms=None,
        grace_ends_at_ms=None,
        cancel_at_period_end=False,
        cancel_requested=False,
        failure="",
        failed_attempts=0,
        request_envelope="{}",
        due_at_ms=None,
        created_at_ms=START_MS,
        updated_at_ms=START_MS,
    )
    return first_period(row, trial_s=trial_s)


def test_ids_derive_from_their_parts_and_each_try_of_a_period_has_its_own():
    assert plan_id_for("P", "a") == plan_id_for("P", "a") != plan_id_for("Q", "a")
    assert subscription_id_for("B", "plan_x", "r1") != subscription_id_for("B", "plan_x", "r2")
    assert charge_id("sub_x", 2) == "sub_x.p2" == attempt_id("sub_x", 2, 0)
    assert attempt_id("sub_x", 2, 1) == "sub_x.p2.r1"


def test_a_new_subscription_is_charged_one_period_or_starts_its_trial():
    paid = new_row()
    assert (paid.state, paid.periods_charged, paid.due_at_ms) == (
        SubscriptionState.ACTIVE,
        1,
        START_MS + PERIOD_MS,
    )
    trial = new_row(trial_s=60)
    assert (trial.state, trial.periods_charged, trial.due_at_ms) == (
        SubscriptionState.TRIALING,
        0,
        START_MS + 60_000,
    )


def test_a_renewal_on_time_keeps_the_anchor_and_a_late_one_starts_when_paid():
    row = new_row()
    on_time = renewed(row, now_ms=row.period_ends_at_ms + 5_000)
    assert on_time.period_started_at_ms == row.period_ends_at_ms
    # The exchange was down for more than a period: the time that passed is not billed.
    late_ms = row.period_ends_at_ms + 2 * PERIOD_MS
    late = renewed(row, now_ms=late_ms)
    assert (late.period_started_at_ms, late.period_ends_at_ms) == (late_ms, late_ms + PERIOD_MS)
    failed = renewal_failed(row, now_ms=row.period_ends_at_ms, reason="insufficient_funds: x")
    after_failure = renewed(failed, now_ms=failed.next_attempt_at_ms)
    assert after_failure.period_started_at_ms == failed.next_attempt_at_ms
    assert (after_failure.failure, after_failure.failed_attempts) == ("", 0)


def test_a_failed_renewal_is_retried_until_the_grace_ends_then_lapses():
    row = new_row()
    failed = renewal_failed(row, now_ms=row.period_ends_at_ms, reason="agent_frozen: x")
    assert failed.state is SubscriptionState.PAST_DUE
    assert failed.grace_ends_at_ms == row.period_ends_at_ms + GRACE_MS
    assert failed.next_attempt_at_ms == row.period_ends_at_ms + RETRY_MS
    assert failed.failed_attempts == 1
    assert timer_step(failed, now_ms=failed.next_attempt_at_ms - 1) is None
    assert timer_step(failed, now_ms=failed.next_attempt_at_ms) is TimerStep.CHARGE
    assert timer_step(failed, now_ms=failed.grace_ends_at_ms) is TimerStep.LAPSE
    again = renewal_failed(failed, now_ms=failed.grace_ends_at_ms - 1, reason="x: y")
    # The grace does not restart, and the last retry is at its end.
    assert again.grace_ends_at_ms == failed.grace_ends_at_ms
    assert again.next_attempt_at_ms == failed.grace_ends_at_ms
    gone = lapsed(again, now_ms=again.grace_ends_at_ms)
    assert (gone.state, gone.due_at_ms) == (SubscriptionState.LAPSED, None)
    assert token_expires_at_ms(gone, now_ms=gone.updated_at_ms) is None


def test_a_cancel_waits_for_the_period_end_but_an_unpaid_one_ends_at_once():
    row = new_row()
    cancelling = cancelled(row, now_ms=START_MS + 10)
    assert (cancelling.state, cancelling.due_at_ms) == (
        SubscriptionState.CANCELLING,
        row.period_ends_at_ms,
    )
    assert cancelled(cancelling, now_ms=START_MS + 20) == cancelling
    assert timer_step(cancelling, now_ms=row.period_ends_at_ms) is TimerStep.END
    failed = renewal_failed(row, now_ms=row.period_ends_at_ms, reason="x: y")
    assert cancelled(failed, now_ms=row.period_ends_at_ms + 1).state is SubscriptionState.ENDED
    over = ended(cancelling, now_ms=row.period_ends_at_ms)
    assert cancelled(over, now_ms=row.period_ends_at_ms + 1) == over


def test_a_token_lives_minutes_and_never_past_the_paid_access():
    row = new_row()
    assert token_expires_at_ms(row, now_ms=START_MS) == START_MS + 15 * 60 * 1000
    near_end_ms = row.period_ends_at_ms - 1_000
    assert token_expires_at_ms(row, now_ms=near_end_ms) == row.period_ends_at_ms
    assert token_expires_at_ms(row, now_ms=row.period_ends_at_ms) is None


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from(["paid", "refused", "cancel"]), st.integers(0, 3 * PERIOD_MS)),
        max_size=30,
    ),
    trial_s=st.sampled_from([0, 600]),
)
def test_any_run_of_timers_charges_each_period_once_and_keeps_its_timer(outcomes, trial_s):
    row = new_row(trial_s=trial_s)
    now_ms = START_MS
    for outcome, wait_ms in outcomes:
        now_ms += wait_ms
        if outcome == "cancel":
            row = cancelled(row, now_ms=now_ms)
        else:
            row = _run_timer(row, now_ms=now_ms, paid=outcome == "paid")
        assert row.due_at_ms == due_at_ms(row)
        assert row.charged_millicredits == row.periods_charged * row.price_millicredits
        if row.state in (SubscriptionState.ENDED, SubscriptionState.LAPSED):
            assert row.due_at_ms is None and timer_step(row, now_ms=now_ms + GRACE_MS) is None
        if row.state is SubscriptionState.ACTIVE:
            # A paid period is never one that was already over.
            assert row.period_ends_at_ms > row.period_started_at_ms


def _run_timer(row: SubscriptionRow, *, now_ms: int, paid: bool) -> SubscriptionRow:
    step = timer_step(row, now_ms=now_ms)
    if step is TimerStep.CHARGE:
        before = row.periods_charged
        row = (
            renewed(row, now_ms=now_ms)
            if paid
            else renewal_failed(row, now_ms=now_ms, reason="insufficient_funds: x")
        )
        assert row.periods_charged == before + (1 if paid else 0)
        if paid:
            assert row.period_ends_at_ms > now_ms
        return row
    if step is TimerStep.END:
        return ended(row, now_ms=now_ms)
    if step is TimerStep.LAPSE:
        assert row.grace_ends_at_ms is not None and now_ms >= row.grace_ends_at_ms
        return lapsed(row, now_ms=now_ms)
    return row
