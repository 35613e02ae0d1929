"""What humans and operators see: the dashboard, history with filters and CSV, operator pages.

Over real HTTP with a real exchange: proves that the dashboard shows each
agent's available and held credits, its contracts with their states, the
spending chart (server-side SVG, no script) and waiting approvals; that the
history filters and its CSV export carry exact amounts and defuse
spreadsheet formulas; and that the operator page shows revenue by fee type,
freezes and unfreezes agents, refunds a top-up, lists a disputed contract
with its evidence and resolves it through the exchange.
"""

from __future__ import annotations

import contextlib
import csv
import io

import httpx

from agent_client import QuoteRequest
from human_portal.linking import issue_link_code
from tests.portal.conftest import OPERATOR_EMAIL, Browser
from tests.portal.money_helpers import available

CREDIT = 1_000
PRICE = 2 * CREDIT


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def deal(harness, buyer, *, accept=True):
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Upper-cases text", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    [quote] = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=5 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    contract = await buyer.hire(quote, {"text": "hello"})
    delivery = await contract.wait_delivery(timeout_s=10)
    if accept:
        await contract.accept_delivery(delivery)
    return contract


async def test_the_dashboard_shows_balances_contracts_chart_and_approvals(harness, browser):
    await browser.sign_up("watcher@example.com")
    user = await harness.user_named("watcher@example.com")
    buyer = await harness.linked_agent(user, label="shopper")
    await harness.paid_top_up(user, buyer.agent_id)
    settled = await deal(harness, buyer)
    held = await deal(harness, buyer, accept=False)
    page = await browser.get("/dashboard")
    assert page.status_code == 200
    assert "shopper" in page.text
    expected = f'data-balance="{buyer.agent_id}">{(100 * CREDIT - 2 * PRICE) // CREDIT}<'
    assert expected in page.text
    assert f"{PRICE // CREDIT} held" in page.text
    assert f'data-contract="{settled.contract_id}"' in page.text
    assert f'data-contract="{held.contract_id}"' in page.text
    assert '<span class="state released">released</span>' in page.text
    assert '<span class="state delivered">delivered</span>' in page.text
    assert '<svg class="chart"' in page.text and "credits spent" in page.text
    await harness.check_invariants()


