"""Every subscription of a human's agents, in words, and the human's cancel.

The subscriptions come from the exchange's use case
(:func:`exchange.use_cases.subscriptions.subscriptions_of`), for each agent
linked to the human, as buyer and as provider; this module turns each into
what the page says (the period and state in words, amounts in credits and
dollars). A cancel only marks the subscription, through
:func:`exchange.use_cases.subscriptions.request_cancellation` in the
portal's transaction: the exchange's next sweep (every second) applies it
at the paid period's end and tells both agents, so every change of state,
charge and notice keeps happening in one place, the exchange.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client.credit_text import credits_in_words
from agent_client.protocol import SubscriptionState, SubscriptionView
from exchange.use_cases.subscriptions import request_cancellation, subscriptions_of
from human_portal.accounts import User
from human_portal.errors import NotFound
from human_portal.linking import LinkedAgent, linked_agent_ids, linked_agents
from human_portal.money_rules import format_cents
from human_portal.portal_context import PortalContext
from wallet import MILLICREDITS_PER_USD_CENT

__all__ = [
    "SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX",
    "SubscriptionLine",
    "SubscriptionsReport",
    "cancel_subscription",
    "credits_and_dollars",
    "period_in_words",
    "subscriptions_report",
]

# One page of the exchange's listing per agent and role: the page stays
# bounded (at most 50 linked agents, so 10,000 rows) and says when more exist.
SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX = 100
# Exchange ids are "sub_" and 32 hex digits; anything much longer is not one
# and is answered like any unknown id, before a transaction is opened.
SUBSCRIPTION_ID_LENGTH_MAX = 64

assert 1 <= SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX <= protocol_limits.SUBSCRIPTIONS_PER_PAGE_MAX

_CANCELLABLE_STATES = frozenset(
    {SubscriptionState.TRIALING, SubscriptionState.ACTIVE, SubscriptionState.PAST_DUE}
)
_LIVE_STATES = _CANCELLABLE_STATES | {SubscriptionState.CANCELLING}
_STATE_WORDS = {
    SubscriptionState.TRIALING: "free trial",
    SubscriptionState.ACTIVE: "active",
    SubscriptionState.PAST_DUE: "payment failed, retrying",
    SubscriptionState.CANCELLING: "cancels at period end",
    SubscriptionState.ENDED: "ended",
    SubscriptionState.LAPSED: "lapsed (renewal never paid)",
}
_PERIOD_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))

assert set(_STATE_WORDS) == set(SubscriptionState)


def period_in_words(period_s: int, /) -> str:
    """3,600 → "every hour"; 2,592,000 → "every 30 days"; in the largest exact unit."""
    assert period_s > 0
    for unit, unit_s in _PERIOD_UNITS:
        count, rest = divmod(period_s, unit_s)
        if rest == 0:
            return f"every {unit}" if count == 1 else f"every {count:,} {unit}s"
    raise AssertionError("a period in whole seconds always has a unit")


def credits_and_dollars(amount_millicredits: int, /) -> str:
    """1,000 → "1 credit ($0.10)"; an amount below a cent's precision says "≈"."""
    assert amount_millicredits >= 0
    # Rounded half up: every amount here is a price or a sum of prices, never negative.
    cents, rest = divmod(amount_millicredits, MILLICREDITS_PER_USD_CENT)
    rounded_cents = cents + (1 if 2 * rest >= MILLICREDITS_PER_USD_CENT else 0)
    dollars = format_cents(rounded_cents) if rest == 0 else f"≈{format_cents(rounded_cents)}"
    return f"{credits_in_words(amount_millicredits)} ({dollars})"


@dataclass(frozen=True, slots=True)
class SubscriptionLine:
    """One subscription of one of the human's agents, and what the page says of it."""

    agent_id: str
    agent_label: str
    subscription: SubscriptionView

    @property
    def state_text(self) -> str:
        return _STATE_WORDS[self.subscription.state]

    @property
    def period_text(self) -> str:
        return period_in_words(self.subscription.period_s)

    @property
    def price_text(self) -> str:
        return credits_and_dollars(self.subscription.price_millicredits)

    @property
    def charged_text(self) -> str:
        return credits_and_dollars(self.subscription.charged_millicredits)

    @property
    def is_live(self) -> bool:
        return self.subscription.state in _LIVE_STATES

    @property
    def cancellable(self) -> bool:
        """The exchange still takes a cancel: not over, and not cancelling already."""
        subscription = self.subscription
        return subscription.state in _CANCELLABLE_STATES and not subscription.cancel_at_period_end


@dataclass(frozen=True, slots=True)
class SubscriptionsReport:
    """What the human's agents buy and sell by subscription, with whose page was cut short."""

    bought: list[SubscriptionLine]
    sold: list[SubscriptionLine]
    # Labels (or ids) of agents with more subscriptions than a page shows, per role.
    bought_more_of: list[str]
    sold_more_of: list[str]
    labels: dict[str, str]

    def bought_line(self, subscription_id: str, /) -> SubscriptionLine | None:
        return next(
            (line for line in self.bought if line.subscription.subscription_id == subscription_id),
            None,
        )


async def subscriptions_report(context: PortalContext, user_id: str, /) -> SubscriptionsReport:
    """Every linked agent's subscriptions as buyer and as provider, a page of each."""

    async def load(connection: AsyncConnection) -> SubscriptionsReport:
        links = await linked_agents(connection, user_id)
        bought, bought_more_of = await _lines(connection, links, role="buyer")
        sold, sold_more_of = await _lines(connection, links, role="provider")
        labels = {link.agent_id: link.label for link in links if link.label}
        return SubscriptionsReport(bought, sold, bought_more_of, sold_more_of, labels)

    return await context.read(load)


async def _lines(
    connection: AsyncConnection, links: Iterable[LinkedAgent], *, role: str
) -> tuple[list[SubscriptionLine], list[str]]:
    lines: list[SubscriptionLine] = []
    more_of: list[str] = []
    for link in links:
        views, has_more = await subscriptions_of(
            connection, [link.agent_id], role=role, limit=SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX
        )
        if has_more:
            more_of.append(link.label or link.agent_id)
        found = [SubscriptionLine(link.agent_id, link.label, view) for view in views]
        # The exchange pages by id; a human reads the running ones first, newest first.
        found.sort(key=lambda line: (not line.is_live, -line.subscription.created_at_ms))
        lines.extend(found)
    return lines, more_of


async def cancel_subscription(
    context: PortalContext, user: User, subscription_id: str, /
) -> SubscriptionView:
    """Mark one of the human's agents' subscriptions for cancelling at its period's end.

    ``NotFound`` for any other id, a stranger's included, so ids cannot be
    probed. Cancelling what is already cancelling or over changes nothing.
    """
    if not 0 < len(subscription_id) <= SUBSCRIPTION_ID_LENGTH_MAX:
        raise NotFound("subscription")
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> SubscriptionView | None:
        buyer_ids = set(await linked_agent_ids(connection, user.user_id))
        return await request_cancellation(
            connection, subscription_id, buyer_ids=buyer_ids, now_ms=now_ms
        )

    marked = await context.write(work)
    if marked is None:
        raise NotFound("subscription")
    return marked
