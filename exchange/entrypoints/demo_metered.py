"""Demo scenario: a model sold per thousand tokens, through a metered session.

A provider sells ``demo.tokens`` at a price per 1,000 tokens; a buyer opens
a session with a ceiling, makes calls that each consume some tokens, and
signs a receipt after each; the provider claims mid-session and closes with
a final claim. True only if the captures, the fee and the released rest add
up to the ceiling and match the balances.
"""

from __future__ import annotations

from typing import Any

from agent_client import Agent, AgentClientError, AgentKeys, AgentOptions, OperatorClient
from agent_client.protocol import MeteredState
from exchange.entrypoints.demo_lifecycle import Say, credits_text

__all__ = ["metered_scenario"]

PRICE_PER_THOUSAND_MILLICREDITS = 2_000
CEILING_MILLICREDITS = 5_000
GRANT_MILLICREDITS = 20_000
CALLS = 6


def _tokens(text: Any) -> int:
    # A stand-in for a model's token count: four characters a token, at least one.
    return max(1, len(str(text)) // 4) * 50


async def _complete(prompt: Any) -> Any:
    return {"completion": str(prompt)[::-1]}


async def metered_scenario(stack_url: str, operator: OperatorClient, say: Say) -> bool:
    tag = "metered scenario:"
    options = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    buyer = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    try:
        await provider.serve_metered(
            "demo.tokens",
            _complete,
            unit_price_millicredits=PRICE_PER_THOUSAND_MILLICREDITS,
            units_per_price=1000,
            units_of=lambda prompt, _output: _tokens(prompt),
        )
        await operator.mint(buyer.agent_id, GRANT_MILLICREDITS, reason="demo grant")
        offer = await buyer.metered_offer(provider.agent_id, "demo.tokens")
        session = await buyer.open_metered(offer, ceiling_millicredits=CEILING_MILLICREDITS)
        say(f"{tag} session open, ceiling {credits_text(CEILING_MILLICREDITS)} held")
        for number in range(CALLS):
            await session.call(f"prompt number {number} for the model")
        mid = await provider.claim_usage(session.contract_id)
        captured = credits_text(mid.captured_millicredits)
        say(f"{tag} {mid.claimed_units} tokens claimed: {captured} captured")
        await session.call("one more prompt")
        closed = await provider.close_metered(session.contract_id)
        return await _report(buyer, provider, closed, tag, say)
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False
    finally:
        await provider.close()
        await buyer.close()


async def _report(buyer: Agent, provider: Agent, closed: Any, tag: str, say: Say) -> bool:
    say(
        f"{tag} closed after {closed.claimed_units} tokens: captured "
        f"{credits_text(closed.captured_millicredits)} "
        f"(fee {credits_text(closed.fee_millicredits)}), released "
        f"{credits_text(closed.released_millicredits)} to the buyer"
    )
    spent = GRANT_MILLICREDITS - (await buyer.balance()).available_millicredits
    earned = (await provider.balance()).available_millicredits
    owed = closed.claimed_units * PRICE_PER_THOUSAND_MILLICREDITS // 1000
    return (
        closed.state is MeteredState.CLOSED
        and closed.captured_millicredits == min(owed, CEILING_MILLICREDITS)
        and closed.captured_millicredits + closed.released_millicredits == CEILING_MILLICREDITS
        and spent == closed.captured_millicredits
        and earned == closed.net_millicredits
    )
