"""Direct transfers between agents, with the transfer fee, over real NATS and a real ledger.

Proves on SQLite and PostgreSQL: a transfer pays the payee the amount less
the 5 % fee and the platform the fee, in one linked chain both agents see in
their history; a retry with the same transfer_id (one after another or many
at once) returns the first outcome and pays once, while the same id with
other fields is refused; insufficient funds, an unknown, invalid or
malformed payee, paying oneself, and zero, negative or huge amounts are
refused with their codes and move nothing; a refused transfer_id can be used
again after a top-up; concurrent transfers cannot overdraw a wallet. Every
test ends with the ledger invariants.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import AgentKeys, ExchangeError, OperatorClient
from exchange.use_cases.exchange_accounts import REVENUE_ACCOUNT_ID
from wallet import SqlLedger

GRANT = 100_000
FEE_RATE_BPS = 500


def fee_of(amount):
    return amount * FEE_RATE_BPS // 10_000


async def available(agent):
    return (await agent.balance()).available_millicredits


async def revenue(exchange):
    accounts = await SqlLedger(exchange.worker.engine).lookup_accounts([REVENUE_ACCOUNT_ID])
    return accounts[REVENUE_ACCOUNT_ID].credits_posted


async def error_code(call):
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value.code


async def payer_and_payee(exchange, *, grant=GRANT):
    payer = await exchange.funded_agent(grant)
    payee = await exchange.funded_agent(1_000)
    return payer, payee


async def test_a_transfer_pays_the_payee_net_and_the_platform_the_fee(exchange):
    payer, payee = await payer_and_payee(exchange)
    revenue_before = await revenue(exchange)
    reply = await payer.transfer(payee.agent_id, 10_000, transfer_id="rent-may", memo="rent")
    assert (reply.amount_millicredits, reply.fee_millicredits) == (10_000, fee_of(10_000))
    assert reply.net_millicredits == 10_000 - fee_of(10_000)
    assert (reply.payer_id, reply.payee_id, reply.memo) == (payer.agent_id, payee.agent_id, "rent")
    assert reply.transfer_id == "rent-may" and not reply.replayed
    assert await available(payer) == GRANT - 10_000
    assert await available(payee) == 1_000 + reply.net_millicredits
    assert await revenue(exchange) == revenue_before + reply.fee_millicredits

    payer_history = {
        (entry.code, entry.direction, entry.amount_millicredits, entry.reference)
        for entry in await payer.transactions()
    }
    assert ("transfer", "out", reply.net_millicredits, reply.reference) in payer_history
    assert ("fee", "out", reply.fee_millicredits, reply.reference) in payer_history
    [received] = [entry for entry in await payee.transactions() if entry.code == "transfer"]
    assert (received.direction, received.amount_millicredits) == ("in", reply.net_millicredits)
    assert received.counterparty_account_id == f"agent:{payer.agent_id}"
    await exchange.check_invariants()


async def test_a_tiny_transfer_with_no_fee_pays_it_all(exchange):
    payer, payee = await payer_and_payee(exchange)
    reply = await payer.transfer(payee.agent_id, 19)
    assert (reply.fee_millicredits, reply.net_millicredits) == (0, 19)
    assert await available(payee) == 1_000 + 19
    await exchange.check_invariants()


async def test_a_retry_with_the_same_transfer_id_returns_the_first_outcome_and_pays_once(
    exchange,
):
    payer, payee = await payer_and_payee(exchange)
    first = await payer.transfer(payee.agent_id, 5_000, transfer_id="t-1", memo="once")
    again = await payer.transfer(payee.agent_id, 5_000, transfer_id="t-1", memo="once")
    assert again.replayed and not first.replayed
    assert (again.reference, again.created_at_ms) == (first.reference, first.created_at_ms)
    assert await available(payer) == GRANT - 5_000
    await exchange.check_invariants()


async def test_concurrent_retries_of_one_transfer_pay_once(exchange):
    payer, payee = await payer_and_payee(exchange)
    replies = await asyncio.gather(
        *(payer.transfer(payee.agent_id, 3_000, transfer_id="burst") for _ in range(6))
    )
    assert len({reply.reference for reply in replies}) == 1
    assert [reply.replayed for reply in replies].count(False) == 1
    assert await available(payer) == GRANT - 3_000
    assert await available(payee) == 1_000 + 3_000 - fee_of(3_000)
    await exchange.check_invariants()


async def test_the_same_transfer_id_for_another_transfer_is_an_idempotency_conflict(exchange):
    payer, payee = await payer_and_payee(exchange)
    other_payee = await exchange.funded_agent(1_000)
    await payer.transfer(payee.agent_id, 5_000, transfer_id="t-1")
    for retry in (
        payer.transfer(payee.agent_id, 5_001, transfer_id="t-1"),
        payer.transfer(other_payee.agent_id, 5_000, transfer_id="t-1"),
        payer.transfer(payee.agent_id, 5_000, transfer_id="t-1", memo="changed"),
    ):
        assert await error_code(retry) == "idempotency_conflict"
    assert await available(payer) == GRANT - 5_000
    assert await available(other_payee) == 1_000
    await exchange.check_invariants()


async def test_two_payers_may_use_the_same_transfer_id(exchange):
    first_payer, payee = await payer_and_payee(exchange)
    second_payer = await exchange.funded_agent(GRANT)
    first = await first_payer.transfer(payee.agent_id, 1_000, transfer_id="invoice-7")
    second = await second_payer.transfer(payee.agent_id, 1_000, transfer_id="invoice-7")
    assert first.reference != second.reference and not second.replayed
    assert await available(payee) == 1_000 + 2 * (1_000 - fee_of(1_000))
    await exchange.check_invariants()


async def test_insufficient_funds_moves_nothing_and_the_id_works_after_a_top_up(exchange):
    payer, payee = await payer_and_payee(exchange, grant=10_000)
    # The net alone (9,500) would fit; the whole amount with its fee does not.
    assert await error_code(payer.transfer(payee.agent_id, 10_001, transfer_id="big")) == (
        "insufficient_funds"
    )
    assert (await available(payer), await available(payee)) == (10_000, 1_000)
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(payer.agent_id, 1, reason="top-up")
    reply = await payer.transfer(payee.agent_id, 10_001, transfer_id="big")
    assert not reply.replayed
    assert await available(payer) == 0
    await exchange.check_invariants()


async def test_a_payer_without_a_wallet_has_insufficient_funds(exchange):
    payee = await exchange.funded_agent(1_000)
    newcomer = await exchange.agent()
    assert await error_code(newcomer.transfer(payee.agent_id, 1)) == "insufficient_funds"
    assert await available(payee) == 1_000
    await exchange.check_invariants()


async def test_payees_that_are_unknown_invalid_malformed_or_oneself_are_refused(exchange):
    payer, _payee = await payer_and_payee(exchange)
    nobody = AgentKeys.generate().agent_id
    # Right shape, wrong checksum: not an agent id.
    bad_checksum = nobody[:-1] + ("A" if nobody[-1] != "A" else "B")
    cases = [
        (nobody, "not_found"),
        (bad_checksum, "invalid_request"),
        ("bob", "malformed"),
        (payer.agent_id, "invalid_request"),
    ]
    for payee_id, code in cases:
        assert await error_code(payer.transfer(payee_id, 1_000)) == code, payee_id
    assert await available(payer) == GRANT
    await exchange.check_invariants()


@pytest.mark.parametrize("amount", [0, -5, 10**12 + 1], ids=["zero", "negative", "huge"])
async def test_zero_negative_and_huge_amounts_are_malformed(exchange, amount):
    payer, payee = await payer_and_payee(exchange)
    assert await error_code(payer.transfer(payee.agent_id, amount)) == "malformed"
    assert (await available(payer), await available(payee)) == (GRANT, 1_000)
    await exchange.check_invariants()


async def test_concurrent_transfers_cannot_overdraw_a_wallet(exchange):
    payer, payee = await payer_and_payee(exchange, grant=10_000)
    results = await asyncio.gather(
        *(payer.transfer(payee.agent_id, 3_000) for _ in range(5)), return_exceptions=True
    )
    paid = [result for result in results if not isinstance(result, Exception)]
    refused = [result.code for result in results if isinstance(result, ExchangeError)]
    assert (len(paid), refused) == (3, ["insufficient_funds"] * 2)
    assert await available(payer) == 1_000
    await exchange.check_invariants()
