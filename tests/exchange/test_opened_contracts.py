"""A worker remembers the delivery terms of the contracts it opened, boundedly.

The terms (provider, sealed or not, output schema) spare a delivery the read
before its schema check; they must never serve anyone but the contract's
provider, and the memory must stay bounded. The deliveries themselves are
proved over NATS in ``test_delivery_checks.py`` and ``test_lifecycle.py``,
now with the terms coming from here.
"""

from __future__ import annotations

import dataclasses

from exchange.domain.contract_states import ContractRow
from exchange.use_cases.opened_contracts import DeliveryTerms, OpenedContracts
from tests.exchange.test_contract_states import PROVIDER_ID, contract


def _opened(number: int) -> ContractRow:
    return dataclasses.replace(
        contract(), contract_id=f"c_{number:032x}", output_schema=f'{{"n": {number}}}'
    )


def test_the_terms_are_the_opening_contracts_and_only_for_its_provider() -> None:
    opened = OpenedContracts(kept_max=4)
    row = dataclasses.replace(contract(), seal_result=True, output_schema='{"type": "string"}')
    opened.remember(row)
    assert opened.terms_for(row.contract_id, PROVIDER_ID) == DeliveryTerms(
        PROVIDER_ID, True, '{"type": "string"}'
    )
    assert opened.terms_for(row.contract_id, row.buyer_id) is None
    assert opened.terms_for("c_" + "ab" * 16, PROVIDER_ID) is None


def test_only_the_most_recent_contracts_are_kept() -> None:
    opened = OpenedContracts(kept_max=3)
    rows = [_opened(number) for number in range(5)]
    for row in rows:
        opened.remember(row)
    assert len(opened) == 3
    kept = [row for row in rows if opened.terms_for(row.contract_id, PROVIDER_ID)]
    assert kept == rows[2:]
