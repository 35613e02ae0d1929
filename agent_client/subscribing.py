"""Subscriptions: a provider's plans, a buyer's subscriptions, and their tokens.

A provider publishes plans on the capabilities it lists; a buyer subscribes
(the exchange charges the first period at once, or after the trial, and
each later one by its timers) and asks the exchange for short-lived signed
tokens to show the provider. The provider checks a token offline with
:func:`verify_subscription_token`: no request, only the exchange's id.

Each change of a subscription reaches both parties as a signed
``notice.subscription``; :class:`SubscriptionDesk` keeps the latest view of
each and lets a caller wait for an event (:meth:`SubscriptionDesk.wait_event`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Collection

from agent_client import limits, subjects
from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    CancelSubscription,
    Envelope,
    ErrorCode,
    GetSubscription,
    GetSubscriptionToken,
    ListPlans,
    ListSubscriptions,
    PlanReply,
    PlansReply,
    PlanView,
    PublishPlan,
    Subscribe,
    SubscriptionEvent,
    SubscriptionNotice,
    SubscriptionReply,
    SubscriptionsReply,
    SubscriptionState,
    SubscriptionToken,
    SubscriptionTokenReply,
    SubscriptionView,
)
from agent_client.replies import expect_reply
from agent_client.signing import Clock, open_envelope_struct, verify_evidence
from agent_client.stored_results import Requester

__all__ = ["SubscriptionDesk", "verify_subscription_token"]

# Subscriptions whose latest view a desk remembers (the oldest are forgotten).
_VIEWS_REMEMBERED_MAX = 10_000
_LIVE_STATES = frozenset(
    {
        SubscriptionState.TRIALING,
        SubscriptionState.ACTIVE,
        SubscriptionState.PAST_DUE,
        SubscriptionState.CANCELLING,
    }
)


def verify_subscription_token(
    token: Envelope,
    /,
    *,
    exchange_ids: Collection[str],
    provider_id: str,
    clock: Clock,
    capability: str | None = None,
) -> SubscriptionToken:
    """The token's content, once it is shown to be the exchange's, for this provider,
    unexpired and for a subscription that gives access (SignatureRejected if not)."""
    opened = open_envelope_struct(token)
    document = opened.document
    if not isinstance(document, SubscriptionToken):
        raise SignatureRejected(ErrorCode.WRONG_KIND, "not a subscription token")
    verified = verify_evidence(
        opened,
        expected_type=SubscriptionToken,
        audience=provider_id,
        expected_subject=subjects.subscription(document.subscription_id),
        clock=clock,
        lifetime_max_s=limits.SUBSCRIPTION_TOKEN_LIFETIME_S,
    )
    content = verified.document
    assert isinstance(content, SubscriptionToken)
    if content.header.issuer not in exchange_ids:
        raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "not signed by the exchange")
    if content.state not in _LIVE_STATES:
        raise SignatureRejected(ErrorCode.INVALID_STATE, f"the subscription is {content.state}")
    if capability is not None and content.capability != capability:
        raise SignatureRejected(ErrorCode.FORBIDDEN, f"the token is for {content.capability!r}")
    return content


class SubscriptionDesk:
    """An agent's requests about plans and subscriptions, and the notices it saw."""

    def __init__(self, request: Requester, /) -> None:
        self._request = request
        self._views: OrderedDict[str, SubscriptionView] = OrderedDict()
        self._changed = asyncio.Condition()
        self._events: OrderedDict[tuple[str, str], None] = OrderedDict()

    # --- plans ------------------------------------------------------------------------

    async def publish_plan(
        self,
        capability: str,
        plan: str,
        /,
        *,
        price_millicredits: int,
        period_s: int,
        trial_s: int = 0,
        description: str = "",
        active: bool = True,
    ) -> PlanView:
        reply = await self._request(
            PublishPlan,
            lambda header: PublishPlan(
                header=header,
                plan=plan,
                capability=capability,
                price_millicredits=price_millicredits,
                period_s=period_s,
                trial_s=trial_s,
                description=description,
                active=active,
            ),
        )
        return expect_reply(reply, PlanReply).plan

    async def plans(
        self, *, provider_id: str | None = None, capability: str | None = None
    ) -> list[PlanView]:
        reply = await self._request(
            ListPlans,
            lambda header: ListPlans(
                header=header,
                provider_id=provider_id,
                capability=capability,
                limit=limits.PLANS_PER_PAGE_MAX,
            ),
        )
        return expect_reply(reply, PlansReply).plans

    # --- subscriptions ------------------------------------------------------------------

    async def subscribe(
        self, plan: PlanView, /, *, request_id: str | None = None
    ) -> SubscriptionView:
        # One key for every try of this subscription: a retry answers the same one.
        key = request_id or secrets.token_urlsafe(16)
        reply = await self._request(
            Subscribe,
            lambda header: Subscribe(
                header=header,
                plan_id=plan.plan_id,
                price_millicredits=plan.price_millicredits,
                period_s=plan.period_s,
                request_id=key,
            ),
        )
        return self._seen(expect_reply(reply, SubscriptionReply).subscription)

    async def cancel(self, subscription_id: str, /) -> SubscriptionView:
        reply = await self._request(
            CancelSubscription,
            lambda header: CancelSubscription(header=header, subscription_id=subscription_id),
        )
        return self._seen(expect_reply(reply, SubscriptionReply).subscription)

    async def get(self, subscription_id: str, /) -> SubscriptionView:
        reply = await self._request(
            GetSubscription,
            lambda header: GetSubscription(header=header, subscription_id=subscription_id),
        )
        return self._seen(expect_reply(reply, SubscriptionReply).subscription)

    async def page(
        self, *, role: str = "buyer", after_id: str | None = None, limit: int = 50
    ) -> SubscriptionsReply:
        assert role in ("buyer", "provider")
        reply = await self._request(
            ListSubscriptions,
            lambda header: ListSubscriptions(
                header=header,
                role="buyer" if role == "buyer" else "provider",
                after_id=after_id,
                limit=limit,
            ),
        )
        return expect_reply(reply, SubscriptionsReply)

    async def token(self, subscription_id: str, /) -> Envelope:
        reply = await self._request(
            GetSubscriptionToken,
            lambda header: GetSubscriptionToken(header=header, subscription_id=subscription_id),
        )
        return expect_reply(reply, SubscriptionTokenReply).token

    # --- notices ------------------------------------------------------------------------

    async def observe(self, notice: SubscriptionNotice, /) -> None:
        """A verified notice: remember the view and the event, wake the waiters."""
        view = notice.subscription
        self._seen(view)
        self._events[(view.subscription_id, notice.event)] = None
        while len(self._events) > _VIEWS_REMEMBERED_MAX:
            self._events.popitem(last=False)
        async with self._changed:
            self._changed.notify_all()

    async def wait_event(
        self, subscription_id: str, event: SubscriptionEvent, /, *, timeout_s: float
    ) -> SubscriptionView:
        """Wait until a notice of ``event`` for the subscription has come (or came)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: (subscription_id, event) in self._events)
        return self._views[subscription_id]

    def latest(self, subscription_id: str, /) -> SubscriptionView | None:
        return self._views.get(subscription_id)

    def _seen(self, view: SubscriptionView) -> SubscriptionView:
        known = self._views.get(view.subscription_id)
        if known is None or known.updated_at_ms <= view.updated_at_ms:
            self._views[view.subscription_id] = view
            self._views.move_to_end(view.subscription_id)
        while len(self._views) > _VIEWS_REMEMBERED_MAX:
            self._views.popitem(last=False)
        return view
