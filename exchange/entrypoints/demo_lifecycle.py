"""Demo scenarios for when a deal does not go to plan: a refund and a split dispute.

Each scenario runs real agents against the running stack and returns True
only if its contract reached the outcome the scenario intends, with the
balances to match.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agent_client import (
    Agent,
    AgentClientError,
    AgentKeys,
    AgentOptions,
    ContractState,
    OperatorClient,
    QuoteRequest,
)
from agent_client.credit_text import format_millicredits

__all__ = ["Say", "credits_text", "dispute_scenario", "refund_scenario"]

Say = Callable[[str], None]

PRICE_MILLICREDITS = 3_000
GRANT_MILLICREDITS = 20_000
SETTLE_TIMEOUT_S = 15.0
DELIVERY_WITHIN_S = 2
DISPUTE_PROVIDER_SHARE_BPS = 4_000


def credits_text(amount_millicredits: int, /) -> str:
    """An amount as the portal shows it, with its unit: 3,000 millicredits are '3 cr'."""
    return f"{format_millicredits(amount_millicredits)} cr"


async def _shop_and_buyer(
    stack_url: str, operator: OperatorClient, capability: str, handler: Callable[[Any], Any]
) -> tuple[Agent, Agent]:
    # The demo's providers do not linger on close: a stalled task is abandoned.
    options = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    await provider.advertise(
        capability, description=capability, price_millicredits=PRICE_MILLICREDITS
    )
    await provider.serve(capability, handler, pricing=PRICE_MILLICREDITS)
    buyer = await Agent.connect(stack_url, AgentKeys.generate())
    await operator.mint(buyer.agent_id, GRANT_MILLICREDITS, reason="demo grant")
    return provider, buyer


async def refund_scenario(stack_url: str, operator: OperatorClient, say: Say) -> bool:
    """The provider never delivers; after the deadline the exchange refunds the buyer."""

    async def stalls(task: Any) -> Any:
        await asyncio.Event().wait()  # a provider that hangs and never answers

    tag = "refund scenario:"
    provider, buyer = await _shop_and_buyer(stack_url, operator, "demo.stalls", stalls)
    try:
        quotes = await buyer.request_quotes(
            QuoteRequest(
                "demo.stalls",
                "a job",
                budget_millicredits=PRICE_MILLICREDITS,
                delivery_within_s=DELIVERY_WITHIN_S,
                quotes_max=1,
            )
        )
        contract = await buyer.hire(quotes[0], {"job": 1})
        price = credits_text(PRICE_MILLICREDITS)
        say(f"{tag} hired a provider for {price}, due in {DELIVERY_WITHIN_S} s; escrow locked")
        settled = await contract.wait_settled(timeout_s=SETTLE_TIMEOUT_S)
        balance = await buyer.balance()
        say(
            f"{tag} the provider missed the delivery deadline; the exchange refunded "
            f"{credits_text(settled.refunded_millicredits)} to the buyer "
            f"(available {credits_text(balance.available_millicredits)})"
        )
        return (
            settled.state is ContractState.REFUNDED
            and settled.refunded_millicredits == PRICE_MILLICREDITS
            and balance.available_millicredits == GRANT_MILLICREDITS
        )
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False
    finally:
        await provider.close()
        await buyer.close()


async def dispute_scenario(stack_url: str, operator: OperatorClient, say: Say) -> bool:
    """The buyer rejects a poor delivery; the operator resolves the dispute by a split."""

    async def sloppy(task: Any) -> Any:
        return {"summary": "lorem ipsum"}

    tag = "dispute scenario:"
    provider, buyer = await _shop_and_buyer(stack_url, operator, "demo.summary", sloppy)
    try:
        quotes = await buyer.request_quotes(
            QuoteRequest(
                "demo.summary", "summarise", budget_millicredits=PRICE_MILLICREDITS, quotes_max=1
            )
        )
        contract = await buyer.hire(quotes[0], {"text": "a long report"})
        delivery = await contract.wait_delivery(timeout_s=SETTLE_TIMEOUT_S)
        say(f"{tag} delivered {delivery.result}; the buyer rejects it")
        await contract.reject_delivery(reason="not a summary of my text")
        # Operators may read any contract's evidence, as its parties may.
        evidence = await operator.agent.evidence(contract.contract_id)
        say(
            f"{tag} dispute opened on contract {contract.contract_id}; the operator reads the "
            f"evidence ({len(evidence.events)} events, signed quote, acceptance and record)"
        )
        view = await operator.resolve(
            contract.contract_id,
            provider_share_bps=DISPUTE_PROVIDER_SHARE_BPS,
            note="partial work: split 40/60",
        )
        net = view.net_millicredits or 0
        refunded, fee = (
            credits_text(view.refunded_millicredits),
            credits_text(view.fee_millicredits),
        )
        say(
            f"{tag} resolved by split: provider gets {credits_text(net)}, "
            f"buyer refunded {refunded}, platform fee {fee}"
        )
        expected_share = PRICE_MILLICREDITS * DISPUTE_PROVIDER_SHARE_BPS // 10_000
        provider_balance = await provider.balance()
        return (
            view.state is ContractState.RESOLVED
            and view.refunded_millicredits == PRICE_MILLICREDITS - expected_share
            and provider_balance.available_millicredits == net
            and net + view.fee_millicredits == expected_share
        )
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False
    finally:
        await provider.close()
        await buyer.close()
