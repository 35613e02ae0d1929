"""Subscriptions (pure): what the exchange's timers do to a subscription, and when.

A provider publishes plans (a price per period, an optional trial) on the
capabilities it lists. A buyer subscribes: the first period is charged at
once (or after the trial), and each later one when the period ends, from
the buyer's wallet through escrow (so the human's spending controls judge
it like any purchase). ::

    trialing ─┐
              ├─ period ends, charged ──▶ active ──period ends, charged──▶ active
    active ───┘                   │
                                  └─ charge refused ─▶ past_due ─charged─▶ active
                                                          └─ grace over ─▶ lapsed
    trialing / active ──cancel──▶ cancelling ──period ends──▶ ended
    past_due ──cancel──▶ ended

A period is charged at most once: its charge id derives from the
subscription and the period's number, and the ledger and the charges
table each refuse a second one. A renewal on time keeps the billing
anchor (the new period starts where the old one ended); a renewal after a
failure, or after the exchange was down for more than a period, starts the
period when it is paid, so nobody pays for time that had passed.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace

from agent_client import limits as protocol_limits
from agent_client.protocol import SubscriptionState

__all__ = [
    "GRACE_MS",
    "LIVE_STATES",
    "RETRY_MS",
    "PlanRow",
    "SubscriptionRow",
    "TimerStep",
    "access_ends_at_ms",
    "attempt_id",
    "cancelled",
    "charge_id",
    "due_at_ms",
    "ended",
    "first_period",
    "lapsed",
    "plan_id_for",
    "renewal_failed",
    "renewed",
    "subscription_id_for",
    "timer_step",
    "token_expires_at_ms",
]

GRACE_MS = protocol_limits.SUBSCRIPTION_GRACE_S * 1000
RETRY_MS = protocol_limits.SUBSCRIPTION_RETRY_S * 1000
_TOKEN_LIFETIME_MS = protocol_limits.SUBSCRIPTION_TOKEN_LIFETIME_S * 1000

# The states in which the subscription gives access (and a token is issued).
LIVE_STATES = frozenset(
    {
        SubscriptionState.TRIALING,
        SubscriptionState.ACTIVE,
        SubscriptionState.PAST_DUE,
        SubscriptionState.CANCELLING,
    }
)


@dataclass(frozen=True, slots=True)
class PlanRow:
    plan_id: str
    provider_id: str
    plan: str
    capability: str
    price_millicredits: int
    period_s: int
    trial_s: int
    description: str
    active: bool
    created_at_ms: int
    updated_at_ms: int

    def same_terms(self, other: PlanRow, /) -> bool:
        """Whether ``other`` publishes these terms (activity and dates aside)."""
        return replace(
            other, active=self.active, created_at_ms=self.created_at_ms, updated_at_ms=0
        ) == replace(self, updated_at_ms=0)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    subscription_id: str
    plan_id: str
    plan: str
    buyer_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    period_s: int
    state: SubscriptionState
    periods_charged: int
    charged_millicredits: int
    period_started_at_ms: int
    period_ends_at_ms: int
    next_attempt_at_ms: int | None
    grace_ends_at_ms: int | None
    cancel_at_period_end: bool
    # A human asked the portal to cancel; the exchange's next sweep applies it.
    cancel_requested: bool
    failure: str
    # Renewals of the current period refused so far (each try is a ledger
    # request of its own: the ledger remembers a refused transfer id).
    failed_attempts: int
    # The buyer's signed subscription.start, kept as evidence.
    request_envelope: str
    # When the timers must look at it next (None: never again).
    due_at_ms: int | None
    created_at_ms: int
    updated_at_ms: int

    def __post_init__(self) -> None:
        assert self.periods_charged >= 0
        assert self.charged_millicredits == self.periods_charged * self.price_millicredits
        assert self.period_started_at_ms <= self.period_ends_at_ms
        if self.state is SubscriptionState.PAST_DUE:
            assert self.next_attempt_at_ms is not None and self.grace_ends_at_ms is not None


class TimerStep(enum.Enum):
    """What a due timer does to a subscription."""

    CHARGE = "charge"  # the period ended (or a retry is due): charge the next one
    CANCEL = "cancel"  # a human cancelled in the portal: apply it
    END = "end"  # a cancelled subscription's period ended
    LAPSE = "lapse"  # the grace period ended unpaid


def plan_id_for(provider_id: str, plan: str, /) -> str:
    """A plan's id: its provider's and its name's, so nobody else can publish it."""
    return "plan_" + hashlib.sha256(f"{provider_id}/{plan}".encode()).hexdigest()[:32]


