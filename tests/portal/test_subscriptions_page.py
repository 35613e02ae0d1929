"""The subscriptions page: what a human's agents buy and sell by subscription, and a cancel.

Over real HTTP with a real exchange worker: a provider agent lists a
capability and publishes a plan, an agent linked to the signed-up human
subscribes (the exchange charges the first period), and the page shows it
in words (price in credits and dollars, the period, the state, paid until,
what was charged). The human's cancel (a form with the CSRF token) only
marks the subscription; the test runs the worker's sweep, which applies
it, and asks the exchange as the agent would. A past-due subscription shows
why its renewal failed and ends at once when cancelled. A stranger's cancel
answers 404 and a cancel without the token 403, and neither changes
anything; a human without subscriptions is told so. The pure wording
(periods, amounts) is checked directly, and headless Chromium proves the
page fits a 390 px screen without scrolling sideways. Money tests end with
the ledger invariants.
"""

from __future__ import annotations

import httpx
import pytest

from agent_client.protocol import SubscriptionState
from agent_client.signing import SystemClock
from human_portal.subscription_reports import credits_and_dollars, period_in_words
from human_portal.web.common import time_text
from tests.portal.chromium_pages import CHROMIUM, chromium_page, sign_up_in_page
from tests.portal.conftest import PASSWORD, Browser
from tests.portal.money_helpers import available

CREDIT = 1_000
PRICE = 1_000  # millicredits a period: 1 credit, $0.10
PERIOD_S = 3_600
FEE_BPS = 500  # the seeds' subscription fee
CAPABILITY = "text.upper"


class _Shifted:
    """The real time, moved ahead: the worker's clock while its timers run."""

    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.shift_ms


async def sweep_at(harness, at_ms: int) -> int:
    """Runs the worker's subscription timers as if at ``at_ms``, then gives its clock back.

    Only the timers see the later time: the agents' requests and the
    exchange's answers stay signed with the real one.
    """
    context = harness.worker.context
    real = context.clock
    context.clock = _Shifted(max(0, at_ms - SystemClock().now_ms() + 1))
    try:
        return await harness.worker.subscriptions.sweep()
    finally:
        context.clock = real


async def shop_with_plan(harness, *, period_s: int = PERIOD_S):
    provider = await harness.agent()
    await provider.advertise(CAPABILITY, description="Upper-cases text", price_millicredits=PRICE)
    plan = await provider.publish_plan(
        CAPABILITY, "monthly", price_millicredits=PRICE, period_s=period_s
    )
    return provider, plan


async def subscribed_human(harness, browser, email: str, *, credits: int = 5):
    """A signed-up human (in ``browser``) whose agent "reader" subscribed to a plan."""
    await browser.sign_up(email)
    user = await harness.user_named(email)
    buyer = await harness.linked_agent(user, label="reader")
    await harness.mint(buyer.agent_id, credits * CREDIT)
    provider, plan = await shop_with_plan(harness)
    subscription = await buyer.subscribe(plan)
    assert subscription.state is SubscriptionState.ACTIVE
    return buyer, provider, subscription


def bought_table(page: httpx.Response) -> str:
    return page.text.split('id="bought"')[1].split("</table>")[0]


def cancel_action(subscription_id: str) -> str:
    return f'action="/subscriptions/{subscription_id}/cancel"'


