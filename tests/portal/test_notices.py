"""The notices: everything that needs the human, told in the portal, counted in the navigation.

With a real exchange over NATS and a real portal over HTTP (SQLite, and
PostgreSQL when AGENTX_TEST_POSTGRES_URL is set). Proves that a purchase the
controls refuse (a frozen agent hiring) is kept once however often the
agent retries, shows on /notices with the agent's label and the reason in
words, and counts as one unread notice in the navigation until the human
opens /notices; that a contract waiting for approval is a notice and the
Approvals count, and is not kept as a refusal; that an agent with less
than a credit gets a low-balance notice and a paid cash-out is told; and
that a refused digital good (outside contract groups) is kept too, its
refusal committed while the purchase is refused; and that the kept refusals
stay within their bounds (age and count per agent) on both databases.
Ledger and exchange invariants end every money test.
"""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from agent_client import ExchangeError, QuoteRequest
from exchange.domain.spending_rules import RefusalCause, SpendingRefusal, SpendingRequest
from exchange.errors import ErrorCode
from human_portal import limits
from human_portal.budgets import PortalSpendingControls
from human_portal.controls import decide_approval, set_controls
from human_portal.ledger_accounts import agent_account_id
from human_portal.notice_list import NoticeKind, notices_for_user
from human_portal.payouts import PayoutStatus, request_cash_out
from human_portal.portal_tables import spending_refusals
from tests.portal.money_helpers import available
from tests.portal.test_payouts import connected_owner

CREDIT = 1_000
PRICE = 3 * CREDIT
DAY_MS = 24 * 3600 * 1000


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def shop(harness):
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Upper-cases text", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    return provider


async def a_quote(buyer):
    [quote] = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=10 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    return quote


async def controls(harness, user, agent_id, **changes):
    values = {
        "daily_limit_millicredits": None,
        "contract_limit_millicredits": None,
        "approval_threshold_millicredits": None,
        "frozen": False,
        **changes,
    }
    await set_controls(harness.context, user, agent_id, **values)


async def refusal_rows(harness, agent_id):
    async def work(connection):
        found = await connection.execute(
            sa.select(spending_refusals).where(spending_refusals.c.agent_id == agent_id)
        )
        return [dict(row) for row in found.mappings()]

    return await harness.context.read(work)


def nav_count(page_text: str, name: str) -> str:
    found = re.search(rf'data-count="{name}"[^>]*>([^<]+)<', page_text)
    assert found is not None, f"no {name} count in the navigation"
    return found.group(1)


async def signed_up_owner(harness, browser, email):
    await browser.sign_up(email)
    user = await harness.user_named(email)
    buyer = await harness.linked_agent(user, label="buyer")
    await harness.mint(buyer.agent_id, 100 * CREDIT)
    return user, buyer


async def test_a_frozen_agents_refusal_is_told_once_and_counted_until_read(harness, browser):
    provider = await shop(harness)
    user, buyer = await signed_up_owner(harness, browser, "frozen@example.com")
    await controls(harness, user, buyer.agent_id, frozen=True)
    quote = await a_quote(buyer)
    for _ in range(3):
        with pytest.raises(ExchangeError) as refused:
            await buyer.hire(quote, {"text": "hi"})
        assert refused.value.code == "agent_frozen"
    [row] = await refusal_rows(harness, buyer.agent_id)
    assert (row["code"], row["capability"], row["provider_id"], row["price_millicredits"]) == (
        "agent_frozen",
        "text.upper",
        provider.agent_id,
        PRICE,
    )
    dashboard = await browser.get("/dashboard")
    assert nav_count(dashboard.text, "notices") == "1"
    assert nav_count(dashboard.text, "approvals") == "0"
    notices = await browser.get("/notices")
    text = html.unescape(notices.text)
    short_provider = f"{provider.agent_id[:6]}…{provider.agent_id[-4:]}"
    assert (
        f"Your agent 'buyer' tried to buy text.upper from {short_provider} for 3 credits; "
        "refused because you froze it." in text
    )
    assert f'href="/agents#agent-{buyer.agent_id}"' in text
    assert text.count('class="badge new"') == 1
    # The page that marks them read already counts none; so does the next one.
    assert nav_count(notices.text, "notices") == "0"
    assert nav_count((await browser.get("/dashboard")).text, "notices") == "0"
    assert 'class="badge new"' not in (await browser.get("/notices")).text
    assert await available(harness, buyer.agent_id) == 100 * CREDIT
    await harness.check_invariants()


async def test_an_approval_waiting_is_a_notice_and_the_approvals_count(harness, browser):
    await shop(harness)
    user, buyer = await signed_up_owner(harness, browser, "approver@example.com")
    await controls(harness, user, buyer.agent_id, approval_threshold_millicredits=CREDIT)
    with pytest.raises(ExchangeError) as waiting:
        await buyer.hire(await a_quote(buyer), {"text": "big"})
    assert waiting.value.code == "pending_approval"
    contract_id = waiting.value.contract_id
    assert await refusal_rows(harness, buyer.agent_id) == []  # the approval is its notice
    dashboard = await browser.get("/dashboard")
    assert nav_count(dashboard.text, "approvals") == "1"
    assert nav_count(dashboard.text, "notices") == "1"
    text = html.unescape((await browser.get("/notices")).text)
    assert "Your agent 'buyer' asks to buy text.upper" in text
    assert "it waits for your approval" in text and 'href="/approvals"' in text
    await decide_approval(harness.context, user, contract_id, approve=True)
    dashboard = await browser.get("/dashboard")
    assert nav_count(dashboard.text, "approvals") == "0"
    assert "asks to buy" not in (await browser.get("/notices")).text
    await harness.check_invariants()