def subscription_id_for(buyer_id: str, plan_id: str, request_id: str, /) -> str:
    """A subscription's id derives from the buyer's request: a retry finds it."""
    digest = hashlib.sha256(f"{buyer_id}/{plan_id}/{request_id}".encode()).hexdigest()
    return "sub_" + digest[:32]


def charge_id(subscription_id: str, period: int, /) -> str:
    """A period's purchase id: what the spending controls (and an approval) know it by."""
    assert period >= 1
    return f"{subscription_id}.p{period}"


def attempt_id(subscription_id: str, period: int, failed_attempts: int, /) -> str:
    """The id of one try to charge a period (its escrow transfers derive from it).

    The ledger answers a refused transfer id with the same refusal forever,
    so each retry after a refusal is a request of its own; the charges
    table's key (subscription, period) still lets one try succeed only.
    """
    purchase_id = charge_id(subscription_id, period)
    return purchase_id if failed_attempts == 0 else f"{purchase_id}.r{failed_attempts}"


def due_at_ms(row: SubscriptionRow, /) -> int | None:
    """When the timers must look at ``row`` next."""
    state = row.state
    if state in (SubscriptionState.ENDED, SubscriptionState.LAPSED):
        return None
    if row.cancel_requested and state is not SubscriptionState.CANCELLING:
        return row.updated_at_ms
    if state is SubscriptionState.PAST_DUE:
        assert row.next_attempt_at_ms is not None and row.grace_ends_at_ms is not None
        return min(row.next_attempt_at_ms, row.grace_ends_at_ms)
    return row.period_ends_at_ms


def timer_step(row: SubscriptionRow, /, *, now_ms: int) -> TimerStep | None:
    """What is due for ``row`` at ``now_ms`` (None: nothing yet)."""
    state = row.state
    if state in (SubscriptionState.ENDED, SubscriptionState.LAPSED):
        return None
    if row.cancel_requested and state is not SubscriptionState.CANCELLING:
        return TimerStep.CANCEL
    if state is SubscriptionState.PAST_DUE:
        assert row.grace_ends_at_ms is not None and row.next_attempt_at_ms is not None
        if now_ms >= row.grace_ends_at_ms:
            return TimerStep.LAPSE
        return TimerStep.CHARGE if now_ms >= row.next_attempt_at_ms else None
    if now_ms < row.period_ends_at_ms:
        return None
    return TimerStep.END if state is SubscriptionState.CANCELLING else TimerStep.CHARGE


def first_period(row: SubscriptionRow, /, *, trial_s: int) -> SubscriptionRow:
    """A new subscription: its trial, or its first period (which the caller charges)."""
    now_ms = row.created_at_ms
    if trial_s:
        return _timed(
            replace(
                row,
                state=SubscriptionState.TRIALING,
                period_started_at_ms=now_ms,
                period_ends_at_ms=now_ms + trial_s * 1000,
            )
        )
    return _timed(
        replace(
            row,
            state=SubscriptionState.ACTIVE,
            periods_charged=1,
            charged_millicredits=row.price_millicredits,
            period_started_at_ms=now_ms,
            period_ends_at_ms=now_ms + row.period_s * 1000,
        )
    )