async def test_history_filters_and_exports_exact_csv_with_formulas_defused(harness, browser):
    await browser.sign_up("exporter@example.com")
    user = await harness.user_named("exporter@example.com")
    agent = await harness.agent()
    issued = await issue_link_code(harness.context, user, label='=HYPERLINK("http://x")')
    await agent.link_human(issued.code)
    await harness.paid_top_up(user, agent.agent_id)
    await deal(harness, agent)
    page = await browser.get("/transactions?kind=mint")
    assert "mint" in page.text and "escrow_lock" not in page.text.split("<tbody>")[1]
    exported = await browser.client.get("/transactions.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    kinds = {row["kind"] for row in rows}
    assert {"mint", "escrow_lock", "escrow_release"} <= kinds
    [mint] = [row for row in rows if row["kind"] == "mint"]
    assert (mint["amount_millicredits"], mint["amount_credits"], mint["direction"]) == (
        "100000",
        "100",
        "in",
    )
    assert all(row["agent_label"].startswith("'=") for row in rows)
    only_out = list(
        csv.DictReader(
            io.StringIO((await browser.client.get("/transactions.csv?direction=out")).text)
        )
    )
    assert only_out and {row["direction"] for row in only_out} == {"out"}
    bad = await browser.client.get("/transactions?kind=everything")
    assert bad.status_code == 422
    await harness.check_invariants()


@contextlib.asynccontextmanager
async def operator_browser(harness):
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        operator = Browser(client)
        await operator.sign_up(OPERATOR_EMAIL)
        yield operator


async def test_the_operator_page_shows_revenue_and_freezes_and_refunds(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    top_up = await harness.paid_top_up(user, agent.agent_id)
    async with operator_browser(harness) as operator:
        page = await operator.get("/operator")
        assert "Purchase fees" in page.text and "$0.30" in page.text
        frozen = await operator.post(
            "/operator/freeze", agent_id=agent.agent_id, reason="fraud check"
        )
        assert frozen.status_code == 303
        page = await operator.get("/operator")
        assert "fraud check" in page.text
        assert (
            await operator.post(f"/operator/agents/{agent.agent_id}/unfreeze")
        ).status_code == 303
        refunded = await operator.post(
            f"/operator/top-ups/{top_up.topup_id}/refund", amount="10.30"
        )
        assert refunded.status_code == 303
        page = await operator.get("/operator")
        assert "freeze" in page.text and "unfreeze" in page.text and "refund" in page.text
    assert await available(harness, agent.agent_id) == 0
    await harness.check_invariants()


async def test_an_operator_sees_a_dispute_with_its_evidence_and_resolves_it(harness):
    user = await harness.user()
    buyer = await harness.linked_agent(user)
    await harness.mint(buyer.agent_id, 10 * CREDIT)
    contract = await deal(harness, buyer, accept=False)
    await buyer.reject_delivery(contract.contract_id, reason="the result shouts too loudly")
    async with operator_browser(harness) as operator:
        page = await operator.get("/operator")
        assert f'id="dispute-{contract.contract_id}"' in page.text
        assert "the result shouts too loudly" in page.text and "HELLO" in page.text
        resolved = await operator.post(
            f"/operator/disputes/{contract.contract_id}/resolve",
            provider_share_percent="50",
            note="split",
        )
        assert resolved.status_code == 303, resolved.text
    view = await buyer.contract(contract.contract_id)
    assert view.state == "resolved"
    assert await available(harness, buyer.agent_id) == 10 * CREDIT - PRICE // 2
    await harness.check_invariants()


async def test_an_operator_deactivates_and_reactivates_a_providers_listing(harness):
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Upper-cases text", price_millicredits=PRICE)
    async with operator_browser(harness) as operator:
        page = await operator.get("/operator")
        assert 'id="listings"' in page.text
        changed = await operator.post(
            "/operator/listings/status",
            provider_id=provider.agent_id,
            capability="text.upper",
            action="deactivate",
        )
        assert changed.status_code == 303, changed.text
        assert "listing+inactive" in changed.headers["location"]
        assert (await provider.search(capability="text.upper")).listings == []
        bad = await operator.post(
            "/operator/listings/status",
            provider_id="not-an-agent",
            capability="text.upper",
            action="deactivate",
        )
        # Bad form input: the operator page again (400), the typed id kept, nothing changed.
        assert bad.status_code == 400
        assert 'value="not-an-agent"' in bad.text and 'class="field-error"' in bad.text
        restored = await operator.post(
            "/operator/listings/status",
            provider_id=provider.agent_id,
            capability="text.upper",
            action="reactivate",
        )
        assert restored.status_code == 303, restored.text
    [listing] = (await provider.search(capability="text.upper")).listings
    assert listing.provider_id == provider.agent_id


async def test_an_operator_sets_fees_and_the_top_up_page_shows_them_before_payment(harness):
    async with operator_browser(harness) as operator:
        page = await operator.get("/operator")
        assert 'id="fees"' in page.text and "3.00 % (300 bps)" in page.text
        changed = await operator.post("/operator/fees", kind="purchase", rate_bps="500")
        assert changed.status_code == 303, changed.text
        commission = await operator.post(
            "/operator/fees", kind="category", category="hosted_app", rate_bps="1500"
        )
        assert commission.status_code == 303, commission.text
        bad = await operator.post("/operator/fees", kind="tips", rate_bps="5")
        assert bad.status_code == 400
        too_high = await operator.post("/operator/fees", kind="escrow", rate_bps="10001")
        assert too_high.status_code == 400
        assert "Enter whole basis points from 0 to 10000." in too_high.text
        page = await operator.get("/operator")
        assert "5.00 % (500 bps)" in page.text and "category hosted_app" in page.text
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        browser = Browser(client)
        await browser.sign_up("payer@example.com")
        await harness.linked_agent(await harness.user_named("payer@example.com"))
        await browser.get("/dashboard")
        not_an_operator = await browser.post("/operator/fees", kind="purchase", rate_bps="0")
        assert not_an_operator.status_code == 403
        form = await browser.get("/top-up")
        # $10.00 with a 5 % purchase fee: $0.50, before anything is paid.
        assert "a 5.0 % purchase fee is added" in form.text
        assert "$0.50 fee" in form.text
    # Agents read the same table from the exchange.
    shown = await (await harness.agent()).fees()
    assert shown.rates["purchase"] == 500 and shown.categories == {"hosted_app": 1500}
    await harness.check_invariants()


async def test_a_human_sees_what_its_provider_agents_earned_with_a_chart_and_csv(harness, browser):
    await browser.sign_up("seller@example.com")
    user = await harness.user_named("seller@example.com")
    seller = await harness.linked_agent(user, label='=cmd|"/c calc"')
    await seller.advertise("text.upper", description="Upper-cases text", price_millicredits=PRICE)
    await seller.serve("text.upper", upper, pricing=PRICE)
    buyer = await harness.agent()
    await harness.mint(buyer.agent_id, 10 * CREDIT)
    [quote] = await buyer.request_quotes(
        QuoteRequest("text.upper", "shout", budget_millicredits=PRICE, timeout_s=2, quotes_max=1)
    )
    contract = await buyer.hire(quote, {"text": "hello"})
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    net = PRICE - PRICE * 500 // 10_000

    page = await browser.get("/analytics")
    assert page.status_code == 200
    table = page.text.split('id="listings"')[1]
    assert "text.upper" in table and ">1<" in table
    assert '<svg class="chart"' in page.text and "credits earned" in page.text
    exported = await browser.client.get("/analytics.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["capability"], row["contracts"], row["revenue_net_millicredits"]) == (
        "text.upper",
        "1",
        str(net),
    )
    assert row["agent_label"].startswith("'=")  # a formula is defused
    assert row["delivery_p50_ms"] != ""
    # Another human sees nothing of it.
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        other = Browser(client)
        await other.sign_up("other@example.com")
        assert "None of your agents has sold anything" in (await other.get("/analytics")).text
    await harness.check_invariants()
