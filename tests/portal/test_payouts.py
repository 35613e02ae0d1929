"""Cash-out: credits held, paid through Stripe Connect (a Stripe-format stand-in), then settled.

The real ``stripe`` SDK talks to the offline Connect stand-in: accounts,
onboarding links, transfers with idempotency keys. Proves that a cash-out
holds the credits, makes one transfer of the net dollars and posts the hold
with the fee to revenue; that the 100-credit minimum and the 10,000-credit
monthly maximum hold, also for concurrent requests; that a refused
transfer voids the hold (and does not count toward the month); that an
unknown outcome leaves the hold pending until a retry with the same
idempotency key settles it, paying once; that bad requests change nothing;
that an agent cashes out over NATS only with its human's standing
permission, once per request id; and that the web page walks a human
through onboarding, the permission and a cash-out.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from agent_client import ExchangeError
from human_portal.errors import AgentFrozen, Conflict, InsufficientFunds, LimitExceeded, NotFound
from human_portal.ledger_accounts import USD_CASH_OUT_FEES_ACCOUNT_ID, USD_STRIPE_ACCOUNT_ID
from human_portal.operator_actions import freeze_agent
from human_portal.payouts import (
    PayoutStatus,
    allow_agent_cash_out,
    connect_onboarding_url,
    refresh_connect_status,
    request_cash_out,
    resume_pending_payouts,
)
from human_portal.portal_tables import payouts
from tests.portal.conftest import OPERATOR_EMAIL
from tests.portal.money_helpers import account_net_debit, available

CREDIT = 1_000


async def complete_onboarding(onboarding_url: str) -> None:
    """What the human does on Stripe's onboarding page: finish it."""
    return_url = parse_qs(urlsplit(onboarding_url).query)["return_url"][0]
    async with httpx.AsyncClient() as client:
        page = await client.get(onboarding_url)
        assert "Complete onboarding" in page.text
        done = await client.post(onboarding_url.split("?")[0], data={"return_url": return_url})
        assert done.status_code == 303 and done.headers["location"] == return_url


async def connected_owner(harness, email="owner@example.com", credits=1_000):
    user = await harness.user(email)
    agent = await harness.linked_agent(user)
    await harness.mint(agent.agent_id, credits * CREDIT)
    await complete_onboarding(await connect_onboarding_url(harness.context, user))
    assert await refresh_connect_status(harness.context, await harness.user_named(email))
    return await harness.user_named(email), agent


def transfers_of(harness, payout_id=None):
    return [
        transfer
        for transfer in harness.offline.connect_state.transfers.values()
        if payout_id is None or transfer["metadata"].get("payout_id") == payout_id
    ]


async def payout_rows(harness):
    async def work(connection):
        return (await connection.execute(sa.select(payouts))).mappings().all()

    return await harness.context.read(work)


async def fail_next_transfers(harness, count, status):
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{harness.offline.connect_url}/_config/fail_transfers",
            data={"count": str(count), "status": str(status)},
        )


async def test_a_cash_out_pays_the_net_through_stripe_and_posts_the_hold(harness):
    user, agent = await connected_owner(harness)
    payout = await request_cash_out(
        harness.context, user, agent.agent_id, 150, requested_by="human"
    )
    assert payout.status is PayoutStatus.PAID
    assert (payout.gross_cents, payout.fee_cents, payout.net_cents) == (1_500, 150, 1_350)
    [transfer] = transfers_of(harness, payout.payout_id)
    assert transfer["amount"] == 1_350 and transfer["destination"] == user.stripe_account_id
    assert await available(harness, agent.agent_id) == 850 * CREDIT
    assert (await agent.balance()).held_millicredits == 0
    assert await account_net_debit(harness, USD_CASH_OUT_FEES_ACCOUNT_ID) == -150
    assert await account_net_debit(harness, USD_STRIPE_ACCOUNT_ID) == -1_350
    await harness.check_invariants()


async def test_cash_out_bounds_and_bad_requests_change_nothing(harness):
    user, agent = await connected_owner(harness, credits=300)
    stranger = await harness.user("stranger@example.com")
    transfers_before = len(transfers_of(harness))
    cases = [
        (user, agent.agent_id, 99, LimitExceeded),
        # The balance is checked before the month's maximum: 300 credits are all it has.
        (user, agent.agent_id, 10_001, InsufficientFunds),
        (user, agent.agent_id, 301, InsufficientFunds),
        (user, agent.agent_id, -100, LimitExceeded),
        (stranger, agent.agent_id, 100, Conflict),
    ]
    for who, agent_id, credits, error in cases:
        with pytest.raises(error):
            await request_cash_out(harness.context, who, agent_id, credits, requested_by="human")
    operator = await harness.user(OPERATOR_EMAIL)
    await freeze_agent(harness.context, operator, agent.agent_id, "under review")
    with pytest.raises(AgentFrozen):
        await request_cash_out(harness.context, user, agent.agent_id, 100, requested_by="human")
    assert await payout_rows(harness) == []
    assert await available(harness, agent.agent_id) == 300 * CREDIT
    assert len(transfers_of(harness)) == transfers_before
    await harness.check_invariants()


async def test_someone_elses_agent_cannot_be_cashed_out(harness):
    _, agent = await connected_owner(harness, "first@example.com")
    other, _ = await connected_owner(harness, "second@example.com")
    with pytest.raises(NotFound):
        await request_cash_out(harness.context, other, agent.agent_id, 100, requested_by="human")
    await harness.check_invariants()


