"""Every portal page fits a phone (390x844) and a laptop (1366x800), in a real headless Chromium.

A person signs up in the browser (as the operator, so the operator page is
reachable too); the test then makes the data every page needs through the
real exchange and portal: two linked agents, credits, a released contract
(escrow and fee rows), a paid top-up, a contract waiting for approval, a
cash-out to a connected Stripe account, and an unpaid top-up for the payment
page. Each page is visited at both viewports; the test asserts that the
document is no wider than the window (no sideways scrolling), that a key
text shows, and, on the phone, that the compact menu opens and reaches a
page. A screenshot of each page per viewport is saved for a human to review
(``AGENTX_SCREENSHOT_DIR``, else a directory pytest keeps; its path is
printed).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import Page

from agent_client import ExchangeError, QuoteRequest
from human_portal.controls import set_controls
from human_portal.payouts import connect_onboarding_url, refresh_connect_status, request_cash_out
from tests.portal.chromium_pages import CHROMIUM, chromium_page
from tests.portal.conftest import OPERATOR_EMAIL, PASSWORD
from tests.portal.money_helpers import unpaid_top_up
from tests.portal.test_payouts import complete_onboarding

CREDIT = 1_000
PRICE = 3 * CREDIT
VIEWPORTS = {"laptop": (1366, 800), "phone": (390, 844)}
VISITOR_PAGES = {
    "/": "Fund your AI agents",
    "/sign-up": "Create account",
    "/sign-in": "Sign in",
    "/no-such-page": "There is no page at this address.",
}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (tests/run.sh installs it)"
)


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def hire_once(buyer) -> None:
    [quote] = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=10 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    contract = await buyer.hire(quote, {"text": "hello"})
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))


async def an_approval(harness, user, buyer) -> None:
    """The buyer asks for a contract above its threshold; the exchange holds it for the human."""
    await set_controls(
        harness.context,
        user,
        buyer.agent_id,
        daily_limit_millicredits=None,
        contract_limit_millicredits=None,
        approval_threshold_millicredits=CREDIT,
        frozen=False,
    )
    with pytest.raises(ExchangeError) as waiting:
        await hire_once(buyer)
    assert waiting.value.code == "pending_approval"


async def data_for_every_page(harness) -> str:
    """Fills the portal for the signed-up operator; returns the unpaid top-up's id."""
    user = await harness.user_named(OPERATOR_EMAIL)
    buyer = await harness.linked_agent(user, label="buyer bot")
    seller = await harness.linked_agent(user, label="seller bot")
    await harness.mint(buyer.agent_id, 1_000 * CREDIT)
    await seller.advertise("text.upper", description="Shouts", price_millicredits=PRICE)
    await seller.serve("text.upper", upper, pricing=PRICE)
    for _ in range(3):
        await hire_once(buyer)
    await harness.paid_top_up(user, buyer.agent_id)
    await complete_onboarding(await connect_onboarding_url(harness.context, user))
    assert await refresh_connect_status(harness.context, await harness.user_named(OPERATOR_EMAIL))
    user = await harness.user_named(OPERATOR_EMAIL)
    await request_cash_out(harness.context, user, buyer.agent_id, 100, requested_by="human")
    await an_approval(harness, user, buyer)
    unpaid = await unpaid_top_up(harness, user, buyer.agent_id)
    return unpaid.top_up.topup_id


def pages_and_key_texts(unpaid_topup_id: str) -> dict[str, str]:
    return {
        "/dashboard": "Spent and earned",
        "/agents": "buyer bot",
        "/top-up": "Continue to payment",
        f"/top-up/{unpaid_topup_id}": "Pay",
        "/approvals": "text.upper",
        "/notices": "asks to buy text.upper",
        "/transactions": "Bought text.upper from seller bot",
        "/analytics": "What your agents sell",
        "/subscriptions": "What your agents subscribe to",
        "/payouts": "Payouts",
        "/account": "API tokens",
        "/operator": "Audit log",
        "/api/v1/docs": "/api/v1/credits/balance",
        "/no-such-page": "There is no page at this address.",
    }


