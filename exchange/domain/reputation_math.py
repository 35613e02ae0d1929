"""Reputation (pure): earned only from settled contracts, rated only after release.

A provider's reputation for a capability is kept as counters on its listing:

* ``settled_count``: contracts that reached a settled state: ``released``
  (paid in full), ``refunded`` (deadline missed or cancelled) or ``resolved``
  (a dispute ended by an operator or by the dispute window);
* ``on_time_count``: settled contracts whose result was delivered by the
  delivery deadline (the exchange refuses a later delivery, so: delivered);
* ``refund_count`` and ``dispute_count``: settled contracts that were
  refunded, or went through a dispute (``resolved``);
* ``rating_count`` and ``rating_sum``: the buyers' stars, 1 to 5, one rating
  per released contract;
* ``unique_buyer_count``: distinct buyers among settled contracts. A
  contract cannot be self-dealt (the database refuses it), but many contracts
  from one buyer are still one buyer, which is what this figure shows.

Contracts still holding money (open, delivered, disputed) do not count yet,
so neither side can move a reputation with a contract that has not ended.
States this module does not know (one added later) count as not settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from agent_client.protocol import Reputation
from exchange.domain.contract_states import ContractRow, ContractState
from exchange.errors import ErrorCode, ExchangeError

__all__ = [
    "RATEABLE_STATE",
    "ReputationCounts",
    "check_can_rate",
    "reputation_view",
]


# Only a contract paid out in full to the provider can be rated.
RATEABLE_STATE = ContractState.RELEASED


@dataclass(frozen=True, slots=True)
class ReputationCounts:
    settled_count: int = 0
    on_time_count: int = 0
    dispute_count: int = 0
    refund_count: int = 0
    rating_count: int = 0
    rating_sum: int = 0
    unique_buyer_count: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.on_time_count <= self.settled_count
        assert 0 <= self.dispute_count + self.refund_count <= self.settled_count
        assert 0 <= self.rating_count <= self.settled_count
        assert self.rating_count <= self.rating_sum <= 5 * self.rating_count
        assert 0 <= self.unique_buyer_count <= self.settled_count

    @classmethod
    def from_row(cls, row: Mapping[str, Any], /) -> ReputationCounts:
        """The counters of a listing row (or of a row summing several)."""
        return cls(**{field.name: int(row[field.name]) for field in fields(cls)})


def reputation_view(
    provider_id: str, capability: str | None, counts: ReputationCounts, /
) -> Reputation:
    settled = counts.settled_count

    def rate(count: int) -> float | None:
        return count / settled if settled else None

    return Reputation(
        provider_id=provider_id,
        capability=capability,
        settled_count=settled,
        on_time_rate=rate(counts.on_time_count),
        dispute_rate=rate(counts.dispute_count),
        refund_rate=rate(counts.refund_count),
        rating_mean=counts.rating_sum / counts.rating_count if counts.rating_count else None,
        rating_count=counts.rating_count,
        unique_buyer_count=counts.unique_buyer_count,
    )


def check_can_rate(contract: ContractRow, agent_id: str, /) -> None:
    """Only the buyer rates, and only once the contract is released."""
    if agent_id not in (contract.buyer_id, contract.provider_id):
        # As for every contract request: a stranger cannot probe contract ids.
        raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
    if agent_id != contract.buyer_id:
        raise ExchangeError(
            ErrorCode.FORBIDDEN,
            "only the buyer rates a contract; a provider cannot rate its own work",
            contract_id=contract.contract_id,
        )
    if contract.state is not RATEABLE_STATE:
        raise ExchangeError(
            ErrorCode.NOT_SETTLED,
            f"only a released contract can be rated; this one is {contract.state.value}",
            contract_id=contract.contract_id,
        )