def renewed(row: SubscriptionRow, /, *, now_ms: int) -> SubscriptionRow:
    """``row`` after the next period was charged."""
    on_time = (
        row.state is not SubscriptionState.PAST_DUE
        and row.period_ends_at_ms + row.period_s * 1000 > now_ms
    )
    starts_at_ms = row.period_ends_at_ms if on_time else now_ms
    return _timed(
        replace(
            row,
            state=SubscriptionState.ACTIVE,
            periods_charged=row.periods_charged + 1,
            charged_millicredits=row.charged_millicredits + row.price_millicredits,
            period_started_at_ms=starts_at_ms,
            period_ends_at_ms=starts_at_ms + row.period_s * 1000,
            next_attempt_at_ms=None,
            grace_ends_at_ms=None,
            failure="",
            failed_attempts=0,
            updated_at_ms=now_ms,
        )
    )


def renewal_failed(row: SubscriptionRow, /, *, now_ms: int, reason: str) -> SubscriptionRow:
    """``row`` after a refused charge: past due, retried until the grace ends."""
    grace_ends_at_ms = row.grace_ends_at_ms or row.period_ends_at_ms + GRACE_MS
    return _timed(
        replace(
            row,
            state=SubscriptionState.PAST_DUE,
            next_attempt_at_ms=min(now_ms + RETRY_MS, grace_ends_at_ms),
            grace_ends_at_ms=grace_ends_at_ms,
            failure=reason,
            failed_attempts=row.failed_attempts + 1,
            updated_at_ms=now_ms,
        )
    )


def cancelled(row: SubscriptionRow, /, *, now_ms: int) -> SubscriptionRow:
    """A cancel takes effect at the paid period's end; an unpaid one ends now.
    Cancelling what is cancelling or over changes nothing."""
    if row.state is SubscriptionState.PAST_DUE:
        return ended(replace(row, cancel_at_period_end=True), now_ms=now_ms)
    if row.state not in (SubscriptionState.TRIALING, SubscriptionState.ACTIVE):
        return _timed(replace(row, cancel_requested=False))
    return _timed(
        replace(
            row,
            state=SubscriptionState.CANCELLING,
            cancel_at_period_end=True,
            cancel_requested=False,
            updated_at_ms=now_ms,
        )
    )


def ended(row: SubscriptionRow, /, *, now_ms: int) -> SubscriptionRow:
    return _finished(row, SubscriptionState.ENDED, now_ms=now_ms)


def lapsed(row: SubscriptionRow, /, *, now_ms: int) -> SubscriptionRow:
    return _finished(row, SubscriptionState.LAPSED, now_ms=now_ms)


def access_ends_at_ms(row: SubscriptionRow, /) -> int:
    """Until when the subscription gives access as it stands (grace included)."""
    if row.state is SubscriptionState.PAST_DUE:
        assert row.grace_ends_at_ms is not None
        return row.grace_ends_at_ms
    return row.period_ends_at_ms


def token_expires_at_ms(row: SubscriptionRow, /, *, now_ms: int) -> int | None:
    """When a token issued now expires; None when no token may be issued."""
    if row.state not in LIVE_STATES:
        return None
    ends_at_ms = access_ends_at_ms(row)
    if now_ms >= ends_at_ms:
        return None
    return min(now_ms + _TOKEN_LIFETIME_MS, ends_at_ms)


def _finished(row: SubscriptionRow, state: SubscriptionState, *, now_ms: int) -> SubscriptionRow:
    return _timed(
        replace(
            row,
            state=state,
            next_attempt_at_ms=None,
            grace_ends_at_ms=None,
            cancel_requested=False,
            updated_at_ms=now_ms,
        )
    )


def _timed(row: SubscriptionRow, /) -> SubscriptionRow:
    """``row`` with its next timer set from its state (the one place it is computed)."""
    return replace(row, due_at_ms=due_at_ms(row))
