"""The whole human flow in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A person signs up, asks for a link code, links an agent whose key the test
holds (the agent signs the code over NATS), tops up through the Stripe.js
page against localstripe (a 3-D Secure card: Stripe.js's authentication
dialog is clicked through), sees the credits arrive once localstripe's
signed webhook reaches the portal, sets a budget, and sees the agent's
contract on the dashboard. Every request the page makes stays on loopback
(no CDN). A screenshot of the dashboard is written for a human to look at
(``AGENTX_SCREENSHOT_DIR``, else the test's temporary directory).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agent_client import AgentKeys, QuoteRequest
from tests.portal.chromium_pages import CHROMIUM, chromium_page
from tests.portal.conftest import PASSWORD
from tests.portal.money_helpers import available

CREDIT = 1_000
PRICE = 3 * CREDIT
THREE_D_SECURE_CARD = "4000002500003155"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (tests/run.sh installs it)"
)


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def test_a_human_signs_up_links_an_agent_tops_up_sets_a_budget_and_sees_a_contract(
    harness, tmp_path
):
    agent_keys = AgentKeys.generate()
    hosts: set[str] = set()
    async with chromium_page(tmp_path / "chromium-profile", width=1280, height=900) as (_, page):
        page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        # Sign up.
        await page.goto(f"{harness.url}/sign-up")
        await page.fill("input[name=email]", "person@example.com")
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=password_again]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{harness.url}/dashboard")

        # Link an agent: the page shows a code, the agent signs it.
        await page.goto(f"{harness.url}/agents")
        await page.fill("input[name=label]", "browser bot")
        await page.click("text=Show a link code")
        code = (await page.inner_text("#link-code")).strip()
        agent = await harness.agent(agent_keys)
        await agent.link_human(code)
        await page.goto(f"{harness.url}/agents")
        assert "browser bot" in await page.inner_text("main")

        # Top up through Stripe.js (localstripe's) with a 3-D Secure card.
        await page.goto(f"{harness.url}/top-up")
        await page.check("input[name=package][value=builder]")
        await page.click("text=Continue to payment")
        await page.wait_for_selector("#card-element input[placeholder=number]")
        await page.fill("#card-element input[placeholder=number]", THREE_D_SECURE_CARD)
        await page.fill("#card-element input[placeholder=exp_month]", "12")
        await page.fill("#card-element input[placeholder=exp_year]", "34")
        await page.fill("#card-element input[placeholder=cvc]", "123")
        await page.fill("#card-element input[placeholder=postal_code]", "42424")
        await page.click("#pay-button")
        await page.click("text=Complete authentication")
        await page.wait_for_selector("text=Paid: the credits have arrived.")
        assert await available(harness, agent.agent_id) == 550 * CREDIT

        # The dashboard shows them.
        await page.goto(f"{harness.url}/dashboard")
        balance = page.locator(f'.tile-value[data-balance="{agent.agent_id}"]')
        assert (await balance.inner_text()).strip() == "550"

        # Set a budget.
        await page.goto(f"{harness.url}/agents")
        await page.fill("input[name=daily_limit]", "20")
        await page.fill("input[name=contract_limit]", "5")
        await page.click("text=Save budget")
        await page.wait_for_selector("text=Budget saved")

        # The agent hires within its budget; the contract shows up.
        provider = await harness.agent()
        await provider.advertise("text.upper", description="Shouts", price_millicredits=PRICE)
        await provider.serve("text.upper", upper, pricing=PRICE)
        [quote] = await agent.request_quotes(
            QuoteRequest(
                "text.upper",
                "shout",
                budget_millicredits=10 * CREDIT,
                timeout_s=2,
                quotes_max=1,
            )
        )
        contract = await agent.hire(quote, {"text": "hello from the browser test"})
        await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
        await page.goto(f"{harness.url}/dashboard")
        row = page.locator(f'tr[data-contract="{contract.contract_id}"]')
        assert "released" in await row.inner_text()
        assert (await balance.inner_text()).strip() == "547"
        screenshot_dir = Path(os.environ.get("AGENTX_SCREENSHOT_DIR", tmp_path))
        await asyncio.to_thread(screenshot_dir.mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(screenshot_dir / "dashboard.png"), full_page=True)
        assert errors == []
    assert hosts <= {"127.0.0.1"}, f"the page reached beyond loopback: {hosts}"
    await harness.check_invariants()