async def test_the_page_shows_a_subscription_and_a_cancel_ends_it_at_the_period_end(
    harness, browser
):
    buyer, provider, subscription = await subscribed_human(harness, browser, "reader@example.com")
    sid = subscription.subscription_id

    page = await browser.get("/subscriptions")
    assert page.status_code == 200
    row = bought_table(page)
    for shown in (
        "reader",
        "monthly",
        CAPABILITY,
        "1 credit ($0.10)",
        "every hour",
        ">active<",
        time_text(subscription.period_ends_at_ms),
        "1 period · 1 credit ($0.10)",
        cancel_action(sid),
    ):
        assert shown in row, shown
    assert "None of your agents sells a subscription." in page.text

    cancelled = await browser.post(f"/subscriptions/{sid}/cancel")
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/subscriptions?notice=cancelled&subscription={sid}"
    confirmed = await browser.get(cancelled.headers["location"])
    until = time_text(subscription.period_ends_at_ms)
    assert f"Cancelled: monthly stays paid until {until} and ends then" in confirmed.text
    assert cancel_action(sid) not in confirmed.text  # asked once is enough

    # The worker sweeps every second anyway; this sweep makes the test wait for it.
    await harness.worker.subscriptions.sweep()
    view = await buyer.subscription(sid)
    assert view.state is SubscriptionState.CANCELLING and view.cancel_at_period_end
    assert (view.periods_charged, view.period_ends_at_ms) == (1, subscription.period_ends_at_ms)
    after = bought_table(await browser.get("/subscriptions"))
    assert "cancels at period end" in after and cancel_action(sid) not in after

    # The first period stays paid; nothing more moved.
    assert await available(harness, buyer.agent_id) == 5 * CREDIT - PRICE
    assert await available(harness, provider.agent_id) == PRICE - PRICE * FEE_BPS // 10_000
    await harness.check_invariants()


async def test_the_providers_human_sees_what_their_agent_sells_without_a_cancel(harness, browser):
    await browser.sign_up("seller@example.com")
    seller = await harness.user_named("seller@example.com")
    provider = await harness.linked_agent(seller, label="shop")
    await provider.advertise(CAPABILITY, description="Upper-cases text", price_millicredits=PRICE)
    plan = await provider.publish_plan(
        CAPABILITY, "daily", price_millicredits=PRICE, period_s=30 * 86_400
    )
    buyer = await harness.agent()
    await harness.mint(buyer.agent_id, 2 * CREDIT)
    subscription = await buyer.subscribe(plan)

    page = await browser.get("/subscriptions")
    sold = page.text.split('id="sold"')[1].split("</table>")[0]
    assert "shop" in sold and "daily" in sold and "every 30 days" in sold
    assert "None of your agents subscribes to anything." in page.text
    assert cancel_action(subscription.subscription_id) not in page.text
    # The seller's human is not the buyer's: the exchange's own cancel is the provider's way.
    refused = await browser.post(f"/subscriptions/{subscription.subscription_id}/cancel")
    assert refused.status_code == 404
    await harness.worker.subscriptions.sweep()
    view = await buyer.subscription(subscription.subscription_id)
    assert view.state is SubscriptionState.ACTIVE and not view.cancel_at_period_end
    await harness.check_invariants()


async def test_a_strangers_cancel_and_a_cancel_without_the_token_change_nothing(harness, browser):
    buyer, _provider, subscription = await subscribed_human(harness, browser, "owner@example.com")
    sid = subscription.subscription_id

    without_token = await browser.client.post(f"/subscriptions/{sid}/cancel", data={})
    assert without_token.status_code == 403
    stale_token = await browser.client.post(
        f"/subscriptions/{sid}/cancel", data={"csrf_token": "x" * 43}
    )
    assert stale_token.status_code == 403

    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        stranger = Browser(client)
        await stranger.sign_up("stranger@example.com")
        page = await stranger.get("/subscriptions")
        assert "None of your agents subscribes to anything." in page.text
        assert "None of your agents sells a subscription." in page.text
        assert sid not in page.text
        refused = await stranger.post(f"/subscriptions/{sid}/cancel")
        assert refused.status_code == 404
        assert (await stranger.post("/subscriptions/sub_nonesuch/cancel")).status_code == 404
        too_long = await stranger.post(f"/subscriptions/{'s' * 500}/cancel")
        assert too_long.status_code == 404

    await harness.worker.subscriptions.sweep()
    view = await buyer.subscription(sid)
    assert view.state is SubscriptionState.ACTIVE and not view.cancel_at_period_end
    assert cancel_action(sid) in bought_table(await browser.get("/subscriptions"))
    await harness.check_invariants()


