"""Reading contracts for people: an owner's recent contracts, an operator's disputes.

The portal shows these pages; it reads the exchange's contracts through
here, never its tables, so the exchange may change how it stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import ContractEventEntry, ContractState
from exchange.adapters import contract_store
from exchange.domain.contract_states import ContractRow
from exchange.limits import CONTRACT_EVENTS_MAX

__all__ = ["DisputeFile", "contract_event_entry", "contracts_of_agents", "open_disputes"]


@dataclass(frozen=True, slots=True)
class DisputeFile:
    """A contract in dispute and what each side said and did, in order."""

    contract: ContractRow
    events: list[ContractEventEntry]


async def contracts_of_agents(
    connection: AsyncConnection, agent_ids: Sequence[str], /, *, limit: int
) -> list[ContractRow]:
    """The contracts these agents are a party of, the most recently changed first."""
    return await contract_store.contracts_of_agents(connection, agent_ids, limit=limit)


async def open_disputes(connection: AsyncConnection, /, *, limit: int) -> list[DisputeFile]:
    """The contracts in dispute, the longest waiting first, with their histories."""
    disputed = await contract_store.contracts_in_state(
        connection, ContractState.DISPUTED, limit=limit
    )
    files = []
    for contract in disputed:
        rows = await contract_store.contract_event_rows(
            connection, contract.contract_id, limit=CONTRACT_EVENTS_MAX
        )
        files.append(DisputeFile(contract, [contract_event_entry(row) for row in rows]))
    return files


def contract_event_entry(row: dict[str, Any]) -> ContractEventEntry:
    return ContractEventEntry(
        event=row["event"],
        actor_id=row["actor_id"],
        to_state=ContractState(row["to_state"]),
        detail=row["detail"],
        at_ms=row["at_ms"],
    )