async def test_a_paid_cash_out_and_the_low_balance_it_leaves_are_notices(harness):
    user, agent = await connected_owner(harness, "cashing@example.com", credits=100)
    payout = await request_cash_out(
        harness.context, user, agent.agent_id, 100, requested_by="human"
    )
    assert payout.status is PayoutStatus.PAID
    assert await available(harness, agent.agent_id) == 0
    now_ms = harness.context.now_ms()
    notices = await harness.context.read(
        lambda connection: notices_for_user(
            harness.context, connection, user.user_id, now_ms=now_ms
        )
    )
    by_kind = {notice.kind: notice for notice in notices}
    assert set(by_kind) == {NoticeKind.PAYOUT_PAID, NoticeKind.LOW_BALANCE}
    paid = by_kind[NoticeKind.PAYOUT_PAID]
    assert paid.text.startswith("Your cash-out of 100 credits from 'bot' was paid: $")
    assert paid.href == "/payouts"
    low = by_kind[NoticeKind.LOW_BALANCE]
    assert low.text.startswith("Your agent 'bot' has 0 credits available, less than 1")
    assert low.href == "/top-up"
    # The balance became low with the cash-out's transfer: the notice is dated by it.
    [latest] = await harness.context.ledger.account_transfers(
        agent_account_id(agent.agent_id), limit=1
    )
    assert low.at_ms == latest.timestamp_us // 1000
    assert [notice.at_ms for notice in notices] == sorted(
        (notice.at_ms for notice in notices), reverse=True
    )
    unread = await harness.context.read(
        lambda connection: notices_for_user(
            harness.context, connection, user.user_id, now_ms=now_ms, since_ms=now_ms
        )
    )
    assert unread == []
    await harness.check_invariants()


async def test_kept_refusals_are_bounded_by_age_and_count_per_agent(harness):
    store = PortalSpendingControls()
    now_ms = harness.context.now_ms()
    agent_id = "U" + "A" * 55

    def refused(index, at_ms):
        request = SpendingRequest(
            contract_id=f"purchase-{index}",
            buyer_id=agent_id,
            buyer_account_id=agent_account_id(agent_id),
            provider_id="U" + "B" * 55,
            capability="text.upper",
            price_millicredits=PRICE,
            now_ms=at_ms,
            expires_at_ms=at_ms,
        )
        return request, SpendingRefusal(
            ErrorCode.AGENT_FROZEN, "frozen by its owner", RefusalCause.FROZEN_BY_OWNER
        )

    old = [refused("old", now_ms - (limits.REFUSALS_KEPT_DAYS + 1) * DAY_MS)]
    await harness.context.write(lambda connection: store.record_refusals(connection, old))
    assert len(await refusal_rows(harness, agent_id)) == 1
    count = limits.REFUSALS_PER_AGENT_MAX + 5
    batch = [refused(index, now_ms + index) for index in range(count)]
    await harness.context.write(lambda connection: store.record_refusals(connection, batch))
    # Retries of kept refusals add nothing (the transaction may also run twice).
    retried = batch[-10:]
    await harness.context.write(lambda connection: store.record_refusals(connection, retried))
    kept = await refusal_rows(harness, agent_id)
    assert len(kept) == limits.REFUSALS_PER_AGENT_MAX
    assert {row["purchase_id"] for row in kept} == {
        f"purchase-{index}" for index in range(count - limits.REFUSALS_PER_AGENT_MAX, count)
    }


async def test_a_refused_digital_good_is_kept_though_the_purchase_is_refused(harness):
    """Outside contract groups (goods here), the refusal commits with the refused answer."""
    user = await harness.user("goods@example.com")
    buyer = await harness.linked_agent(user, label="collector")
    await harness.mint(buyer.agent_id, 100 * CREDIT)
    await controls(harness, user, buyer.agent_id, contract_limit_millicredits=CREDIT)
    provider = await harness.agent()
    item = await provider.publish_goods(
        "useful", b"artifact bytes", price_millicredits=PRICE, title="A tool", capability="tools"
    )
    for _ in range(2):
        with pytest.raises(ExchangeError) as refused:
            await buyer.buy_goods(item.item_id, price_millicredits=PRICE)
        assert refused.value.code == "budget_exceeded"
    [row] = await refusal_rows(harness, buyer.agent_id)
    assert (row["code"], row["capability"], row["price_millicredits"]) == (
        "budget_exceeded",
        "tools",
        PRICE,
    )
    now_ms = harness.context.now_ms()
    [notice] = await harness.context.read(
        lambda connection: notices_for_user(
            harness.context, connection, user.user_id, now_ms=now_ms
        )
    )
    assert notice.kind is NoticeKind.REFUSAL
    assert notice.text.endswith("refused because the price is over its per-contract limit.")
    assert await available(harness, buyer.agent_id) == 100 * CREDIT
    await harness.check_invariants()
