"""The contract lifecycle (pure): states, who may do what, and when.

::

    open ──deliver──▶ delivered ──accept──▶ released

``open`` and ``delivered`` hold the price in escrow; ``released`` has paid it
out. (Refunds, deadlines and disputes arrive with the lifecycle issue; the
database already accepts the ``refunded`` state.) The repository applies each
transition as a compare-and-set on the state, so two racing requests cannot
both move the same contract.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from escrow import EscrowState
from exchange.errors import ErrorCode, ExchangeError

__all__ = [
    "ContractRow",
    "ContractState",
    "check_can_accept",
    "check_can_deliver",
    "check_party",
    "contract_id_for_quote",
    "escrow_state_of",
]


class ContractState(enum.StrEnum):
    OPEN = "open"
    DELIVERED = "delivered"
    RELEASED = "released"
    REFUNDED = "refunded"


_ESCROW_STATE_BY_CONTRACT_STATE = {
    ContractState.OPEN: EscrowState.HELD,
    ContractState.DELIVERED: EscrowState.HELD,
    ContractState.RELEASED: EscrowState.RELEASED,
    ContractState.REFUNDED: EscrowState.REFUNDED,
}


def escrow_state_of(state: ContractState, /) -> EscrowState:
    return _ESCROW_STATE_BY_CONTRACT_STATE[state]


@dataclass(frozen=True, slots=True)
class ContractRow:
    contract_id: str
    buyer_id: str
    provider_id: str
    capability: str
    state: ContractState
    price_millicredits: int
    fee_millicredits: int
    net_millicredits: int | None
    delivery_deadline_ms: int
    quote_envelope: str
    acceptance_envelope: str
    record_envelope: str
    task: str
    result: str | None
    result_sha256: str | None
    created_at_ms: int
    updated_at_ms: int


def contract_id_for_quote(quote_document_bytes: bytes, /) -> str:
    """A quote can be accepted once: its contract id is a hash of its signed bytes."""
    return "c_" + hashlib.sha256(quote_document_bytes).hexdigest()[:32]


def check_party(contract: ContractRow, agent_id: str, /) -> None:
    # Someone who is not a party gets the same answer as for a missing
    # contract, so contract ids cannot be probed.
    if agent_id not in (contract.buyer_id, contract.provider_id):
        raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")


def check_can_deliver(contract: ContractRow, provider_id: str, /, *, now_ms: int) -> None:
    check_party(contract, provider_id)
    if provider_id != contract.provider_id:
        raise ExchangeError(ErrorCode.FORBIDDEN, "only the provider delivers")
    if contract.state is not ContractState.OPEN:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"the contract is {contract.state.value}, not open",
            contract_id=contract.contract_id,
        )
    if now_ms > contract.delivery_deadline_ms:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            "the delivery deadline has passed",
            contract_id=contract.contract_id,
        )


def check_can_accept(contract: ContractRow, buyer_id: str, result_sha256: str, /) -> None:
    check_party(contract, buyer_id)
    if buyer_id != contract.buyer_id:
        raise ExchangeError(ErrorCode.FORBIDDEN, "only the buyer accepts a delivery")
    if contract.state is not ContractState.DELIVERED:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"the contract is {contract.state.value}, not delivered",
            contract_id=contract.contract_id,
        )
    if contract.result_sha256 != result_sha256:
        raise ExchangeError(
            ErrorCode.HASH_MISMATCH,
            "the accepted hash is not the delivered result's",
            contract_id=contract.contract_id,
        )
