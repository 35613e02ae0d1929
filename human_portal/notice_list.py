"""What needs the human, in plain words: the notice list and the navigation's counts.

The list is derived, never stored twice: each kind of notice is read from
the table that already holds its state, newest first, each query bounded:

* approvals waiting (``portal_approvals``, pending and not expired), dated
  when asked for;
* refused purchases (``portal_spending_refusals``, written by the
  exchange through the spending controls' port), dated when refused;
* low balance: an agent whose available balance is below
  ``LOW_BALANCE_MILLICREDITS`` (1 credit), whatever its daily limit; the
  rule is one number so that a human learns it once. Dated by the agent's
  latest ledger transfer (the balance has been this low since then), or by
  its linking when it has none;
* cash-outs paid or failed (``portal_payouts``), dated when resolved;
* top-ups paid (dated when paid), canceled and refunded
  (``portal_topups``). The top-up row keeps no time of a cancellation or a
  refund, so those are dated by the payment (or the start) of the top-up.

A notice is unread when it is newer than the user's ``notices_seen_at_ms``,
which opening /notices moves to now.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.credit_text import credits_in_words
from exchange.domain.spending_rules import ApprovalStatus, RefusalCause
from human_portal import limits
from human_portal.ledger_accounts import agent_account_id
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import format_cents
from human_portal.payouts import PayoutStatus
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import (
    agent_links,
    approvals,
    payouts,
    spending_refusals,
    topups,
    users,
)
from human_portal.topups import TopUpStatus

__all__ = [
    "NavCounts",
    "Notice",
    "NoticeKind",
    "mark_notices_seen",
    "nav_counts",
    "notices_for_user",
    "notices_seen_at_ms",
]

_MILLISECONDS_PER_DAY = 24 * 3600 * 1000


class NoticeKind(enum.StrEnum):
    APPROVAL = "approval"
    REFUSAL = "refusal"
    LOW_BALANCE = "low_balance"
    PAYOUT_PAID = "payout_paid"
    PAYOUT_FAILED = "payout_failed"
    TOP_UP_PAID = "top_up_paid"
    TOP_UP_CANCELED = "top_up_canceled"
    TOP_UP_REFUNDED = "top_up_refunded"


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    at_ms: int
    agent_id: str
    text: str
    # Where to act on it, and the link's words.
    href: str
    action: str


@dataclass(frozen=True, slots=True)
class NavCounts:
    """Unread notices and approvals waiting, each counted up to just past the cap."""

    unread_notices: int
    pending_approvals: int

    @staticmethod
    def text(count: int, /) -> str:
        return f"{limits.NAV_COUNT_MAX}+" if count > limits.NAV_COUNT_MAX else str(count)


class _Agents:
    """The user's agents by id, and how a notice names an agent."""

    def __init__(self, links: Sequence[LinkedAgent]) -> None:
        self.links = list(links)
        self.labels = {link.agent_id: link.label for link in links}

    def name(self, agent_id: str) -> str:
        label = self.labels.get(agent_id)
        return f"'{label}'" if label is not None else _short(agent_id)

    def purchase(self, row: sa.RowMapping, /, *, did: str) -> str:
        """``Your agent 'bot' <did> text.upper from 'shop' for 2 credits``: an approval's or
        a refusal's row (agent, capability, provider, price)."""
        return (
            f"Your agent {self.name(row['agent_id'])} {did} {row['capability']} "
            f"from {self.name(row['provider_id'])} for "
            f"{credits_in_words(row['price_millicredits'])}"
        )


async def notices_for_user(
    context: PortalContext,
    connection: AsyncConnection,
    user_id: str,
    /,
    *,
    now_ms: int,
    since_ms: int = -1,
    limit: int = limits.NOTICES_MAX,
) -> list[Notice]:
    """The user's notices newer than ``since_ms``, newest first, at most ``limit``."""
    assert 0 < limit <= limits.NOTICES_MAX
    agents = _Agents(await linked_agents(connection, user_id))
    found = [
        *await _approvals(connection, agents, user_id, now_ms, since_ms, limit),
        *await _refusals(connection, agents, now_ms, since_ms, limit),
        *await _low_balances(context, connection, agents, since_ms),
        *await _payouts(connection, agents, user_id, since_ms, limit),
        *await _top_ups(connection, agents, user_id, since_ms, limit),
    ]
    found.sort(key=lambda notice: (notice.at_ms, notice.kind.value), reverse=True)
    return found[:limit]


