"""The handle on one contract: every contract operation, bound to its id.

:meth:`Agent.hire <agent_client.agent.Agent.hire>` returns a :class:`Contract`;
each method delegates to the :class:`~agent_client.agent.Agent` method of
the same name with the contract's id, so the two stay one path::

    contract = await buyer.hire(quote, {"text": "hello"})
    delivery = await contract.wait_delivery(timeout_s=10)
    await contract.accept_delivery(delivery)
    await contract.wait_settled()
    await contract.rate(5)

The handle holds no state of its own beyond the exchange's signed record:
:meth:`Contract.view` asks the exchange how the contract stands now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_client.protocol import (
    ContractRecord,
    ContractUpdatedNotice,
    ContractView,
    EvidenceReply,
    RatingReply,
)

if TYPE_CHECKING:
    from agent_client.agent import Agent

__all__ = ["Contract", "Delivery"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A provider's result, checked against the hash the exchange recorded."""

    contract_id: str
    result: Any
    result_sha256: str


class Contract:
    """An agent's handle on a contract it is a party to.

    ``record`` is the exchange's signed statement that the contract opened
    with its price held (verified when the handle was made).
    """

    def __init__(self, agent: Agent, record: ContractRecord, /) -> None:
        self._agent = agent
        self.record = record
        self.contract_id = record.contract_id
        self.price_millicredits = record.price_millicredits

    def __repr__(self) -> str:
        return f"Contract({self.contract_id!r}, price_millicredits={self.price_millicredits})"

    async def view(self) -> ContractView:
        """The contract as the exchange holds it now (state, deadlines, outcome)."""
        return await self._agent.contract(self.contract_id)

    async def evidence(self) -> EvidenceReply:
        """The signed quote, acceptance and record, with every event since."""
        return await self._agent.evidence(self.contract_id)

    async def wait_delivery(self, *, timeout_s: float = 30.0) -> Delivery:
        """Wait for the provider's result (read back in chunks if it was stored)."""
        return await self._agent.wait_delivery(self.contract_id, timeout_s=timeout_s)

    async def accept_delivery(self, delivery: Delivery, /) -> ContractView:
        """Accept the delivery: the exchange releases the price to the provider."""
        if delivery.contract_id != self.contract_id:
            raise ValueError(f"a delivery of {delivery.contract_id}, not of {self.contract_id}")
        return await self._agent.accept_delivery(delivery)

    async def reject_delivery(self, *, reason: str) -> ContractView:
        """Refuse the delivery: the contract goes to dispute, the price stays held."""
        return await self._agent.reject_delivery(self.contract_id, reason=reason)

    async def cancel(self, *, reason: str = "") -> ContractView:
        """Before delivery: the provider's cancel refunds; the buyer's is a request."""
        return await self._agent.cancel(self.contract_id, reason=reason)

    async def wait_settled(self, *, timeout_s: float = 30.0) -> ContractUpdatedNotice:
        """Wait until the contract is released, refunded or resolved."""
        return await self._agent.wait_settled(self.contract_id, timeout_s=timeout_s)

    async def rate(self, stars: int, /, comment: str = "") -> RatingReply:
        """Rate the provider once the contract settled, 1 to 5 stars."""
        return await self._agent.rate(self.contract_id, stars, comment)
