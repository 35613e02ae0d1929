"""The dashboard's headline and its recent contracts, checked against the ledger and the exchange.

A human with two linked agents ("buyer" and "seller") watches them deal
through a real exchange: the buyer buys from its sibling (released) and
from a stranger (delivered, still held), and a stranger buys from the
seller. Proves that the headline's total available credits, their dollar
value and the total held equal the ledger's balances; that the buyer's
"spent today of the daily limit" is the exchange's own figure (the one its
daily limit is enforced against, ``spent_since_us`` from midnight UTC);
that the controls read in words; and that the recent contracts name the
user's agent, say "bought" or "sold", name a sibling by its label and a
stranger by a short id with the full id as its title. On SQLite, and
PostgreSQL when AGENTX_TEST_POSTGRES_URL is set; invariants at the end.
"""

from __future__ import annotations

import html

from agent_client import QuoteRequest
from exchange.domain.spending_rules import start_of_day_ms
from exchange.use_cases.spending import spent_since_us
from human_portal.controls import set_controls
from human_portal.headline import load_headline
from human_portal.ledger_accounts import agent_account_id
from human_portal.money_rules import format_cents, format_millicredits
from tests.portal.money_helpers import available

CREDIT = 1_000
PRICE = 3 * CREDIT


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def serve(agent, capability):
    await agent.advertise(capability, description="Changes case", price_millicredits=PRICE)
    await agent.serve(capability, upper, pricing=PRICE)


async def hire(buyer, capability, *, accept):
    [quote] = await buyer.request_quotes(
        QuoteRequest(capability, "case", budget_millicredits=10 * CREDIT, timeout_s=2, quotes_max=1)
    )
    contract = await buyer.hire(quote, {"text": "hello"})
    delivery = await contract.wait_delivery(timeout_s=10)
    if accept:
        await contract.accept_delivery(delivery)
    return contract


async def exchange_spent_today(harness, agent_id):
    since_us = start_of_day_ms(harness.context.now_ms()) * 1000
    return await harness.context.read(
        lambda connection: spent_since_us(
            connection, harness.context.ledger, agent_account_id(agent_id), since_us
        )
    )


async def held(harness, agent_id):
    account_id = agent_account_id(agent_id)
    return (await harness.context.ledger.lookup_accounts([account_id]))[account_id].held


async def test_the_headline_agrees_with_the_ledger_and_the_exchanges_daily_figure(harness, browser):
    await browser.sign_up("headline@example.com")
    user = await harness.user_named("headline@example.com")
    buyer = await harness.linked_agent(user, label="buyer")
    seller = await harness.linked_agent(user, label="seller")
    stranger = await harness.agent()
    await harness.mint(buyer.agent_id, 100 * CREDIT)
    await harness.mint(stranger.agent_id, 100 * CREDIT)
    await set_controls(
        harness.context,
        user,
        buyer.agent_id,
        daily_limit_millicredits=50 * CREDIT,
        contract_limit_millicredits=10 * CREDIT,
        approval_threshold_millicredits=None,
        frozen=False,
    )
    await serve(seller, "text.upper")
    await serve(stranger, "text.lower")
    from_sibling = await hire(buyer, "text.upper", accept=True)
    from_stranger = await hire(buyer, "text.lower", accept=False)
    to_stranger = await hire(stranger, "text.upper", accept=True)

    spent = await exchange_spent_today(harness, buyer.agent_id)
    assert spent == 2 * PRICE
    balances = [await available(harness, agent.agent_id) for agent in (buyer, seller)]
    total = sum(balances)
    total_held = await held(harness, buyer.agent_id) + await held(harness, seller.agent_id)
    assert total_held == PRICE
    now_ms = harness.context.now_ms()
    headline = await harness.context.read(
        lambda connection: load_headline(harness.context, connection, user.user_id, now_ms=now_ms)
    )
    assert (headline.available_millicredits, headline.held_millicredits) == (total, total_held)
    assert headline.available_cents == total // 100
    by_label = {agent.label: agent for agent in headline.agents}
    assert by_label["buyer"].spent_today_millicredits == spent
    assert by_label["seller"].spent_today_millicredits == 0

    page = await browser.get("/dashboard")
    text = html.unescape(page.text)
    assert f'data-total-available="{total}"' in text
    assert f"{format_millicredits(total)} credits" in text
    assert f'data-total-dollars="{total // 100}">{format_cents(total // 100)}<' in text
    assert f'data-total-held="{total_held}"' in text
    assert f'data-spent-today="{spent}"' in text
    assert f"Spent {format_millicredits(spent)} of 50 credits today" in text
    assert f'<meter min="0" max="{50 * CREDIT}" value="{spent}"' in text
    assert "At most 10 credits per contract" in text
    assert "Never asks for your approval" in text
    assert f'href="/agents#agent-{buyer.agent_id}"' in text

    rows = {
        contract.contract_id: html.unescape(
            page.text.split(f'data-contract="{contract.contract_id}"')[1].split("</tr>")[0]
        )
        for contract in (from_sibling, from_stranger, to_stranger)
    }
    short_stranger = f"{stranger.agent_id[:6]}…{stranger.agent_id[-4:]}"
    assert ">buyer<" in rows[from_sibling.contract_id]
    assert "bought text.upper from\n" in rows[from_sibling.contract_id]
    assert "seller" in rows[from_sibling.contract_id]
    assert "paid" in rows[from_sibling.contract_id]
    assert f'title="{stranger.agent_id}">{short_stranger}<' in rows[from_stranger.contract_id]
    assert "delivered, in review" in rows[from_stranger.contract_id]
    assert ">seller<" in rows[to_stranger.contract_id]
    assert "sold text.upper to" in rows[to_stranger.contract_id]
    assert 'href="/transactions">All contracts' in page.text
    await harness.check_invariants()
