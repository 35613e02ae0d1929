"""Mapping stored rows to the wire's reply structs (pure)."""

from __future__ import annotations

import msgspec

from agent_client.protocol import (
    JSON_NULL,
    ContractView,
    Envelope,
    ResultRef,
    json_encoder,
)
from exchange.domain.contract_states import ContractRow

__all__ = [
    "contract_view",
    "envelope_from_text",
    "envelope_text",
    "object_ref_from_text",
    "raw_json",
]


def contract_view(contract: ContractRow, *, with_payloads: bool = False) -> ContractView:
    delivered = with_payloads and contract.result is not None
    return ContractView(
        contract_id=contract.contract_id,
        state=contract.state,
        buyer_id=contract.buyer_id,
        provider_id=contract.provider_id,
        capability=contract.capability,
        price_millicredits=contract.price_millicredits,
        fee_millicredits=contract.fee_millicredits,
        delivery_deadline_ms=contract.delivery_deadline_ms,
        result_sha256=contract.result_sha256,
        record=envelope_from_text(contract.record_envelope),
        created_at_ms=contract.created_at_ms,
        updated_at_ms=contract.updated_at_ms,
        net_millicredits=contract.net_millicredits,
        refunded_millicredits=contract.refunded_millicredits,
        review_deadline_ms=contract.review_deadline_ms,
        dispute_deadline_ms=contract.dispute_deadline_ms,
        dispute_reason=contract.dispute_reason,
        resolution=contract.resolution,
        seal_result=contract.seal_result,
        result_ref=object_ref_from_text(contract.result_ref),
        task=raw_json(contract.task) if with_payloads else JSON_NULL,
        result=raw_json(contract.result) if delivered and contract.result else JSON_NULL,
    )


def envelope_text(envelope: Envelope) -> str:
    return json_encoder.encode(envelope).decode()


def envelope_from_text(text: str) -> Envelope:
    return msgspec.json.decode(text, type=Envelope)


def raw_json(json_text: str) -> msgspec.Raw:
    return msgspec.Raw(json_text.encode())


def object_ref_from_text(text: str | None, /) -> ResultRef | None:
    """The stored result a contract row names (its ``result_ref`` column), if any."""
    return None if text is None else msgspec.json.decode(text, type=ResultRef)
