"""Subscriptions: plans, subscribing, the timers' period charges, tokens, cancelling.

The rules are pure (:mod:`exchange.domain.subscription_rules`); each step
here is one transaction that locks the subscription, moves the money
through escrow and stages the parties' notices (published after commit).

A period's charge is a purchase like any other: the human's spending
controls judge it (frozen, daily limit, approval threshold; an approval
asked for covers exactly that period's charge id), and the escrow hold it
makes, released at once to the provider less the subscription fee, counts
in "spent today". A refused renewal makes the subscription ``past_due``:
the charge is retried every retry interval until the grace period ends,
then it lapses.

A human cancels in the portal by marking the subscription
(:func:`request_cancellation`); the next sweep applies it like the agent's
own cancel, so every change of state and its notices happen here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.protocol import (
    Header,
    ListPlans,
    ListSubscriptions,
    PlansReply,
    PlanView,
    PublishPlan,
    Subscribe,
    SubscriptionEvent,
    SubscriptionNotice,
    SubscriptionsReply,
    SubscriptionState,
    SubscriptionToken,
    SubscriptionTokenReply,
    SubscriptionView,
)
from agent_client.signing import VerifiedDocument, make_header, seal
from escrow import HoldOrder, InsufficientFunds, SettleOrder, settlement_for
from exchange.adapters import listing_store, subscription_store
from exchange.domain.listings import listing_id_for
from exchange.domain.subscription_rules import (
    GRACE_MS,
    PlanRow,
    SubscriptionRow,
    TimerStep,
    attempt_id,
    cancelled,
    charge_id,
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
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SWEEP_BATCH_MAX
from exchange.use_cases.contract_views import envelope_text
from exchange.use_cases.exchange_accounts import agent_account_id, ensure_agent_accounts
from exchange.use_cases.exchange_context import ExchangeContext, OutboxNotice
from exchange.use_cases.spending import purchase_refusal, purchase_request
from wallet import FeeKind
from wallet.database import read_transaction

__all__ = [
    "SubscriptionUseCases",
    "plan_view",
    "request_cancellation",
    "subscription_view",
    "subscriptions_of",
]

_Step = tuple[SubscriptionRow, list[OutboxNotice]]
_CANCELLABLE_STATES = frozenset(
    {SubscriptionState.TRIALING, SubscriptionState.ACTIVE, SubscriptionState.PAST_DUE}
)


def plan_view(plan: PlanRow, /) -> PlanView:
    return PlanView(**{field: getattr(plan, field) for field in PlanRow.__slots__})


def subscription_view(row: SubscriptionRow, /) -> SubscriptionView:
    hidden = {"request_envelope", "due_at_ms"}
    return SubscriptionView(
        **{field: getattr(row, field) for field in SubscriptionRow.__slots__ if field not in hidden}
    )


async def request_cancellation(
    connection: AsyncConnection, subscription_id: str, /, *, buyer_ids: set[str], now_ms: int
) -> SubscriptionView | None:
    """A human cancels one of their agents' subscriptions (the portal, in its transaction).

    The exchange's next sweep applies it (at the paid period's end, like the
    agent's own cancel) and tells both parties. None: no such subscription
    of these agents.
    """
    row = await subscription_store.get_subscription(connection, subscription_id, for_update=True)
    if row is None or row.buyer_id not in buyer_ids:
        return None
    if row.state in _CANCELLABLE_STATES and not row.cancel_requested:
        after = replace(row, cancel_requested=True, updated_at_ms=now_ms, due_at_ms=now_ms)
        await subscription_store.update_subscription(connection, row, after)
        row = after
    return subscription_view(row)


async def subscriptions_of(
    connection: AsyncConnection,
    agent_ids: list[str],
    /,
    *,
    role: str = "buyer",
    after_id: str | None = None,
    limit: int = protocol_limits.SUBSCRIPTIONS_PER_PAGE_MAX,
) -> tuple[list[SubscriptionView], bool]:
    """The subscriptions these agents hold as ``role`` (for the portal), one page by id."""
    assert (
        role in ("buyer", "provider") and 1 <= limit <= protocol_limits.SUBSCRIPTIONS_PER_PAGE_MAX
    )
    rows, has_more = await subscription_store.list_subscriptions(
        connection,
        buyer_ids=agent_ids if role == "buyer" else None,
        provider_ids=agent_ids if role == "provider" else None,
        after_id=after_id,
        limit=limit,
    )
    return [subscription_view(row) for row in rows], has_more


class SubscriptionUseCases:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    # --- plans ------------------------------------------------------------------------

    async def publish_plan(self, provider_id: str, request: PublishPlan, /) -> PlanView:
        """Publish (or withdraw) a plan on a capability the provider lists."""
        now_ms = self._context.clock.now_ms()
        plan = PlanRow(
            plan_id=plan_id_for(provider_id, request.plan),
            provider_id=provider_id,
            plan=request.plan,
            capability=request.capability,
            price_millicredits=request.price_millicredits,
            period_s=request.period_s,
            trial_s=request.trial_s,
            description=request.description,
            active=request.active,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )

        async def work(connection: AsyncConnection) -> PlanRow:
            return await self._publish_in(connection, plan)

        return plan_view(await self._context.run(work))

    async def _publish_in(self, connection: AsyncConnection, plan: PlanRow) -> PlanRow:
        listing_id = listing_id_for(plan.provider_id, plan.capability)
        if await listing_store.get_listing(connection, listing_id) is None:
            raise ExchangeError(
                ErrorCode.NOT_FOUND,
                f"you list no {plan.capability!r}: advertise it before offering plans on it",
            )
        existing = await subscription_store.get_plan(connection, plan.plan_id)
        if existing is None:
            count = await subscription_store.count_provider_plans(connection, plan.provider_id)
            if count >= protocol_limits.PLANS_PER_PROVIDER_MAX:
                raise ExchangeError(
                    ErrorCode.INVALID_REQUEST,
                    f"a provider has at most {protocol_limits.PLANS_PER_PROVIDER_MAX} plans",
                )
            await subscription_store.upsert_plan(connection, plan, exists=False)
            return plan
        if not existing.same_terms(plan):
            raise ExchangeError(
                ErrorCode.INVALID_REQUEST,
                f"plan {plan.plan!r} was published with other terms, which never change: "
                "publish a plan of another name",
            )
        if existing.active == plan.active:
            return existing
        after = replace(existing, active=plan.active, updated_at_ms=plan.updated_at_ms)
        await subscription_store.upsert_plan(connection, after, exists=True)
        return after

    async def list_plans(self, request: ListPlans, /) -> PlansReply:
        if request.provider_id is None and request.capability is None:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "name a provider_id or a capability")
        async with read_transaction(self._context.engine) as connection:
            rows = await subscription_store.list_plans(
                connection,
                provider_id=request.provider_id,
                capability=request.capability,
                limit=request.limit,
            )
        return PlansReply(plans=[plan_view(row) for row in rows])

    # --- subscribing ------------------------------------------------------------------

    async def subscribe(
        self, buyer_id: str, verified: VerifiedDocument[Subscribe], /
    ) -> SubscriptionView:
        """Start a subscription: charge the first period now, or start the trial."""
        request = verified.document
        subscription_id = subscription_id_for(buyer_id, request.plan_id, request.request_id)
        request_text = envelope_text(verified.envelope)

        async def work(connection: AsyncConnection) -> ExchangeError | _Step:
            # The plan's row, locked, queues the buyers subscribing to it: the check
            # that a buyer holds one live subscription per plan cannot race.
            plan = await subscription_store.get_plan(connection, request.plan_id, for_update=True)
            existing = await subscription_store.get_subscription(connection, subscription_id)
            if existing is not None:
                return existing, []  # a retry of a subscription already started
            plan = await self._subscribable_plan(connection, plan, request, buyer_id)
            now_ms = self._context.clock.now_ms()
            row = first_period(
                _new_subscription(plan, subscription_id, buyer_id, request_text, now_ms),
                trial_s=plan.trial_s,
            )
            refusal = await self._charge(connection, row, period=1, now_ms=now_ms, first=True)
            if refusal is not None and refusal.code is ErrorCode.INSUFFICIENT_FUNDS:
                # Rolled back, the ledger's refusal too: the same request, retried
                # after a top-up, is a new try (the ledger repeats a kept refusal).
                raise refusal
            if refusal is not None:
                return refusal  # committed: an approval it asks for is kept
            await subscription_store.insert_subscription(connection, row)
            return row, await self._staged(connection, row, "started")

        outcome = await self._context.run(work)
        if isinstance(outcome, ExchangeError):
            # Committed first: an approval the refusal asks for is recorded.
            raise outcome
        return await self._answer(outcome)

    async def _subscribable_plan(
        self, connection: AsyncConnection, plan: PlanRow | None, request: Subscribe, buyer_id: str
    ) -> PlanRow:
        if plan is None or not plan.active:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such active plan")
        if plan.provider_id == buyer_id:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "an agent cannot subscribe to itself")
        if (plan.price_millicredits, plan.period_s) != (
            request.price_millicredits,
            request.period_s,
        ):
            raise ExchangeError(
                ErrorCode.INVALID_REQUEST,
                f"the plan costs {plan.price_millicredits} mcr every {plan.period_s} s, "
                f"not {request.price_millicredits} mcr every {request.period_s} s",
            )
        live = await subscription_store.live_subscription_of(connection, buyer_id, plan.plan_id)
        if live is not None:
            raise ExchangeError(
                ErrorCode.INVALID_STATE, f"already subscribed to this plan ({live})"
            )
        return plan

    async def cancel(self, agent_id: str, subscription_id: str, /) -> SubscriptionView:
        """The buyer or the provider cancels (at the paid period's end); again is a no-op."""

        async def work(connection: AsyncConnection) -> _Step:
            row = await self._party_row(connection, subscription_id, agent_id, for_update=True)
            after = cancelled(row, now_ms=self._context.clock.now_ms())
            event: SubscriptionEvent = (
                "ended" if after.state is SubscriptionState.ENDED else "cancelling"
            )
            return await self._moved(connection, row, after, event)

        return await self._answer(await self._context.run(work))

    async def get(self, agent_id: str, subscription_id: str, /) -> SubscriptionView:
        async with read_transaction(self._context.engine) as connection:
            row = await self._party_row(connection, subscription_id, agent_id)
        return subscription_view(row)

    async def listed(self, agent_id: str, request: ListSubscriptions, /) -> SubscriptionsReply:
        async with read_transaction(self._context.engine) as connection:
            rows, has_more = await subscription_store.list_subscriptions(
                connection,
                buyer_ids=[agent_id] if request.role == "buyer" else None,
                provider_ids=[agent_id] if request.role == "provider" else None,
                after_id=request.after_id,
                limit=request.limit,
            )
        return SubscriptionsReply(
            subscriptions=[subscription_view(row) for row in rows], has_more=has_more
        )

    async def token(self, agent_id: str, subscription_id: str, /) -> SubscriptionTokenReply:
        """A fresh signed token for the buyer to show its provider."""
        async with read_transaction(self._context.engine) as connection:
            row = await self._party_row(connection, subscription_id, agent_id)
        if row.buyer_id != agent_id:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only the buyer is given tokens")
        context = self._context
        expires_at_ms = token_expires_at_ms(row, now_ms=context.clock.now_ms())
        if expires_at_ms is None:
            raise ExchangeError(
                ErrorCode.INVALID_STATE, f"the subscription is {row.state.value}: no access"
            )
        header = make_header(
            context.keys,
            audience=row.provider_id,
            subject=subjects.subscription(row.subscription_id),
            lifetime_s=(expires_at_ms - context.clock.now_ms()) / 1000,
            clock=context.clock,
        )
        token = SubscriptionToken(
            header=header,
            subscription_id=row.subscription_id,
            plan_id=row.plan_id,
            plan=row.plan,
            buyer_id=row.buyer_id,
            capability=row.capability,
            state=row.state,
            period_ends_at_ms=row.period_ends_at_ms,
        )
        return SubscriptionTokenReply(token=seal(token, context.keys))

    # --- the timers -------------------------------------------------------------------

    async def sweep(self) -> int:
        """Charge due periods, apply cancels and ends, lapse what the grace ran out on."""
        now_ms = self._context.clock.now_ms()

        async def due(connection: AsyncConnection) -> list[str]:
            return await subscription_store.due_subscription_ids(
                connection, now_ms=now_ms, limit=SWEEP_BATCH_MAX
            )

        return await self._context.apply_due(due, self._apply_timer)

    async def _apply_timer(self, subscription_id: str) -> int:
        async def work(connection: AsyncConnection) -> _Step | None:
            row = await subscription_store.get_subscription(
                connection, subscription_id, for_update=True
            )
            now_ms = self._context.clock.now_ms()
            step = None if row is None else timer_step(row, now_ms=now_ms)
            if row is None or step is None:
                return None  # another worker applied it first
            return await self._timer_step_in(connection, row, step, now_ms)

        outcome = await self._context.run(work)
        if outcome is None:
            return 0
        await self._context.publish_soon(outcome[1])
        return 1

    async def _timer_step_in(
        self, connection: AsyncConnection, row: SubscriptionRow, step: TimerStep, now_ms: int
    ) -> _Step:
        if step is TimerStep.CANCEL:
            after = cancelled(row, now_ms=now_ms)
            event: SubscriptionEvent = (
                "ended" if after.state is SubscriptionState.ENDED else "cancelling"
            )
            return await self._moved(connection, row, after, event)
        if step is TimerStep.END:
            return await self._moved(connection, row, ended(row, now_ms=now_ms), "ended")
        if step is TimerStep.LAPSE:
            return await self._moved(connection, row, lapsed(row, now_ms=now_ms), "lapsed")
        period = row.periods_charged + 1
        refusal = await self._charge(connection, row, period=period, now_ms=now_ms)
        if refusal is None:
            return await self._moved(connection, row, renewed(row, now_ms=now_ms), "renewed")
        reason = f"{refusal.code.value}: {refusal.message}"
        after = renewal_failed(row, now_ms=now_ms, reason=reason)
        return await self._moved(connection, row, after, "renewal_failed", reason=reason)

    # --- the steps, inside a transaction ---------------------------------------------

    async def _charge(
        self,
        connection: AsyncConnection,
        row: SubscriptionRow,
        *,
        period: int,
        now_ms: int,
        first: bool = False,
    ) -> ExchangeError | None:
        """Charge ``period`` (nothing during a trial), or say why it was refused.

        The controls are judged even when a trial defers the first charge, so
        a frozen agent cannot start one and an approval is asked for up front.
        """
        context = self._context
        purchase_id = charge_id(row.subscription_id, period)
        spending = purchase_request(
            purchase_id,
            buyer_id=row.buyer_id,
            provider_id=row.provider_id,
            capability=row.capability,
            price_millicredits=row.price_millicredits,
            now_ms=now_ms,
            offer_expires_at_ms=now_ms + GRACE_MS,
        )
        refusal = await purchase_refusal(
            spending, store=context.spending, ledger=context.ledger, connection=connection
        )
        if refusal is not None:
            return refusal.error(contract_id=row.subscription_id)
        if first and row.state is SubscriptionState.TRIALING:
            return None
        attempt = attempt_id(row.subscription_id, period, row.failed_attempts)
        return await self._pay(connection, row, attempt, period=period, now_ms=now_ms)

    async def _pay(
        self,
        connection: AsyncConnection,
        row: SubscriptionRow,
        purchase_id: str,
        *,
        period: int,
        now_ms: int,
    ) -> ExchangeError | None:
        context = self._context
        await ensure_agent_accounts(
            context.ledger, [row.buyer_id, row.provider_id], connection=connection
        )
        rate_bps = context.fees.rate_bps(FeeKind.SUBSCRIPTION, capability=row.capability)
        price = row.price_millicredits
        settlement = settlement_for(price, provider_share_millicredits=price, fee_rate_bps=rate_bps)
        buyer_account = agent_account_id(row.buyer_id)
        try:
            await context.escrow.charge(
                HoldOrder(purchase_id, buyer_account, price),
                SettleOrder(
                    purchase_id, buyer_account, agent_account_id(row.provider_id), settlement
                ),
                connection=connection,
            )
        except InsufficientFunds:
            return ExchangeError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"the available balance is below the period's {price} mcr",
                contract_id=row.subscription_id,
            )
        await subscription_store.add_charge(
            connection,
            {
                "subscription_id": row.subscription_id,
                "period": period,
                "amount_millicredits": price,
                "fee_millicredits": settlement.fee_millicredits,
                "net_millicredits": settlement.net_millicredits,
                "charged_at_ms": now_ms,
            },
        )
        return None

    async def _moved(
        self,
        connection: AsyncConnection,
        before: SubscriptionRow,
        after: SubscriptionRow,
        event: SubscriptionEvent,
        *,
        reason: str = "",
    ) -> _Step:
        if after == before:
            return before, []
        await subscription_store.update_subscription(connection, before, after)
        return after, await self._staged(connection, after, event, reason=reason)

    async def _staged(
        self,
        connection: AsyncConnection,
        row: SubscriptionRow,
        event: SubscriptionEvent,
        *,
        reason: str = "",
    ) -> list[OutboxNotice]:
        notices = [
            self._context.notice(agent_id, _notice_builder(row, event, reason))
            for agent_id in (row.buyer_id, row.provider_id)
        ]
        await self._context.stage(connection, notices)
        return notices

    async def _party_row(
        self,
        connection: AsyncConnection,
        subscription_id: str,
        agent_id: str,
        *,
        for_update: bool = False,
    ) -> SubscriptionRow:
        row = await subscription_store.get_subscription(
            connection, subscription_id, for_update=for_update
        )
        # A stranger gets the answer of a missing subscription: ids cannot be probed.
        if row is None or agent_id not in (row.buyer_id, row.provider_id):
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such subscription")
        return row

    async def _answer(self, step: _Step) -> SubscriptionView:
        row, notices = step
        await self._context.publish_soon(notices)
        return subscription_view(row)


def _new_subscription(
    plan: PlanRow, subscription_id: str, buyer_id: str, request_text: str, now_ms: int
) -> SubscriptionRow:
    return SubscriptionRow(
        subscription_id=subscription_id,
        plan_id=plan.plan_id,
        plan=plan.plan,
        buyer_id=buyer_id,
        provider_id=plan.provider_id,
        capability=plan.capability,
        price_millicredits=plan.price_millicredits,
        period_s=plan.period_s,
        state=SubscriptionState.ACTIVE,
        periods_charged=0,
        charged_millicredits=0,
        period_started_at_ms=now_ms,
        period_ends_at_ms=now_ms,
        next_attempt_at_ms=None,
        grace_ends_at_ms=None,
        cancel_at_period_end=False,
        cancel_requested=False,
        failure="",
        failed_attempts=0,
        request_envelope=request_text,
        due_at_ms=None,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )


def _notice_builder(
    row: SubscriptionRow, event: SubscriptionEvent, reason: str
) -> Callable[[Header], SubscriptionNotice]:
    view = subscription_view(row)

    def build(header: Header) -> SubscriptionNotice:
        return SubscriptionNotice(header=header, event=event, subscription=view, reason=reason)

    return build
