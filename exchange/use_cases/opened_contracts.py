"""What a delivery is checked against, remembered from the opening: no read per delivery.

A delivery's result is checked against the output schema kept when its
contract opened, outside the step's transaction (the check takes a thread
for up to its time budget). Reading that schema cost a whole transaction of
its own per delivery. Neither the schema, nor the provider, nor whether the
result is sealed ever changes after the opening, so the worker that opened
a contract remembers them, for the most recent ``OPENED_CONTRACTS_KEPT_MAX``
contracts (a schema is at most 16 KiB). A contract opened by another worker,
or forgotten, is read from the database as before; so is one whose
delivery comes from anyone but its provider, who then gets the same refusal.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from exchange.domain.contract_states import ContractRow
from exchange.limits import OPENED_CONTRACTS_KEPT_MAX

__all__ = ["DeliveryTerms", "OpenedContracts"]


@dataclass(frozen=True, slots=True)
class DeliveryTerms:
    """What never changes after the opening and every delivery is checked against."""

    provider_id: str
    seal_result: bool
    output_schema: str

    @classmethod
    def of(cls, contract: ContractRow) -> DeliveryTerms:
        return cls(contract.provider_id, contract.seal_result, contract.output_schema)


class OpenedContracts:
    """The delivery terms of the contracts this worker opened last (least recent out first)."""

    def __init__(self, *, kept_max: int = OPENED_CONTRACTS_KEPT_MAX) -> None:
        assert kept_max > 0
        self._kept_max = kept_max
        self._terms: OrderedDict[str, DeliveryTerms] = OrderedDict()

    def __len__(self) -> int:
        return len(self._terms)

    def remember(self, contract: ContractRow, /) -> None:
        self._terms[contract.contract_id] = DeliveryTerms.of(contract)
        self._terms.move_to_end(contract.contract_id)
        while len(self._terms) > self._kept_max:
            self._terms.popitem(last=False)

    def terms_for(self, contract_id: str, provider_id: str, /) -> DeliveryTerms | None:
        """The terms, if remembered and ``provider_id`` is the contract's provider."""
        terms = self._terms.get(contract_id)
        if terms is None or terms.provider_id != provider_id:
            return None
        return terms