async def overflow_px(page: Page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


async def visit(page: Page, url: str, key_text: str, screenshot: Path) -> int:
    await page.goto(url)
    assert key_text in await page.inner_text("body"), f"{url} does not show {key_text!r}"
    await page.screenshot(path=str(screenshot), full_page=True)
    return await overflow_px(page)


async def sign_up(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/sign-up")
    await page.fill("input[name=email]", OPERATOR_EMAIL)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password_again]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/dashboard")


async def the_compact_menu_reaches_a_page(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/dashboard")
    transactions_link = page.locator("nav a[href='/transactions']")
    assert not await transactions_link.is_visible(), "the phone menu starts closed"
    await page.click(".menu-button")
    await transactions_link.click()
    await page.wait_for_url(f"{base_url}/transactions")


def screenshot_directory(tmp_path_factory) -> Path:
    configured = os.environ.get("AGENTX_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("viewports")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def test_every_page_fits_a_phone_and_a_laptop_without_sideways_scrolling(
    harness, tmp_path, tmp_path_factory
):
    screenshots = await asyncio.to_thread(screenshot_directory, tmp_path_factory)
    print(f"viewport screenshots: {screenshots}")
    overflows: dict[str, int] = {}
    async with chromium_page(tmp_path / "chromium-profile", width=1366, height=800) as (_, page):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        for name, (width, height) in VIEWPORTS.items():
            await page.set_viewport_size({"width": width, "height": height})
            for path, key_text in VISITOR_PAGES.items():
                shot = screenshots / f"{name}_visitor{path.replace('/', '_')}.png"
                overflows[f"{name} {path}"] = await visit(
                    page, f"{harness.url}{path}", key_text, shot
                )
        await sign_up(page, harness.url)
        unpaid_topup_id = await data_for_every_page(harness)
        for name, (width, height) in VIEWPORTS.items():
            await page.set_viewport_size({"width": width, "height": height})
            for path, key_text in pages_and_key_texts(unpaid_topup_id).items():
                slug = "_top-up_pay" if path.startswith("/top-up/") else path.replace("/", "_")
                overflows[f"{name} {path}"] = await visit(
                    page, f"{harness.url}{path}", key_text, screenshots / f"{name}{slug}.png"
                )
        print(f"overflow by page (px): {overflows}")
        await page.set_viewport_size({"width": 390, "height": 844})
        await the_compact_menu_reaches_a_page(page, harness.url)
        assert errors == []
    too_wide = {page_name: px for page_name, px in overflows.items() if px > 0}
    assert too_wide == {}, f"pages wider than the window (px): {too_wide}"
    await harness.check_invariants()


async def test_a_visitor_sees_a_landing_page_and_a_signed_in_human_the_dashboard(browser):
    landing = await browser.get("/")
    assert landing.status_code == 200
    assert "Fund your AI agents" in landing.text
    assert 'href="/sign-up"' in landing.text and 'href="/sign-in"' in landing.text
    await browser.sign_up("visitor@example.com")
    signed_in = await browser.client.get("/")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"


async def test_http_errors_are_the_portals_page_for_browsers_and_json_for_the_api(browser):
    missing_page = await browser.client.get("/no-such-page", headers={"accept": "text/html"})
    assert missing_page.status_code == 404
    assert missing_page.headers["content-type"].startswith("text/html")
    assert 'data-error-code="not_found"' in missing_page.text
    wrong_method = await browser.client.put("/dashboard", headers={"accept": "text/html"})
    assert wrong_method.status_code == 405
    assert 'data-error-code="method_not_allowed"' in wrong_method.text
    assert "allow" in wrong_method.headers
    missing_endpoint = await browser.client.get("/api/v1/no-such-endpoint")
    assert missing_endpoint.status_code == 404
    assert missing_endpoint.json() == {"detail": "Not Found"}
    asked_for_json = await browser.client.get(
        "/no-such-page", headers={"accept": "application/json"}
    )
    assert asked_for_json.status_code == 404 and asked_for_json.json() == {"detail": "Not Found"}


async def shown_after(page: Page, shot: Path) -> tuple[str, int]:
    await page.screenshot(path=str(shot), full_page=True)
    return await page.inner_text("main"), await overflow_px(page)


async def mistakes_and_confirmations(
    page: Page, base_url: str, agent_id: str, shots: Path, name: str
) -> dict[str, tuple[str, int]]:
    """Drives forms into their error or confirmation pages: key text → (text shown, overflow)."""
    await page.goto(f"{base_url}/agents")
    await page.fill(f"#agent-{agent_id} input[name=daily_limit]", "twenty")
    await page.fill(f"#agent-{agent_id} input[name=contract_limit]", "0")
    await page.click(f"#agent-{agent_id} >> text=Save budget")
    budget = await shown_after(page, shots / f"{name}_agents_budget_mistakes.png")
    await page.goto(f"{base_url}/top-up")
    await page.check("input[name=package][value=custom]")
    await page.fill("input[name=amount]", "2.50")
    await page.click("text=Continue to payment")
    top_up = await shown_after(page, shots / f"{name}_top-up_mistake.png")
    await page.goto(f"{base_url}/payouts")
    await page.fill("input[name=credits]", "100")
    await page.click("text=Cash out…")
    cash_out = await shown_after(page, shots / f"{name}_payouts_confirm.png")
    await page.goto(f"{base_url}/agents/{agent_id}/unlink")
    unlink = await shown_after(page, shots / f"{name}_agents_unlink_confirm.png")
    return {
        "Enter a number of credits like 12 or 12.5.": budget,
        "A custom top-up is between $5.00 and $1,000.00.": top_up,
        "You will receive $9.00 (fee $1.00) in your bank": cash_out,
        "you stop controlling its spending": unlink,
    }


async def test_form_mistakes_and_confirmations_fit_a_phone_and_a_laptop(
    harness, tmp_path, tmp_path_factory
):
    screenshots = await asyncio.to_thread(screenshot_directory, tmp_path_factory)
    overflows: dict[str, int] = {}
    async with chromium_page(tmp_path / "chromium-profile", width=1366, height=800) as (_, page):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await sign_up(page, harness.url)
        user = await harness.user_named(OPERATOR_EMAIL)
        seller = await harness.linked_agent(user, label="seller bot")
        await harness.mint(seller.agent_id, 1_000 * CREDIT)
        await complete_onboarding(await connect_onboarding_url(harness.context, user))
        assert await refresh_connect_status(
            harness.context, await harness.user_named(OPERATOR_EMAIL)
        )
        for name, (width, height) in VIEWPORTS.items():
            await page.set_viewport_size({"width": width, "height": height})
            shown = await mistakes_and_confirmations(
                page, harness.url, seller.agent_id, screenshots, name
            )
            for key_text, (text, overflow) in shown.items():
                assert key_text in text, f"{name}: {key_text!r} not shown"
                overflows[f"{name} {key_text}"] = overflow
        assert errors == []
    assert {page_name: px for page_name, px in overflows.items() if px > 0} == {}
    await harness.check_invariants()