async def test_the_monthly_maximum_holds_under_concurrent_requests(harness):
    user, agent = await connected_owner(harness, credits=20_000)
    outcomes = await asyncio.gather(
        *(
            request_cash_out(harness.context, user, agent.agent_id, 3_000, requested_by="human")
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    paid = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(paid) == 3 and all(payout.status is PayoutStatus.PAID for payout in paid)
    assert len(refused) == 2 and all(isinstance(error, LimitExceeded) for error in refused)
    assert len(transfers_of(harness)) >= 3
    assert await available(harness, agent.agent_id) == 11_000 * CREDIT
    await harness.check_invariants()


async def test_a_refused_transfer_voids_the_hold_and_does_not_count_toward_the_month(harness):
    user, agent = await connected_owner(harness, credits=20_000)
    await fail_next_transfers(harness, 1, 400)
    failed = await request_cash_out(
        harness.context, user, agent.agent_id, 10_000, requested_by="human"
    )
    assert failed.status is PayoutStatus.FAILED and failed.failure_reason
    assert await available(harness, agent.agent_id) == 20_000 * CREDIT
    paid = await request_cash_out(
        harness.context, user, agent.agent_id, 10_000, requested_by="human"
    )
    assert paid.status is PayoutStatus.PAID
    await harness.check_invariants()


async def test_an_unknown_outcome_stays_held_until_a_retry_pays_once(harness):
    user, agent = await connected_owner(harness)
    await fail_next_transfers(harness, 10, 500)
    pending = await request_cash_out(
        harness.context, user, agent.agent_id, 200, requested_by="human"
    )
    assert pending.status is PayoutStatus.PENDING
    assert (await agent.balance()).held_millicredits == 200 * CREDIT
    await fail_next_transfers(harness, 0, 500)
    assert await resume_pending_payouts(harness.context, older_than_ms=0) == 1
    assert await resume_pending_payouts(harness.context, older_than_ms=0) == 0
    assert len(transfers_of(harness, pending.payout_id)) == 1
    assert (await agent.balance()).held_millicredits == 0
    assert await available(harness, agent.agent_id) == 800 * CREDIT
    [row] = await payout_rows(harness)
    assert row["status"] == "paid" and row["stripe_transfer_id"].startswith("tr_")
    await harness.check_invariants()


async def test_the_payouts_page_onboards_and_cashes_out(harness, browser):
    await browser.sign_up("payee@example.com")
    user = await harness.user_named("payee@example.com")
    agent = await harness.linked_agent(user)
    await harness.mint(agent.agent_id, 500 * CREDIT)
    await browser.get("/payouts")
    to_stripe = await browser.post("/payouts/connect")
    assert to_stripe.status_code == 303
    onboarding_url = to_stripe.headers["location"]
    assert onboarding_url.startswith(harness.offline.connect_url)
    await complete_onboarding(onboarding_url)
    back = await browser.client.get("/payouts/connected")
    assert back.headers["location"] == "/payouts?notice=connected"
    await browser.get("/payouts")
    asked = await browser.post("/payouts", agent_id=agent.agent_id, credits="120")
    # 120 credits = $12.00, less the $1.20 fee; nothing moves before the confirmation.
    assert asked.status_code == 200
    assert "You will receive $10.80 (fee $1.20) in your bank" in asked.text
    assert await payout_rows(harness) == []
    cashed = await browser.post("/payouts", agent_id=agent.agent_id, credits="120", confirm="yes")
    assert cashed.headers["location"] == "/payouts?notice=payout_paid"
    listed = await browser.get("/payouts")
    assert "$10.80" in listed.text
    refused = await browser.post("/payouts", agent_id=agent.agent_id, credits="-3")
    assert refused.status_code == 400
    assert len(await payout_rows(harness)) == 1
    await harness.check_invariants()


async def test_an_agent_cashes_out_over_nats_only_with_its_humans_standing_permission(harness):
    user, agent = await connected_owner(harness)
    with pytest.raises(ExchangeError) as refused:
        await agent.cash_out(100, request_id="first-try")
    assert refused.value.code == "forbidden"
    assert await payout_rows(harness) == []
    await allow_agent_cash_out(harness.context, user, allowed=True)
    paid = await agent.cash_out(150, request_id="month-end")
    assert (paid.status, paid.credits, paid.net_cents) == ("paid", 150, 1_350)
    # A retry with the same request id returns the same payout, paid once.
    again = await agent.cash_out(150, request_id="month-end")
    assert again.payout_id == paid.payout_id
    assert len(transfers_of(harness, paid.payout_id)) == 1
    assert await available(harness, agent.agent_id) == 850 * CREDIT
    with pytest.raises(ExchangeError) as too_small:
        await agent.cash_out(99)
    assert too_small.value.code == "invalid_request"
    [row] = await payout_rows(harness)
    assert row["requested_by"] == "agent"
    await harness.check_invariants()


async def test_an_unlinked_agent_cannot_cash_out(harness):
    stranger = await harness.agent()
    with pytest.raises(ExchangeError) as refused:
        await stranger.cash_out(100)
    assert refused.value.code == "not_found"
    await harness.check_invariants()


async def test_the_payouts_page_sets_the_standing_permission(harness, browser):
    await browser.sign_up("permits@example.com")
    await browser.get("/payouts")
    saved = await browser.post("/payouts/agent-permission", allowed="on")
    assert saved.headers["location"] == "/payouts?notice=agents_allowed"
    assert (await harness.user_named("permits@example.com")).agent_cash_out_allowed
    forged = await browser.client.post("/payouts/agent-permission", data={"allowed": "on"})
    assert forged.status_code == 403
