"""Top-ups: buying credits with Stripe, minted only from verified webhooks.

1. ``start_top_up`` records the top-up and creates a Stripe PaymentIntent for
   the price plus the purchase fee (idempotency key: the top-up id).
2. The human pays on the page with Stripe.js (offline, localstripe's mock
   Stripe.js tokenizes the card and ``confirm_offline_card`` confirms it).
3. Stripe sends ``payment_intent.succeeded``; ``handle_webhook`` verifies the
   signature with ``stripe.Webhook.construct_event`` and, in one database
   transaction, records the event id and mints the credits.

Nothing else mints. Duplicates cannot mint twice: the event id is stored
(primary key) in the same transaction as its effect, the top-up row is
locked and moves ``created → paid`` once, and the ledger transfer ids derive
from the PaymentIntent id, so even a second event with another id for the
same payment replays instead of minting.

Refunds (``charge.refunded``) and disputes (``charge.dispute.created``)
take credits back in proportion to the money reversed (``money.reversal_plan``);
what the agent already spent becomes a receivable and the agent is frozen
by the platform until an operator looks at it. Events may come in any
order: a refund that arrives before its payment is recorded and applied the
moment the payment is.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import stripe
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.use_cases.exchange_accounts import ensure_agent_accounts
from human_portal import limits
from human_portal.accounts import User
from human_portal.budgets import locked_controls, set_operator_freeze
from human_portal.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    WebhookRejected,
)
from human_portal.ledger_accounts import (
    ISSUANCE_ACCOUNT_ID,
    USD_CUSTOMER_FUNDS_ACCOUNT_ID,
    USD_PURCHASE_FEES_ACCOUNT_ID,
    USD_STRIPE_ACCOUNT_ID,
    agent_account_id,
)
from human_portal.linking import owner_of
from human_portal.money_rules import TopUpQuote, format_millicredits, reversal_plan
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import operator_audit, payment_disputes, stripe_events, topups
from human_portal.stripe_gateway import PaymentIntentView
from wallet import LedgerId, NewTransfer, TransferCode, TransferFlags, TransferResult

__all__ = [
    "StartedTopUp",
    "TopUp",
    "TopUpStatus",
    "WebhookOutcome",
    "confirm_offline_card",
    "handle_webhook",
    "recent_top_ups",
    "refund_top_up",
    "start_top_up",
    "top_up_of",
]

log = logging.getLogger(__name__)

_CARD_ID_PATTERN = re.compile(r"^card_[A-Za-z0-9]{1,60}\Z")
_EVENT_ID_PATTERN = re.compile(r"^evt_[A-Za-z0-9_]{1,120}\Z")
_PAYMENT_INTENT_PATTERN = re.compile(r"^pi_[A-Za-z0-9_]{1,100}\Z")


class TopUpStatus(enum.StrEnum):
    CREATED = "created"
    PAID = "paid"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class TopUp:
    topup_id: str
    user_id: str
    agent_id: str
    package_code: str
    price_cents: int
    fee_cents: int
    total_cents: int
    credits_millicredits: int
    payment_intent_id: str | None
    status: TopUpStatus
    refunded_cents: int
    disputed_cents: int
    reversed_cents: int
    reversed_fee_cents: int
    clawed_back_millicredits: int
    receivable_millicredits: int
    created_at_ms: int
    paid_at_ms: int | None


@dataclass(frozen=True, slots=True)
class StartedTopUp:
    top_up: TopUp
    client_secret: str


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    outcome: str


class _ClawbackRaced(Exception):
    """The agent spent between reading its balance and the clawback: read again."""


# --- starting and paying --------------------------------------------------------------


async def start_top_up(
    context: PortalContext, user: User, agent_id: str, quote: TopUpQuote, /
) -> StartedTopUp:
    """Record a top-up for one of the user's agents and create its PaymentIntent."""
    now_ms = context.now_ms()
    topup_id = "t_" + uuid.uuid4().hex
    values: dict[str, Any] = {
        "topup_id": topup_id,
        "user_id": user.user_id,
        "agent_id": agent_id,
        "package_code": quote.package_code,
        "price_cents": quote.price_cents,
        "fee_cents": quote.fee_cents,
        "total_cents": quote.total_cents,
        "credits_millicredits": quote.credits_millicredits,
        "payment_intent_id": None,
        "status": TopUpStatus.CREATED.value,
        "refunded_cents": 0,
        "disputed_cents": 0,
        "reversed_cents": 0,
        "reversed_fee_cents": 0,
        "clawed_back_millicredits": 0,
        "receivable_millicredits": 0,
        "created_at_ms": now_ms,
        "paid_at_ms": None,
    }

    async def record(connection: AsyncConnection) -> None:
        await owner_of(connection, user, agent_id)
        since_ms = now_ms - 24 * 3600 * 1000
        counted = await connection.execute(
            sa.select(sa.func.count()).where(
                topups.c.user_id == user.user_id,
                topups.c.status == TopUpStatus.CREATED.value,
                topups.c.created_at_ms > since_ms,
            )
        )
        count = int(counted.scalar_one())
        if count >= limits.TOPUPS_OPEN_PER_USER_MAX:
            raise LimitExceeded(
                "too many unpaid top-ups today; pay or wait",
                limit=limits.TOPUPS_OPEN_PER_USER_MAX,
                requested=count + 1,
            )
        await connection.execute(topups.insert().values(**values))

    await context.write(record)
    intent = await context.payments.create_payment_intent(
        amount_cents=quote.total_cents,
        metadata={"topup_id": topup_id, "agent_id": agent_id},
        idempotency_key=f"topup:{topup_id}",
    )
    if intent.amount_cents != quote.total_cents:
        raise Conflict("Stripe created a payment for another amount")

    async def attach(connection: AsyncConnection) -> None:
        await connection.execute(
            topups.update()
            .where(topups.c.topup_id == topup_id)
            .values(payment_intent_id=intent.payment_intent_id)
        )

    await context.write(attach)
    values["payment_intent_id"] = intent.payment_intent_id
    return StartedTopUp(_top_up_from_row(values), intent.client_secret)


