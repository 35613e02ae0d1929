"""Budgets, approvals and the freeze switch, enforced by a real exchange over NATS.

A human sets controls on a linked agent in the portal; the agent then hires
through the exchange like any agent. Proves that the exchange refuses a
contract over the per-contract limit, counts held (pending) escrow against
the daily limit, lets only as many concurrent contracts through as fit the
daily limit, holds a contract over the approval threshold until the human
approves it (then the same acceptance opens it) or rejects it, and stops
all new spending when the owner or an operator freezes the agent. A refused
contract holds nothing. Ledger and exchange invariants end every test.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import ExchangeError, QuoteRequest
from human_portal.controls import approvals_for_user, decide_approval, set_controls
from human_portal.errors import Conflict, InvalidInput, NotFound
from human_portal.operator_actions import freeze_agent, unfreeze_agent
from tests.portal.conftest import OPERATOR_EMAIL
from tests.portal.money_helpers import available

CREDIT = 1_000
PRICE = 2 * CREDIT
GRANT = 100 * CREDIT


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def shop(harness, price=PRICE):
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Upper-cases text", price_millicredits=price)
    await provider.serve("text.upper", upper, pricing=price)
    return provider


async def buyer_with_controls(harness, **controls):
    user = await harness.user()
    buyer = await harness.linked_agent(user)
    await harness.mint(buyer.agent_id, GRANT)
    values = {
        "daily_limit_millicredits": None,
        "contract_limit_millicredits": None,
        "approval_threshold_millicredits": None,
        "frozen": False,
        **controls,
    }
    await set_controls(harness.context, user, buyer.agent_id, **values)
    return user, buyer


async def a_quote(buyer):
    quotes = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=10 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    assert len(quotes) == 1
    return quotes[0]


async def refused_code(buyer, quote) -> str:
    with pytest.raises(ExchangeError) as refused:
        await buyer.hire(quote, {"text": "hi"})
    return refused.value.code


async def test_a_contract_over_the_per_contract_limit_is_refused_and_holds_nothing(harness):
    await shop(harness)
    _, buyer = await buyer_with_controls(harness, contract_limit_millicredits=PRICE - 1)
    assert await refused_code(buyer, await a_quote(buyer)) == "budget_exceeded"
    assert await available(harness, buyer.agent_id) == GRANT
    assert (await buyer.balance()).held_millicredits == 0
    await harness.check_invariants()


async def test_held_escrow_counts_against_the_daily_limit(harness):
    await shop(harness)
    _, buyer = await buyer_with_controls(harness, daily_limit_millicredits=5 * CREDIT)
    await buyer.hire(await a_quote(buyer), {"text": "one"})
    await buyer.hire(await a_quote(buyer), {"text": "two"})
    assert (await buyer.balance()).held_millicredits == 2 * PRICE
    assert await refused_code(buyer, await a_quote(buyer)) == "budget_exceeded"
    assert (await buyer.balance()).held_millicredits == 2 * PRICE
    await harness.check_invariants()


async def test_concurrent_contracts_fit_the_daily_limit_and_no_more(harness):
    await shop(harness)
    _, buyer = await buyer_with_controls(harness, daily_limit_millicredits=5 * CREDIT)
    quotes = [await a_quote(buyer) for _ in range(6)]
    outcomes = await asyncio.gather(
        *(buyer.hire(quote, {"text": "x"}) for quote in quotes), return_exceptions=True
    )
    opened = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, ExchangeError)]
    assert len(opened) == 2
    assert len(refused) == 4 and {error.code for error in refused} == {"budget_exceeded"}
    assert (await buyer.balance()).held_millicredits == 2 * PRICE
    await harness.check_invariants()


async def test_a_contract_over_the_threshold_waits_for_approval_then_opens(harness):
    await shop(harness)
    user, buyer = await buyer_with_controls(harness, approval_threshold_millicredits=CREDIT)
    quote = await a_quote(buyer)
    with pytest.raises(ExchangeError) as waiting:
        await buyer.hire(quote, {"text": "big job"})
    assert waiting.value.code == "pending_approval"
    contract_id = waiting.value.contract_id
    assert (await buyer.balance()).held_millicredits == 0
    # Asking again does not duplicate the request.
    assert await refused_code(buyer, quote) == "pending_approval"
    approvals = await harness.context.read(
        lambda connection: approvals_for_user(connection, user.user_id, limit=10)
    )
    assert [(a.contract_id, a.price_millicredits, a.status.value) for a in approvals] == [
        (contract_id, PRICE, "pending")
    ]
    await decide_approval(harness.context, user, contract_id, approve=True)
    contract = await buyer.hire(quote, {"text": "big job"})
    assert contract.contract_id == contract_id
    assert (await buyer.balance()).held_millicredits == PRICE
    with pytest.raises(Conflict):
        await decide_approval(harness.context, user, contract_id, approve=False)
    await harness.check_invariants()


async def test_a_rejected_contract_never_opens(harness):
    await shop(harness)
    user, buyer = await buyer_with_controls(harness, approval_threshold_millicredits=CREDIT)
    quote = await a_quote(buyer)
    assert await refused_code(buyer, quote) == "pending_approval"
    approvals = await harness.context.read(
        lambda connection: approvals_for_user(connection, user.user_id, limit=10)
    )
    await decide_approval(harness.context, user, approvals[0].contract_id, approve=False)
    assert await refused_code(buyer, quote) == "approval_rejected"
    assert (await buyer.balance()).held_millicredits == 0
    await harness.check_invariants()


async def test_only_the_owner_decides_an_approval(harness):
    await shop(harness)
    _, buyer = await buyer_with_controls(harness, approval_threshold_millicredits=CREDIT)
    stranger = await harness.user("stranger@example.com")
    quote = await a_quote(buyer)
    with pytest.raises(ExchangeError) as waiting:
        await buyer.hire(quote, {"text": "x"})
    with pytest.raises(NotFound):
        await decide_approval(harness.context, stranger, waiting.value.contract_id, approve=True)
    assert await refused_code(buyer, quote) == "pending_approval"
    await harness.check_invariants()


async def test_the_owners_freeze_stops_all_new_spending_at_once(harness):
    await shop(harness)
    user, buyer = await buyer_with_controls(harness, frozen=True)
    assert await refused_code(buyer, await a_quote(buyer)) == "agent_frozen"
    await set_controls(
        harness.context,
        user,
        buyer.agent_id,
        daily_limit_millicredits=None,
        contract_limit_millicredits=None,
        approval_threshold_millicredits=None,
        frozen=False,
    )
    await buyer.hire(await a_quote(buyer), {"text": "thawed"})
    await harness.check_invariants()


async def test_an_operators_freeze_outlasts_the_owners_switch(harness):
    await shop(harness)
    user, buyer = await buyer_with_controls(harness)
    operator = await harness.user(OPERATOR_EMAIL)
    with pytest.raises(InvalidInput):
        await freeze_agent(harness.context, operator, buyer.agent_id, "")
    await freeze_agent(harness.context, operator, buyer.agent_id, "chargeback under review")
    await set_controls(
        harness.context,
        user,
        buyer.agent_id,
        daily_limit_millicredits=None,
        contract_limit_millicredits=None,
        approval_threshold_millicredits=None,
        frozen=False,
    )
    assert await refused_code(buyer, await a_quote(buyer)) == "agent_frozen"
    await unfreeze_agent(harness.context, operator, buyer.agent_id)
    await buyer.hire(await a_quote(buyer), {"text": "ok"})
    await harness.check_invariants()


async def test_limits_must_be_positive_and_bounded(harness):
    user, buyer = await buyer_with_controls(harness)
    for bad in (0, -1, 10**13):
        with pytest.raises(InvalidInput):
            await set_controls(
                harness.context,
                user,
                buyer.agent_id,
                daily_limit_millicredits=bad,
                contract_limit_millicredits=None,
                approval_threshold_millicredits=None,
                frozen=False,
            )
    stranger = await harness.user("other@example.com")
    with pytest.raises(NotFound):
        await set_controls(
            harness.context,
            stranger,
            buyer.agent_id,
            daily_limit_millicredits=None,
            contract_limit_millicredits=None,
            approval_threshold_millicredits=None,
            frozen=True,
        )
    await harness.check_invariants()


async def test_approving_in_the_browser_needs_the_forms_token(harness, browser):
    await shop(harness)
    await browser.sign_up("approver@example.com")
    user = await harness.user_named("approver@example.com")
    buyer = await harness.linked_agent(user)
    await harness.mint(buyer.agent_id, GRANT)
    await browser.get("/agents")
    saved = await browser.post(
        f"/agents/{buyer.agent_id}/controls", approval_threshold="1", daily_limit="50"
    )
    assert saved.status_code == 303
    quote = await a_quote(buyer)
    with pytest.raises(ExchangeError) as waiting:
        await buyer.hire(quote, {"text": "x"})
    contract_id = waiting.value.contract_id
    page = await browser.get("/approvals")
    assert contract_id in page.text
    forged = await browser.client.post(f"/approvals/{contract_id}/approve", data={})
    assert forged.status_code == 403
    approved = await browser.post(f"/approvals/{contract_id}/approve")
    assert approved.status_code == 303
    await buyer.hire(quote, {"text": "x"})
    await harness.check_invariants()


async def test_a_freeze_stops_direct_payments_too(harness):
    user, payer = await buyer_with_controls(harness, frozen=True)
    payee = await harness.agent()
    await harness.mint(payee.agent_id, CREDIT)  # the payee has a wallet
    with pytest.raises(ExchangeError) as refused:
        await payer.transfer(payee.agent_id, CREDIT, transfer_id="frozen-pay")
    assert refused.value.code == "agent_frozen"
    assert await available(harness, payer.agent_id) == GRANT
    await set_controls(
        harness.context,
        user,
        payer.agent_id,
        daily_limit_millicredits=None,
        contract_limit_millicredits=None,
        approval_threshold_millicredits=None,
        frozen=False,
    )
    paid = await payer.transfer(payee.agent_id, CREDIT, transfer_id="frozen-pay")
    assert paid.transfer_id == "frozen-pay"
    assert await available(harness, payer.agent_id) == GRANT - CREDIT
    await harness.check_invariants()
