"""What the bridge tests share: one served capability, a funded buyer, a human's approval.

Each bridge (the MCP buyer, the A2A gateway) sells ``text.upper`` from a
provider ``Agent`` whose listing carries ``INPUT_SCHEMA``; the approval tests
link the buyer to a portal user whose controls ask for approval above a
threshold, then approve as that user.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agent_client import Agent
from human_portal.accounts import User
from human_portal.controls import approvals_for_user, decide_approval, set_controls
from tests.portal.conftest import Harness

CAPABILITY = "text.upper"
PRICE_MILLICREDITS = 2_000
BUYER_GRANT_MILLICREDITS = 100_000
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 100}},
    "required": ["text"],
    "additionalProperties": False,
    "examples": [{"text": "hello"}],
}
PROCESS_TIMEOUT_S = 30.0


class AgentSource(Protocol):
    """The exchange fixture or the portal harness: each connects new agents."""

    async def agent(self) -> Agent: ...


async def upper(task: Any) -> Any:
    return {"upper": task["text"].upper()}


class HeldUpper:
    """``upper`` that says when a task started and finishes only once released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, task: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return await upper(task)


async def serving_provider(source: AgentSource, handler: Any = upper) -> Agent:
    """A provider selling ``CAPABILITY`` at ``PRICE_MILLICREDITS``, tasks checked by the schema."""
    provider = await source.agent()
    await provider.advertise(
        CAPABILITY,
        description="Upper-cases a text.",
        price_millicredits=PRICE_MILLICREDITS,
        input_schema=INPUT_SCHEMA,
        tags=["text"],
    )
    await provider.serve(CAPABILITY, handler, pricing=PRICE_MILLICREDITS)
    return provider


async def buyer_needing_approval(
    harness: Harness, *, approval_threshold_millicredits: int
) -> tuple[User, Agent]:
    """A served provider, and a funded buyer whose human approves hires above the threshold."""
    await serving_provider(harness)
    user = await harness.user()
    buyer = await harness.linked_agent(user)
    await harness.mint(buyer.agent_id, BUYER_GRANT_MILLICREDITS)
    await set_controls(
        harness.context,
        user,
        buyer.agent_id,
        daily_limit_millicredits=None,
        contract_limit_millicredits=None,
        approval_threshold_millicredits=approval_threshold_millicredits,
        frozen=False,
    )
    return user, buyer


async def approve_the_waiting_hire(harness: Harness, user: User) -> None:
    """The human approves, in the portal, the one hire waiting for them."""
    [approval] = await harness.context.read(
        lambda connection: approvals_for_user(connection, user.user_id, limit=10)
    )
    await decide_approval(harness.context, user, approval.contract_id, approve=True)