async def nav_counts(
    context: PortalContext, connection: AsyncConnection, user_id: str, /, *, now_ms: int
) -> NavCounts:
    """The navigation's two counts, each read with a bound."""
    seen_ms = await notices_seen_at_ms(connection, user_id)
    unread = await notices_for_user(
        context, connection, user_id, now_ms=now_ms, since_ms=seen_ms,
        limit=limits.NAV_COUNT_MAX + 1,
    )  # fmt: skip
    waiting = await connection.execute(
        _pending_approvals(user_id, now_ms)
        .with_only_columns(approvals.c.contract_id)
        .limit(limits.NAV_COUNT_MAX + 1)
    )
    return NavCounts(len(unread), len(waiting.all()))


async def notices_seen_at_ms(connection: AsyncConnection, user_id: str, /) -> int:
    found = await connection.execute(
        sa.select(users.c.notices_seen_at_ms).where(users.c.user_id == user_id)
    )
    return int(found.scalar() or 0)


async def mark_notices_seen(context: PortalContext, user_id: str, /, *, until_ms: int) -> int:
    """Every notice until ``until_ms`` (when the page read them) is read; returns the
    time they were seen until before."""

    async def work(connection: AsyncConnection) -> int:
        before_ms = await notices_seen_at_ms(connection, user_id)
        await connection.execute(
            users.update()
            .where(users.c.user_id == user_id, users.c.notices_seen_at_ms < until_ms)
            .values(notices_seen_at_ms=until_ms)
        )
        return before_ms

    return await context.write(work)


# --- the kinds of notice ---------------------------------------------------------------


def _pending_approvals(user_id: str, now_ms: int) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(approvals)
        .join(agent_links, agent_links.c.agent_id == approvals.c.agent_id)
        .where(
            agent_links.c.user_id == user_id,
            approvals.c.status == ApprovalStatus.PENDING.value,
            approvals.c.expires_at_ms > now_ms,
        )
    )


async def _approvals(
    connection: AsyncConnection,
    agents: _Agents,
    user_id: str,
    now_ms: int,
    since_ms: int,
    limit: int,
) -> list[Notice]:
    found = await connection.execute(
        _pending_approvals(user_id, now_ms)
        .where(approvals.c.created_at_ms > since_ms)
        .order_by(approvals.c.created_at_ms.desc())
        .limit(limit)
    )
    return [
        Notice(
            NoticeKind.APPROVAL,
            int(row["created_at_ms"]),
            str(row["agent_id"]),
            f"{agents.purchase(row, did='asks to buy')}; it waits for your approval.",
            "/approvals",
            "Approve or reject",
        )
        for row in found.mappings()
    ]


async def _refusals(
    connection: AsyncConnection, agents: _Agents, now_ms: int, since_ms: int, limit: int
) -> list[Notice]:
    if not agents.labels:
        return []
    kept_since_ms = now_ms - limits.REFUSALS_KEPT_DAYS * _MILLISECONDS_PER_DAY
    found = await connection.execute(
        sa.select(spending_refusals)
        .where(
            spending_refusals.c.agent_id.in_(sorted(agents.labels)),
            spending_refusals.c.at_ms > max(since_ms, kept_since_ms - 1),
        )
        .order_by(spending_refusals.c.at_ms.desc(), spending_refusals.c.refusal_id.desc())
        .limit(limit)
    )
    return [
        Notice(
            NoticeKind.REFUSAL,
            int(row["at_ms"]),
            str(row["agent_id"]),
            f"{agents.purchase(row, did='tried to buy')}; refused because "
            f"{_refusal_words(str(row['cause']), str(row['reason']))}.",
            f"/agents#agent-{row['agent_id']}",
            "Open its budget",
        )
        for row in found.mappings()
    ]


_REFUSAL_WORDS: Final = {
    RefusalCause.FROZEN_BY_OWNER: "you froze it",
    RefusalCause.FROZEN_BY_OPERATOR: "it is frozen by an operator",
    RefusalCause.CONTRACT_LIMIT: "the price is over its per-contract limit",
    RefusalCause.DAILY_LIMIT: "it would go over its daily limit",
    RefusalCause.DAILY_LIMIT_UNCHECKABLE: "it paid too often today to check its daily limit",
    RefusalCause.APPROVAL_REJECTED: "you rejected it",
}


def _refusal_words(cause: str, reason: str) -> str:
    """The exchange's refusal, said for the agent's owner (its message is for agents)."""
    try:
        return _REFUSAL_WORDS[RefusalCause(cause)]
    except (ValueError, KeyError):
        return reason


