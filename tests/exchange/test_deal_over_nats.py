"""One complete deal between two agents over a real nats-server, settled in escrow.

Proves the happy path end to end on SQLite and PostgreSQL: advertise, RFQ,
signed quote, acceptance, escrow hold, delivery with hash, release with the
5 % fee, notices to both sides, balances and transaction history, and the
ledger invariants at the end. Also proves catalog search and that a
provider's deliveries and the buyer's view agree.
"""

from __future__ import annotations

import pytest

from agent_client import Agent, QuoteRequest

GRANT_MILLICREDITS = 100_000
PRICE_MILLICREDITS = 2_000
FEE_MILLICREDITS = PRICE_MILLICREDITS * 500 // 10_000


async def upper(task):
    return {"text": task["text"].upper()}


async def open_shop(
    exchange, *, price=PRICE_MILLICREDITS, capability="text.upper", description="Upper-cases text"
) -> Agent:
    provider = await exchange.agent()
    await provider.advertise(capability, description=description, price_millicredits=price)
    await provider.serve(capability, upper, pricing=price)
    return provider


async def test_a_deal_settles_with_the_fee_split_and_balanced_books(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)

    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "shout", budget_millicredits=5_000, timeout_s=2, quotes_max=1)
    )
    assert [quote.provider_id for quote in quotes] == [provider.agent_id]
    contract = await buyer.hire(quotes[0], {"text": "hello"})
    assert contract.record.buyer_id == buyer.agent_id
    assert contract.record.fee_millicredits == FEE_MILLICREDITS

    held = await buyer.balance()
    assert held.held_millicredits == PRICE_MILLICREDITS
    assert held.available_millicredits == GRANT_MILLICREDITS - PRICE_MILLICREDITS

    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": "HELLO"}
    view = await contract.accept_delivery(delivery)
    assert view.state == "released"
    released = await provider.wait_settled(contract.contract_id, timeout_s=10)
    assert released.state == "released"
    assert released.net_millicredits == PRICE_MILLICREDITS - FEE_MILLICREDITS

    buyer_balance, provider_balance = await buyer.balance(), await provider.balance()
    assert buyer_balance.available_millicredits == GRANT_MILLICREDITS - PRICE_MILLICREDITS
    assert buyer_balance.held_millicredits == 0
    assert provider_balance.available_millicredits == PRICE_MILLICREDITS - FEE_MILLICREDITS
    await exchange.check_invariants()


async def test_transaction_history_shows_the_grant_hold_and_payout(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "a"})
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))

    buyer_codes = {(entry.code, entry.direction) for entry in await buyer.transactions()}
    assert ("mint", "in") in buyer_codes
    assert ("escrow_lock", "out") in buyer_codes
    provider_entries = await provider.transactions()
    assert [(entry.code, entry.amount_millicredits) for entry in provider_entries] == [
        ("escrow_release", PRICE_MILLICREDITS - FEE_MILLICREDITS)
    ]
    assert provider_entries[0].reference == contract.contract_id
    await exchange.check_invariants()


async def test_the_buyer_hires_the_cheapest_of_several_quotes(exchange):
    await open_shop(exchange, price=3_000)
    cheap = await open_shop(exchange, price=1_000)
    await open_shop(exchange, price=9_000)  # over the budget: declines
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)

    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, timeout_s=1)
    )
    assert [quote.price_millicredits for quote in quotes] == [1_000, 3_000]
    contract = await buyer.hire(quotes[0], {"text": "a"})
    assert contract.record.provider_id == cheap.agent_id
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    await exchange.check_invariants()


async def test_catalog_search_finds_active_listings_cheapest_first(exchange):
    first = await open_shop(exchange, price=3_000)
    second = await open_shop(exchange, price=1_000)
    await open_shop(exchange, price=500, capability="text.reverse", description="Reverses text")
    hidden = await exchange.agent()
    await hidden.advertise(
        "text.upper", description="retired", price_millicredits=100, active=False
    )

    page = await first.search(capability="text.upper")
    assert [listing.provider_id for listing in page.listings] == [second.agent_id, first.agent_id]
    assert not page.has_more
    cheap = await first.search(price_max_millicredits=1_000)
    assert {listing.price_millicredits for listing in cheap.listings} == {500, 1_000}
    by_text = await first.search(text="UPPER-cases")
    assert len(by_text.listings) == 2
    paged = await first.search(limit=1)
    assert len(paged.listings) == 1 and paged.has_more


@pytest.mark.parametrize("deals", [5])
async def test_many_deals_in_parallel_keep_the_books_balanced(exchange, deals):
    import asyncio

    await open_shop(exchange)
    buyers = [await exchange.funded_agent(GRANT_MILLICREDITS) for _ in range(deals)]

    async def deal(buyer):
        quotes = await buyer.request_quotes(
            QuoteRequest("text.upper", "x", budget_millicredits=5_000, quotes_max=1)
        )
        contract = await buyer.hire(quotes[0], {"text": "a"})
        return await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))

    views = await asyncio.gather(*(deal(buyer) for buyer in buyers))
    assert {view.state for view in views} == {"released"}
    await exchange.check_invariants()
