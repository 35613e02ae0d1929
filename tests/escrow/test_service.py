"""The escrow service maps the ledger's answers to typed refusals, order by order.

Proves that ``Escrow.hold`` raises ``InsufficientFunds`` (code
``exceeds_credits``) when the buyer cannot cover the price and a plain
``EscrowError`` carrying the ledger's result for any other refusal, that a
retried hold or settlement is a no-op, and that ``hold_and_settle_all``
answers each order exactly as ``hold`` or ``settle`` would, one refusal
leaving the others applied. The ledger behind the ``LedgerPort`` is the
wallet's pure planner applied to in-memory dicts (``tests.wallet.memory_ledger``),
so the outcomes are the real ledger's, without a database or NATS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from escrow import (
    ESCROW_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    Escrow,
    EscrowError,
    HoldOrder,
    InsufficientFunds,
    Settlement,
    SettleOrder,
    provider_share_for_bps,
    settlement_for,
)
from tests.escrow.escrow_ledger import BUYER, PROVIDER, funded_ledger
from wallet import (
    NewTransfer,
    TransferOutcome,
    TransferResult,
)

FUNDS = 10_000
FEE_RATE_BPS = 500


class PlannerLedger:
    """A ``LedgerPort`` whose answers come from the wallet's pure planner."""

    def __init__(self) -> None:
        self.memory = funded_ledger(FUNDS)

    async def create_transfers(
        self, transfers: Sequence[NewTransfer], /, *, connection: Any = None
    ) -> list[TransferOutcome]:
        return list(self.memory.submit(transfers).outcomes)

    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /, *, connection: Any = None
    ) -> list[list[TransferOutcome]]:
        outcomes = list(self.memory.submit_group(batches).outcomes)
        split: list[list[TransferOutcome]] = []
        for batch in batches:
            split.append(outcomes[: len(batch)])
            outcomes = outcomes[len(batch) :]
        assert not outcomes
        return split

    def available(self, account_id: str) -> int:
        return self.memory.accounts[account_id].available

    def held(self, account_id: str) -> int:
        return self.memory.accounts[account_id].held


def hold_order(contract_id: str, price: int, *, buyer_account_id: str = BUYER) -> HoldOrder:
    return HoldOrder(contract_id, buyer_account_id, price)


def settle_order(
    contract_id: str, price: int, *, share_bps: int, provider_account_id: str = PROVIDER
) -> SettleOrder:
    settlement = settlement_for(
        price,
        provider_share_millicredits=provider_share_for_bps(price, provider_share_bps=share_bps),
        fee_rate_bps=FEE_RATE_BPS,
    )
    return SettleOrder(contract_id, BUYER, provider_account_id, settlement)


@pytest.fixture
def ledger() -> PlannerLedger:
    return PlannerLedger()


@pytest.fixture
def escrow(ledger: PlannerLedger) -> Escrow:
    return Escrow(ledger)


async def test_a_hold_the_buyer_can_cover_holds_the_price(
    ledger: PlannerLedger, escrow: Escrow
) -> None:
    await escrow.hold(hold_order("c_1", FUNDS), connection=None)
    assert (ledger.held(BUYER), ledger.available(BUYER)) == (FUNDS, 0)


async def test_a_hold_over_the_buyers_balance_is_refused_as_insufficient_funds(
    ledger: PlannerLedger, escrow: Escrow
) -> None:
    with pytest.raises(InsufficientFunds) as refused:
        await escrow.hold(hold_order("c_1", FUNDS + 1), connection=None)
    assert refused.value.code == TransferResult.EXCEEDS_CREDITS.value == "exceeds_credits"
    assert refused.value.contract_id == "c_1"
    assert refused.value.amount_millicredits == FUNDS + 1
    assert (ledger.held(BUYER), ledger.available(BUYER)) == (0, FUNDS)


async def test_a_hold_refused_for_another_reason_is_an_escrow_error_with_the_ledgers_code(
    escrow: Escrow,
) -> None:
    with pytest.raises(EscrowError) as refused:
        await escrow.hold(hold_order("c_1", 100, buyer_account_id="agent:nobody"), connection=None)
    assert type(refused.value) is EscrowError
    assert refused.value.code == "debit_account_not_found"
    assert "the ledger refused the hold" in str(refused.value)