async def test_a_past_due_subscription_shows_why_and_a_cancel_ends_it_at_once(harness, browser):
    # One period's credits: the renewal at the period's end is refused.
    buyer, _provider, subscription = await subscribed_human(
        harness, browser, "late@example.com", credits=1
    )
    sid = subscription.subscription_id
    # The worker's own sweep may run the renewal first, with the same result.
    await sweep_at(harness, subscription.period_ends_at_ms)
    view = await buyer.subscription(sid)
    assert view.state is SubscriptionState.PAST_DUE and view.failure

    row = bought_table(await browser.get("/subscriptions"))
    assert "payment failed, retrying" in row and "insufficient_funds" in row
    assert "access until " + time_text(view.grace_ends_at_ms) in row
    cancelled = await browser.post(f"/subscriptions/{sid}/cancel")
    confirmed = await browser.get(cancelled.headers["location"])
    # Worded from the state as it stands: the worker may already have ended it.
    notice = confirmed.text.split('class="notice"')[1].split("</p>")[0]
    assert (
        "Cancelled: monthly ends within seconds, since its last renewal is unpaid" in notice
        or "Cancelled: monthly has ended" in notice
    )

    await harness.worker.subscriptions.sweep()
    ended = await buyer.subscription(sid)
    assert ended.state is SubscriptionState.ENDED and ended.periods_charged == 1
    assert ">ended<" in bought_table(await browser.get("/subscriptions"))
    assert await available(harness, buyer.agent_id) == 0
    await harness.check_invariants()


async def test_the_page_of_a_human_without_subscriptions_says_so(harness, browser):
    await browser.sign_up("newcomer@example.com")
    user = await harness.user_named("newcomer@example.com")
    await harness.linked_agent(user, label="idle")
    page = await browser.get("/subscriptions")
    assert page.status_code == 200
    assert "None of your agents subscribes to anything." in page.text
    assert "None of your agents sells a subscription." in page.text
    assert "More not shown" not in page.text
    assert '<a href="/subscriptions">Subscriptions</a>' in page.text


async def test_the_page_needs_a_session(harness):
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        page = await client.get("/subscriptions")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/subscriptions"


@pytest.mark.parametrize(
    ("period_s", "words"),
    [
        (1, "every second"),
        (90, "every 90 seconds"),
        (60, "every minute"),
        (3_600, "every hour"),
        (7_200, "every 2 hours"),
        (86_400, "every day"),
        (30 * 86_400, "every 30 days"),
        (86_400 + 3_600, "every 25 hours"),
    ],
)
def test_a_period_is_said_in_its_largest_exact_unit(period_s, words):
    assert period_in_words(period_s) == words


@pytest.mark.parametrize(
    ("amount_millicredits", "text"),
    [
        (0, "0 credits ($0.00)"),
        (1_000, "1 credit ($0.10)"),
        (12_500, "12.5 credits ($1.25)"),
        (1_234_000, "1,234 credits ($123.40)"),
        (1, "0.001 credits (≈$0.00)"),
        (1_050, "1.05 credits (≈$0.11)"),
    ],
)
def test_an_amount_is_said_in_credits_and_dollars(amount_millicredits, text):
    assert credits_and_dollars(amount_millicredits) == text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
async def test_the_page_fits_a_390_px_screen(harness, tmp_path):
    email = "phone@example.com"
    async with chromium_page(tmp_path / "chromium-profile", width=390, height=844) as (_, page):
        await sign_up_in_page(page, harness.url, email, PASSWORD)
        user = await harness.user_named(email)
        buyer = await harness.linked_agent(user, label="a rather long agent label")
        await harness.mint(buyer.agent_id, 3 * CREDIT)
        _provider, plan = await shop_with_plan(harness)
        await buyer.subscribe(plan)

        await page.goto(f"{harness.url}/subscriptions")
        await page.wait_for_selector("#bought button")
        widths = await page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        await page.screenshot(path=str(tmp_path / "subscriptions-390.png"), full_page=True)
        assert widths[0] <= widths[1], widths
        await page.click("#bought button")
        await page.wait_for_selector(".notice")
        assert "stays paid until" in await page.inner_text(".notice")
    await harness.check_invariants()