async def _low_balances(
    context: PortalContext, connection: AsyncConnection, agents: _Agents, since_ms: int
) -> list[Notice]:
    account_ids = {link.agent_id: agent_account_id(link.agent_id) for link in agents.links}
    balances = await context.ledger.lookup_accounts(
        list(account_ids.values()), connection=connection
    )
    notices = []
    for link in agents.links:
        wallet = balances.get(account_ids[link.agent_id])
        available = wallet.available if wallet is not None else 0
        if available >= limits.LOW_BALANCE_MILLICREDITS:
            continue
        latest = await context.ledger.account_transfers(
            account_ids[link.agent_id], limit=1, connection=connection
        )
        at_ms = max(link.linked_at_ms, latest[0].timestamp_us // 1000 if latest else 0)
        if at_ms <= since_ms:
            continue
        notices.append(
            Notice(
                NoticeKind.LOW_BALANCE,
                at_ms,
                link.agent_id,
                f"Your agent {agents.name(link.agent_id)} has "
                f"{credits_in_words(available)} available, less than "
                f"{credits_in_words(limits.LOW_BALANCE_MILLICREDITS)}: it cannot buy "
                "much until you top it up.",
                "/top-up",
                "Top it up",
            )
        )
    return notices


async def _payouts(
    connection: AsyncConnection, agents: _Agents, user_id: str, since_ms: int, limit: int
) -> list[Notice]:
    found = await connection.execute(
        sa.select(payouts)
        .where(
            payouts.c.user_id == user_id,
            payouts.c.status.in_([PayoutStatus.PAID.value, PayoutStatus.FAILED.value]),
            payouts.c.resolved_at_ms > since_ms,
        )
        .order_by(payouts.c.resolved_at_ms.desc())
        .limit(limit)
    )
    notices = []
    for row in found.mappings():
        what = f"Your cash-out of {row['credits']:,} credits from {agents.name(row['agent_id'])}"
        if row["status"] == PayoutStatus.PAID.value:
            kind = NoticeKind.PAYOUT_PAID
            text = f"{what} was paid: {format_cents(row['net_cents'])} to your bank account."
        else:
            kind = NoticeKind.PAYOUT_FAILED
            reason = row["failure_reason"] or "the payment provider refused it"
            text = f"{what} failed ({reason}); the credits went back to the agent."
        notices.append(
            Notice(
                kind,
                int(row["resolved_at_ms"]),
                str(row["agent_id"]),
                text,
                "/payouts",
                "See payouts",
            )
        )
    return notices


async def _top_ups(
    connection: AsyncConnection, agents: _Agents, user_id: str, since_ms: int, limit: int
) -> list[Notice]:
    dated = sa.func.coalesce(topups.c.paid_at_ms, topups.c.created_at_ms)
    found = await connection.execute(
        sa.select(topups, dated.label("at_ms"))
        .where(
            topups.c.user_id == user_id,
            topups.c.status.in_([TopUpStatus.PAID.value, TopUpStatus.CANCELED.value]),
            dated > since_ms,
        )
        .order_by(dated.desc())
        .limit(limit)
    )
    notices = []
    for row in found.mappings():
        at_ms, agent_id = int(row["at_ms"]), str(row["agent_id"])
        what = f"Your top-up of {format_cents(row['total_cents'])} for {agents.name(agent_id)}"
        history = f"/transactions?agent_id={agent_id}"
        if row["status"] == TopUpStatus.CANCELED.value:
            text = f"{what} was canceled; nothing was charged."
            notices.append(
                Notice(NoticeKind.TOP_UP_CANCELED, at_ms, agent_id, text, "/top-up", "Try again")
            )
            continue
        text = f"{what} was paid: {credits_in_words(row['credits_millicredits'])} added."
        notices.append(
            Notice(NoticeKind.TOP_UP_PAID, at_ms, agent_id, text, history, "See history")
        )
        if row["refunded_cents"]:
            text = (
                f"{format_cents(row['refunded_cents'])} of your top-up of "
                f"{format_cents(row['total_cents'])} for {agents.name(agent_id)} was refunded; "
                f"{credits_in_words(row['clawed_back_millicredits'])} taken back."
            )
            notices.append(
                Notice(NoticeKind.TOP_UP_REFUNDED, at_ms, agent_id, text, history, "See history")
            )
    return notices


def _short(agent_id: str, /) -> str:
    return f"{agent_id[:6]}…{agent_id[-4:]}" if len(agent_id) > 12 else agent_id