async def test_a_retried_hold_holds_the_price_once(ledger: PlannerLedger, escrow: Escrow) -> None:
    await escrow.hold(hold_order("c_1", 600), connection=None)
    await escrow.hold(hold_order("c_1", 600), connection=None)
    assert ledger.held(BUYER) == 600


@pytest.mark.parametrize(
    ("share_bps", "provider", "revenue", "buyer"),
    [(10_000, 950, 50, FUNDS - 1_000), (5_000, 475, 25, FUNDS - 500), (0, 0, 0, FUNDS)],
)
async def test_a_settlement_pays_out_as_decided_and_a_retry_changes_nothing(
    ledger: PlannerLedger, escrow: Escrow, share_bps: int, provider: int, revenue: int, buyer: int
) -> None:
    await escrow.hold(hold_order("c_1", 1_000), connection=None)
    for _attempt in range(2):
        await escrow.settle(settle_order("c_1", 1_000, share_bps=share_bps), connection=None)
        assert (
            ledger.available(PROVIDER),
            ledger.available(REVENUE_ACCOUNT_ID),
            ledger.available(BUYER),
            ledger.held(BUYER),
            ledger.available(ESCROW_ACCOUNT_ID),
        ) == (provider, revenue, buyer, 0, 0)


async def test_settling_a_contract_that_holds_nothing_is_refused(escrow: Escrow) -> None:
    with pytest.raises(EscrowError) as refused:
        await escrow.settle(settle_order("c_1", 1_000, share_bps=10_000), connection=None)
    assert type(refused.value) is EscrowError
    assert refused.value.code == "pending_transfer_not_found"
    # The step named is the settlement's outcome.
    assert "the ledger refused the released" in str(refused.value)


async def test_refunding_a_hold_already_released_is_refused(escrow: Escrow) -> None:
    await escrow.hold(hold_order("c_1", 1_000), connection=None)
    await escrow.settle(settle_order("c_1", 1_000, share_bps=10_000), connection=None)
    with pytest.raises(EscrowError) as refused:
        await escrow.settle(settle_order("c_1", 1_000, share_bps=0), connection=None)
    assert refused.value.code == "pending_transfer_already_posted"
    assert "the ledger refused the refunded" in str(refused.value)


async def test_a_settlement_refused_late_in_its_chain_reports_the_cause(escrow: Escrow) -> None:
    await escrow.hold(hold_order("c_1", 1_000), connection=None)
    order = settle_order("c_1", 1_000, share_bps=10_000, provider_account_id="agent:nobody")
    with pytest.raises(EscrowError) as refused:
        await escrow.settle(order, connection=None)
    assert refused.value.code == "credit_account_not_found"


async def test_a_group_answers_each_order_as_alone_and_one_refusal_spares_the_others(
    ledger: PlannerLedger, escrow: Escrow
) -> None:
    await escrow.hold(hold_order("c_old", 1_000), connection=None)
    holds = [hold_order("c_new", 2_000), hold_order("c_big", FUNDS)]
    settles = [
        settle_order("c_old", 1_000, share_bps=10_000),
        settle_order("c_none", 1_000, share_bps=10_000),
    ]
    held, settled = await escrow.hold_and_settle_all(holds, settles, connection=None)
    assert held[0] is None
    assert isinstance(held[1], InsufficientFunds)
    assert held[1].contract_id == "c_big"
    assert settled[0] is None
    assert isinstance(settled[1], EscrowError)
    assert settled[1].code == "pending_transfer_not_found"
    # c_new is held, c_old paid out, c_big never held.
    assert ledger.held(BUYER) == 2_000
    assert ledger.available(PROVIDER) == 950
    assert ledger.available(BUYER) == FUNDS - 1_000 - 2_000


async def test_an_empty_group_asks_nothing(escrow: Escrow) -> None:
    assert await escrow.hold_and_settle_all([], [], connection=None) == ([], [])


def test_an_order_plans_the_machines_transfers() -> None:
    settlement = Settlement(1_000, 1_000, 50, 950, 0)
    order = SettleOrder("c_1", BUYER, PROVIDER, settlement)
    assert [t.id for t in order.transfers()] == [
        "escrow:c_1:post",
        "escrow:c_1:net",
        "escrow:c_1:fee",
    ]
    assert [t.id for t in hold_order("c_1", 5).transfers()] == ["escrow:c_1:hold"]