async def confirm_offline_card(
    context: PortalContext, user: User, topup_id: str, card_id: str, /
) -> PaymentIntentView:
    """Offline only: confirm the payment with the card localstripe's Stripe.js tokenized.

    Stripe's own Stripe.js confirms card payments in the browser; localstripe's
    mock cannot, so in offline mode the server attaches the card and confirms.
    """
    if not context.config.stripe.offline:
        raise PermissionDenied("card confirmation by the server is for offline mode only")
    if not _CARD_ID_PATTERN.match(card_id):
        raise InvalidInput("card", "not a card token")
    top_up = await top_up_of(context, user, topup_id)
    if top_up.status is not TopUpStatus.CREATED or top_up.payment_intent_id is None:
        raise Conflict("this top-up is not waiting for a payment")
    return await context.payments.confirm_with_card(top_up.payment_intent_id, card_id)


async def top_up_of(context: PortalContext, user: User, topup_id: str, /) -> TopUp:
    async def work(connection: AsyncConnection) -> TopUp:
        found = await connection.execute(
            sa.select(topups).where(topups.c.topup_id == topup_id, topups.c.user_id == user.user_id)
        )
        row = found.mappings().first()
        if row is None:
            raise NotFound("top-up")
        return _top_up_from_row(dict(row))

    return await context.read(work)


async def recent_top_ups(
    connection: AsyncConnection, /, *, user_id: str | None, limit: int
) -> list[TopUp]:
    """The newest top-ups, of one user or (for operators) of everyone."""
    query = sa.select(topups).order_by(topups.c.created_at_ms.desc()).limit(limit)
    if user_id is not None:
        query = query.where(topups.c.user_id == user_id)
    found = await connection.execute(query)
    return [_top_up_from_row(dict(row)) for row in found.mappings()]


# --- webhooks ---------------------------------------------------------------------


