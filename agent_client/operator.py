"""What only an operator may ask of the exchange: mint credits, end disputes,
hide or show any provider's listing.

An operator is an agent whose id the exchange was started with
(``--operator ID``, or the embedded stack's ``operator.seed``). Its requests
travel as any agent's do, signed with its key through the agent's one
request path, so :class:`OperatorClient` wraps a connected
:class:`~agent_client.agent.Agent`::

    async with await Agent.connect(url, AgentKeys.load("operator.seed")) as agent:
        operator = OperatorClient(agent)
        await operator.mint(buyer_id, 10_000, reason="welcome grant")

The exchange checks the signer on every request; anyone else gets
``forbidden`` (a :class:`~agent_client.errors.RefusedError`). Reading a
contract's evidence is open to operators and parties alike:
:meth:`Agent.evidence <agent_client.agent.Agent.evidence>`.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_client.agent import Agent
from agent_client.protocol import (
    ContractReply,
    ContractView,
    FeesReply,
    Listing,
    Mint,
    MintReply,
    Resolve,
    SetFees,
)
from agent_client.replies import expect_reply
from agent_client.signing import new_nonce

__all__ = ["OperatorClient"]


class OperatorClient:
    """The operator's requests, sent through ``agent`` (which holds the operator's key)."""

    def __init__(self, agent: Agent, /) -> None:
        self.agent = agent

    async def mint(
        self,
        recipient_id: str,
        amount_millicredits: int,
        /,
        *,
        reason: str,
        mint_id: str | None = None,
    ) -> MintReply:
        """Grant credits to an agent, with an audit record.

        Pass the same ``mint_id`` when retrying after a timeout: the exchange
        then returns the first outcome instead of minting again.
        """
        key = mint_id or new_nonce()
        reply = await self.agent._request(
            Mint,
            lambda header: Mint(
                header=header,
                mint_id=key,
                recipient_id=recipient_id,
                amount_millicredits=amount_millicredits,
                reason=reason,
            ),
        )
        return expect_reply(reply, MintReply)

    async def resolve(
        self, contract_id: str, /, *, provider_share_bps: int, note: str = ""
    ) -> ContractView:
        """End a dispute: 10,000 bps all to the provider, 0 a full refund, else a split."""
        reply = await self.agent._request(
            Resolve,
            lambda header: Resolve(
                header=header,
                contract_id=contract_id,
                provider_share_bps=provider_share_bps,
                note=note,
            ),
        )
        return expect_reply(reply, ContractReply).contract

    async def set_fees(
        self,
        /,
        *,
        rates: Mapping[str, int] | None = None,
        categories: Mapping[str, int | None] | None = None,
        reason: str = "",
    ) -> FeesReply:
        """Change fee rates in basis points: ``rates`` by kind (``escrow``, ``metered``,
        ``transfer``, ``purchase``, ``cash_out``, ...), ``categories`` by capability
        prefix (None removes a category's commission). Other rates stay."""
        reply = await self.agent._request(
            SetFees,
            lambda header: SetFees(
                header=header,
                rates=dict(rates or {}),
                categories=dict(categories or {}),
                reason=reason,
            ),
        )
        return expect_reply(reply, FeesReply)

    async def deactivate_listing(self, provider_id: str, capability: str, /) -> Listing:
        """Hide another provider's listing from search and refuse new contracts for it."""
        return await self.agent._set_listing_status(capability, "inactive", provider_id)

    async def reactivate_listing(self, provider_id: str, capability: str, /) -> Listing:
        return await self.agent._set_listing_status(capability, "active", provider_id)
