"""The dashboard's headline: what the user's agents hold, and what they may still spend today.

Balances are the ledger's. "Spent today" is the exchange's own figure
(:func:`exchange.use_cases.spending.spent_since_us` from midnight UTC,
:func:`exchange.domain.spending_rules.start_of_day_ms`): the one its daily
limit is enforced against, so the bar on the dashboard and a refusal never
disagree. The controls are the rows the exchange locks (``budgets``).

The recent contracts are told in words: which of the user's agents, whether
it bought or sold, from or to whom (another of the user's agents by its
label, anyone else by a short id), and where the contract stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.credit_text import credits_in_words
from agent_client.protocol import ContractState
from exchange.domain.spending_rules import Controls, start_of_day_ms
from exchange.use_cases.contract_reports import contracts_of_agents
from exchange.use_cases.spending import spent_since_us
from human_portal import limits
from human_portal.budgets import controls_by_agent
from human_portal.ledger_accounts import agent_account_id
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import format_millicredits
from human_portal.portal_context import PortalContext
from wallet import MILLICREDITS_PER_USD_CENT

__all__ = [
    "AgentHeadline",
    "ContractInWords",
    "Headline",
    "contracts_in_words",
    "load_headline",
]

_STATE_WORDS = {
    ContractState.OPEN: "waiting for delivery",
    ContractState.DELIVERED: "delivered, in review",
    ContractState.DISPUTED: "in dispute",
    ContractState.RELEASED: "paid",
    ContractState.REFUNDED: "refunded to the buyer",
    ContractState.RESOLVED: "dispute settled",
}


@dataclass(frozen=True, slots=True)
class AgentHeadline:
    """One agent's money and controls. ``spent_today_millicredits`` is None when the
    day holds more transfers than the exchange reads (it then refuses new spending)."""

    agent_id: str
    label: str
    available_millicredits: int
    held_millicredits: int
    spent_today_millicredits: int | None
    controls: Controls | None

    @property
    def daily_limit_millicredits(self) -> int | None:
        return self.controls.daily_limit_millicredits if self.controls is not None else None

    @property
    def frozen(self) -> bool:
        return self.controls is not None and self.controls.frozen

    @property
    def budget_href(self) -> str:
        return f"/agents#agent-{self.agent_id}"

    @property
    def spent_today_text(self) -> str:
        if self.spent_today_millicredits is None:
            return "more transfers today than can be counted; new spending is refused"
        spent = format_millicredits(self.spent_today_millicredits)
        limit = self.daily_limit_millicredits
        if limit is None:
            return f"{spent} credits today, no daily limit"
        return f"{spent} of {format_millicredits(limit)} credits today"

    @property
    def contract_limit_text(self) -> str:
        limit = self.controls.contract_limit_millicredits if self.controls is not None else None
        if limit is None:
            return "No limit per contract"
        return f"At most {credits_in_words(limit)} per contract"

    @property
    def approval_text(self) -> str:
        threshold = (
            self.controls.approval_threshold_millicredits if self.controls is not None else None
        )
        if threshold is None:
            return "Never asks for your approval"
        return f"Asks your approval above {credits_in_words(threshold)}"

    @property
    def frozen_text(self) -> str:
        if self.controls is None or not self.controls.frozen:
            return ""
        if self.controls.frozen_by_owner:
            return "Frozen by you: it cannot spend"
        reason = self.controls.operator_freeze_reason
        return "Frozen by an operator" + (f" ({reason})" if reason else "") + ": it cannot spend"


@dataclass(frozen=True, slots=True)
class Headline:
    agents: list[AgentHeadline]

    @property
    def available_millicredits(self) -> int:
        return sum(agent.available_millicredits for agent in self.agents)

    @property
    def held_millicredits(self) -> int:
        return sum(agent.held_millicredits for agent in self.agents)

    @property
    def available_cents(self) -> int:
        """The dollar value of the available credits, in whole cents (rounded down)."""
        return self.available_millicredits // MILLICREDITS_PER_USD_CENT


@dataclass(frozen=True, slots=True)
class ContractInWords:
    contract_id: str
    updated_at_ms: int
    agent_label: str
    capability: str
    bought: bool
    state: ContractState
    counterparty_id: str
    # The counterparty's label when it is one of the user's own agents.
    counterparty_label: str | None
    price_millicredits: int

    @property
    def role_words(self) -> str:
        return "bought" if self.bought else "sold"

    @property
    def state_words(self) -> str:
        return _STATE_WORDS[self.state]


async def load_headline(
    context: PortalContext, connection: AsyncConnection, user_id: str, /, *, now_ms: int
) -> Headline:
    """The user's agents' balances, spending today and controls, in one read."""
    links = await linked_agents(connection, user_id)
    account_ids = [agent_account_id(link.agent_id) for link in links]
    balances = await context.ledger.lookup_accounts(account_ids, connection=connection)
    controls = await controls_by_agent(connection, [link.agent_id for link in links])
    since_us = start_of_day_ms(now_ms) * 1000
    agents = []
    for link, account_id in zip(links, account_ids, strict=True):
        wallet = balances.get(account_id)
        spent = await spent_since_us(connection, context.ledger, account_id, since_us)
        agents.append(
            AgentHeadline(
                agent_id=link.agent_id,
                label=link.label,
                available_millicredits=wallet.available if wallet is not None else 0,
                held_millicredits=wallet.held if wallet is not None else 0,
                spent_today_millicredits=spent if spent >= 0 else None,
                controls=controls.get(link.agent_id),
            )
        )
    return Headline(agents)


async def contracts_in_words(
    connection: AsyncConnection, links: Sequence[LinkedAgent], /
) -> list[ContractInWords]:
    """The user's agents' most recently changed contracts (a few: the rest are on
    /transactions), each from the side of the user's agent."""
    labels = {link.agent_id: link.label for link in links}
    rows = await contracts_of_agents(
        connection, sorted(labels), limit=limits.DASHBOARD_CONTRACTS_MAX
    )
    contracts = []
    for row in rows:
        bought = row.buyer_id in labels
        agent_id, counterparty_id = (
            (row.buyer_id, row.provider_id) if bought else (row.provider_id, row.buyer_id)
        )
        contracts.append(
            ContractInWords(
                contract_id=row.contract_id,
                updated_at_ms=row.updated_at_ms,
                agent_label=labels[agent_id],
                capability=row.capability,
                bought=bought,
                state=row.state,
                counterparty_id=counterparty_id,
                counterparty_label=labels.get(counterparty_id),
                price_millicredits=row.price_millicredits,
            )
        )
    return contracts