async def handle_webhook(
    context: PortalContext, payload: bytes, signature_header: str | None, /
) -> WebhookOutcome:
    """Verify a Stripe webhook and apply it once; a refused one changes nothing."""
    event = _verified_event(payload, signature_header, context.config.stripe.webhook_secret)
    event_id, event_type = str(event["id"]), str(event["type"])
    stripe_object: Mapping[str, Any] = event["data"]["object"]
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> str:
        seen = await connection.execute(
            sa.select(stripe_events.c.outcome).where(stripe_events.c.event_id == event_id)
        )
        if seen.first() is not None:
            return "duplicate_event"
        outcome = await _apply_event(context, connection, event_type, stripe_object, now_ms)
        await connection.execute(
            stripe_events.insert().values(
                event_id=event_id,
                event_type=event_type[:100],
                object_id=str(stripe_object.get("id", ""))[:200],
                outcome=outcome,
                received_at_ms=now_ms,
            )
        )
        return outcome

    outcome = await _with_clawback_retries(context, work)
    return WebhookOutcome(event_id, event_type, outcome)


def _verified_event(payload: bytes, signature_header: str | None, secret: str) -> dict[str, Any]:
    if len(payload) > limits.WEBHOOK_BYTES_MAX:
        raise WebhookRejected("too_large", f"a webhook is at most {limits.WEBHOOK_BYTES_MAX} bytes")
    if not signature_header:
        raise WebhookRejected("missing_signature", "the Stripe-Signature header is missing")
    try:
        stripe.Webhook.construct_event(
            payload, signature_header, secret, tolerance=limits.WEBHOOK_TOLERANCE_S
        )
    except stripe.SignatureVerificationError as exc:
        reason = "stale" if "tolerance" in str(exc) else "bad_signature"
        raise WebhookRejected(reason, f"the webhook signature was refused ({reason})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected("malformed", "the webhook body is not a Stripe event") from exc
    try:
        event = json.loads(payload)
        stripe_object = event["data"]["object"]
        valid = (
            isinstance(event["id"], str)
            and _EVENT_ID_PATTERN.match(event["id"]) is not None
            and isinstance(event["type"], str)
            and isinstance(stripe_object, dict)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookRejected("malformed", "the webhook body is not a Stripe event") from exc
    if not valid:
        raise WebhookRejected("malformed", "the webhook body is not a Stripe event")
    return dict(event)


async def _apply_event(
    context: PortalContext,
    connection: AsyncConnection,
    event_type: str,
    stripe_object: Mapping[str, Any],
    now_ms: int,
) -> str:
    if event_type == "payment_intent.succeeded":
        return await _on_payment_succeeded(context, connection, stripe_object, now_ms)
    if event_type == "payment_intent.canceled":
        return await _on_payment_canceled(connection, stripe_object)
    if event_type == "charge.refunded":
        payment_intent_id = _payment_intent_of(stripe_object)
        refunded_cents = _cents(stripe_object.get("amount_refunded"))
        if payment_intent_id is None or refunded_cents is None:
            return "ignored:malformed_charge"
        return await _record_refund(context, connection, payment_intent_id, refunded_cents, now_ms)
    if event_type == "charge.dispute.created":
        return await _on_dispute(context, connection, stripe_object, now_ms)
    return "ignored:event_type"


async def _on_payment_succeeded(
    context: PortalContext, connection: AsyncConnection, intent: Mapping[str, Any], now_ms: int
) -> str:
    payment_intent_id = str(intent.get("id", ""))
    top_up = await _locked_top_up(connection, payment_intent_id)
    if top_up is None:
        return "ignored:unknown_payment"
    amount_cents = _cents(intent.get("amount_received")) or _cents(intent.get("amount"))
    if (
        intent.get("status") != "succeeded"
        or intent.get("currency") != limits.CURRENCY
        or amount_cents != top_up.total_cents
    ):
        log.warning("payment %s does not match its top-up; nothing minted", payment_intent_id)
        return "rejected:amount_mismatch"
    if top_up.status is TopUpStatus.PAID:
        return "duplicate_payment"
    # The lock order of every path that may freeze: controls, then the ledger.
    await locked_controls(connection, top_up.agent_id, now_ms)
    await _mint(context, connection, top_up)
    await connection.execute(
        topups.update()
        .where(topups.c.topup_id == top_up.topup_id)
        .values(status=TopUpStatus.PAID.value, paid_at_ms=now_ms)
    )
    # A refund or dispute that came first is applied now.
    await _apply_reversal(context, connection, top_up, now_ms)
    return "minted"


async def _mint(context: PortalContext, connection: AsyncConnection, top_up: TopUp) -> None:
    await ensure_agent_accounts(context.ledger, [top_up.agent_id], connection=connection)
    payment = top_up.payment_intent_id
    assert payment is not None
    steps = [
        (f"topup:{payment}:mint", LedgerId.CREDITS, ISSUANCE_ACCOUNT_ID,
         agent_account_id(top_up.agent_id), top_up.credits_millicredits, TransferCode.MINT),
        (f"topup:{payment}:funds", LedgerId.USD_CENTS, USD_STRIPE_ACCOUNT_ID,
         USD_CUSTOMER_FUNDS_ACCOUNT_ID, top_up.price_cents, TransferCode.MINT),
        (f"topup:{payment}:fee", LedgerId.USD_CENTS, USD_STRIPE_ACCOUNT_ID,
         USD_PURCHASE_FEES_ACCOUNT_ID, top_up.fee_cents, TransferCode.FEE),
    ]  # fmt: skip
    transfers = _linked_chain(steps, user_data=f"topup:{top_up.topup_id}")
    outcomes = await context.ledger.create_transfers(transfers, connection=connection)
    refused = [outcome for outcome in outcomes if outcome.result is not TransferResult.OK]
    assert not refused, f"the ledger refused a top-up mint: {refused}"


async def _on_payment_canceled(connection: AsyncConnection, intent: Mapping[str, Any]) -> str:
    top_up = await _locked_top_up(connection, str(intent.get("id", "")))
    if top_up is None:
        return "ignored:unknown_payment"
    if top_up.status is not TopUpStatus.CREATED:
        return "ignored:not_open"
    await connection.execute(
        topups.update()
        .where(topups.c.topup_id == top_up.topup_id)
        .values(status=TopUpStatus.CANCELED.value)
    )
    return "canceled"


async def _record_refund(
    context: PortalContext,
    connection: AsyncConnection,
    payment_intent_id: str,
    refunded_cents: int,
    now_ms: int,
) -> str:
    top_up = await _locked_top_up(connection, payment_intent_id)
    if top_up is None:
        return "ignored:unknown_payment"
    # Cumulative: an older event with a smaller total changes nothing.
    refunded_cents = min(max(top_up.refunded_cents, refunded_cents), top_up.total_cents)
    await connection.execute(
        topups.update()
        .where(topups.c.topup_id == top_up.topup_id)
        .values(refunded_cents=refunded_cents)
    )
    top_up = _replace(top_up, refunded_cents=refunded_cents)
    if top_up.status is TopUpStatus.PAID:
        await locked_controls(connection, top_up.agent_id, now_ms)
        await _apply_reversal(context, connection, top_up, now_ms)
    return "refund_recorded"


async def _on_dispute(
    context: PortalContext, connection: AsyncConnection, dispute: Mapping[str, Any], now_ms: int
) -> str:
    payment_intent_id = _payment_intent_of(dispute)
    amount_cents = _cents(dispute.get("amount"))
    dispute_id = str(dispute.get("id", ""))
    if payment_intent_id is None or not amount_cents or not dispute_id.startswith("dp_"):
        return "ignored:malformed_dispute"
    top_up = await _locked_top_up(connection, payment_intent_id)
    if top_up is None:
        return "ignored:unknown_payment"
    known = await connection.execute(
        sa.select(payment_disputes.c.dispute_id).where(payment_disputes.c.dispute_id == dispute_id)
    )
    if known.first() is not None:
        return "duplicate_dispute"
    await connection.execute(
        payment_disputes.insert().values(
            dispute_id=dispute_id,
            topup_id=top_up.topup_id,
            amount_cents=amount_cents,
            created_at_ms=now_ms,
        )
    )
    disputed_cents = min(top_up.disputed_cents + amount_cents, top_up.total_cents)
    await connection.execute(
        topups.update()
        .where(topups.c.topup_id == top_up.topup_id)
        .values(disputed_cents=disputed_cents)
    )
    top_up = _replace(top_up, disputed_cents=disputed_cents)
    if top_up.status is TopUpStatus.PAID:
        await locked_controls(connection, top_up.agent_id, now_ms)
        await _apply_reversal(context, connection, top_up, now_ms)
    return "dispute_recorded"


async def _apply_reversal(
    context: PortalContext, connection: AsyncConnection, top_up: TopUp, now_ms: int
) -> None:
    """Claw back what the refunds and disputes so far call for, and no more."""
    account_id = agent_account_id(top_up.agent_id)
    balances = await context.ledger.lookup_accounts([account_id], connection=connection)
    wallet = balances.get(account_id)
    plan = reversal_plan(
        price_cents=top_up.price_cents,
        fee_cents=top_up.fee_cents,
        credits_millicredits=top_up.credits_millicredits,
        refunded_cents=top_up.refunded_cents,
        disputed_cents=top_up.disputed_cents,
        reversed_cents=top_up.reversed_cents,
        reversed_fee_cents=top_up.reversed_fee_cents,
        clawed_back_millicredits=top_up.clawed_back_millicredits,
        receivable_millicredits=top_up.receivable_millicredits,
        available_millicredits=wallet.available if wallet is not None else 0,
    )
    if plan is None:
        return
    payment, level = top_up.payment_intent_id, plan.reversed_cents
    steps = [
        (f"topup:{payment}:clawback:{level}", LedgerId.CREDITS, account_id,
         ISSUANCE_ACCOUNT_ID, plan.clawback_millicredits, TransferCode.TRANSFER),
        (f"topup:{payment}:refund:{level}", LedgerId.USD_CENTS, USD_CUSTOMER_FUNDS_ACCOUNT_ID,
         USD_STRIPE_ACCOUNT_ID, plan.delta_price_cents, TransferCode.TRANSFER),
        (f"topup:{payment}:refund_fee:{level}", LedgerId.USD_CENTS, USD_PURCHASE_FEES_ACCOUNT_ID,
         USD_STRIPE_ACCOUNT_ID, plan.delta_fee_cents, TransferCode.TRANSFER),
    ]  # fmt: skip
    transfers = _linked_chain(steps, user_data=f"reversal:{top_up.topup_id}")
    outcomes = await context.ledger.create_transfers(transfers, connection=connection)
    if any(outcome.result is TransferResult.EXCEEDS_CREDITS for outcome in outcomes):
        raise _ClawbackRaced()
    refused = [outcome for outcome in outcomes if outcome.result is not TransferResult.OK]
    assert not refused, f"the ledger refused a clawback: {refused}"
    await connection.execute(
        topups.update()
        .where(topups.c.topup_id == top_up.topup_id)
        .values(
            reversed_cents=plan.reversed_cents,
            reversed_fee_cents=plan.reversed_fee_cents,
            clawed_back_millicredits=top_up.clawed_back_millicredits + plan.clawback_millicredits,
            receivable_millicredits=top_up.receivable_millicredits + plan.receivable_millicredits,
        )
    )
    if plan.receivable_millicredits > 0:
        reason = (
            f"a payment was reversed after its credits were spent: "
            f"{format_millicredits(plan.receivable_millicredits)} credits are owed"
        )
        await set_operator_freeze(
            connection, top_up.agent_id, frozen=True, reason=reason, now_ms=now_ms
        )
        await connection.execute(
            operator_audit.insert().values(
                actor_user_id="system",
                action="freeze",
                subject_id=top_up.agent_id,
                detail=reason,
                at_ms=now_ms,
            )
        )


def _linked_chain(
    steps: list[tuple[str, LedgerId, str, str, int, TransferCode]], *, user_data: str
) -> list[NewTransfer]:
    """The steps with a positive amount, linked so they all happen or none."""
    kept = [step for step in steps if step[4] > 0]
    return [
        NewTransfer(
            id=transfer_id,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=amount,
            ledger=ledger,
            code=code,
            flags=TransferFlags.LINKED if index < len(kept) - 1 else TransferFlags.NONE,
            user_data=user_data,
        )
        for index, (transfer_id, ledger, debit_account_id, credit_account_id, amount, code) in (
            enumerate(kept)
        )
    ]


async def _with_clawback_retries(
    context: PortalContext, work: Callable[[AsyncConnection], Awaitable[str]]
) -> str:
    for _ in range(limits.CLAWBACK_ATTEMPTS_MAX - 1):
        try:
            return await context.write(work)
        except _ClawbackRaced:
            continue
    return await context.write(work)


# --- operator refunds -------------------------------------------------------------


async def refund_top_up(
    context: PortalContext, operator: User, topup_id: str, amount_cents: int, /
) -> TopUp:
    """Refund part or all of a paid top-up through Stripe and claw the credits back now.

    Stripe's answer is authoritative, so the clawback does not wait for the
    ``charge.refunded`` webhook; when that arrives it finds nothing left to do.
    """
    if not operator.is_operator:
        raise PermissionDenied("only operators refund payments")

    async def load(connection: AsyncConnection) -> TopUp:
        found = await connection.execute(sa.select(topups).where(topups.c.topup_id == topup_id))
        row = found.mappings().first()
        if row is None:
            raise NotFound("top-up")
        return _top_up_from_row(dict(row))

    top_up = await context.read(load)
    if top_up.status is not TopUpStatus.PAID or top_up.payment_intent_id is None:
        raise Conflict("only a paid top-up can be refunded")
    refundable_cents = top_up.total_cents - top_up.refunded_cents
    if not 0 < amount_cents <= refundable_cents:
        raise LimitExceeded(
            f"refund between 1 and {refundable_cents} cents",
            limit=refundable_cents,
            requested=amount_cents,
        )
    payment_intent_id = top_up.payment_intent_id
    refunded_cents = await context.payments.refund(payment_intent_id, amount_cents=amount_cents)
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> str:
        outcome = await _record_refund(
            context, connection, payment_intent_id, refunded_cents, now_ms
        )
        await connection.execute(
            operator_audit.insert().values(
                actor_user_id=operator.user_id,
                action="refund",
                subject_id=topup_id,
                detail=f"{amount_cents} cents",
                at_ms=now_ms,
            )
        )
        return outcome

    await _with_clawback_retries(context, work)
    return await context.read(load)


# --- rows -------------------------------------------------------------------------


async def _locked_top_up(connection: AsyncConnection, payment_intent_id: str) -> TopUp | None:
    if not _PAYMENT_INTENT_PATTERN.match(payment_intent_id):
        return None
    found = await connection.execute(
        sa.select(topups).where(topups.c.payment_intent_id == payment_intent_id).with_for_update()
    )
    row = found.mappings().first()
    return _top_up_from_row(dict(row)) if row is not None else None


def _payment_intent_of(stripe_object: Mapping[str, Any]) -> str | None:
    value = stripe_object.get("payment_intent")
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and _PAYMENT_INTENT_PATTERN.match(value) else None


def _cents(value: object) -> int | None:
    if type(value) is int and 0 <= value <= 10 * limits.CUSTOM_TOPUP_CENTS_MAX:
        return value
    return None


def _replace(top_up: TopUp, /, **changes: Any) -> TopUp:
    return dataclasses.replace(top_up, **changes)


def _top_up_from_row(row: Mapping[str, Any]) -> TopUp:
    return TopUp(
        topup_id=str(row["topup_id"]),
        user_id=str(row["user_id"]),
        agent_id=str(row["agent_id"]),
        package_code=str(row["package_code"]),
        price_cents=int(row["price_cents"]),
        fee_cents=int(row["fee_cents"]),
        total_cents=int(row["total_cents"]),
        credits_millicredits=int(row["credits_millicredits"]),
        payment_intent_id=row["payment_intent_id"],
        status=TopUpStatus(row["status"]),
        refunded_cents=int(row["refunded_cents"]),
        disputed_cents=int(row["disputed_cents"]),
        reversed_cents=int(row["reversed_cents"]),
        reversed_fee_cents=int(row["reversed_fee_cents"]),
        clawed_back_millicredits=int(row["clawed_back_millicredits"]),
        receivable_millicredits=int(row["receivable_millicredits"]),
        created_at_ms=int(row["created_at_ms"]),
        paid_at_ms=row["paid_at_ms"],
    )
