"""Top-ups: credits are minted only from verified Stripe webhooks, exactly once.

Against a real localstripe and a real portal: a card payment confirmed in
localstripe makes localstripe send its signed webhook, and the credits
arrive (and the dollars on the USD ledger). With webhooks signed here as
Stripe signs them: duplicates (same event id, another event id for the same
payment, concurrent deliveries) mint once; stale, tampered, unsigned,
wrongly signed and malformed deliveries are refused and change nothing; a
payment whose amount differs from its top-up mints nothing. Refunds and
disputes claw credits back (in any order, cumulatively), and when the
credits were already spent the agent is frozen and a receivable recorded.
Every test ends with the ledger's and the exchange's invariants.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx
import pytest
import sqlalchemy as sa

from human_portal.budgets import controls_by_agent
from human_portal.errors import Conflict, LimitExceeded, NotFound, WebhookRejected
from human_portal.ledger_accounts import (
    USD_CUSTOMER_FUNDS_ACCOUNT_ID,
    USD_PURCHASE_FEES_ACCOUNT_ID,
    USD_STRIPE_ACCOUNT_ID,
)
from human_portal.money_rules import top_up_quote
from human_portal.own_agent_transfers import transfer_between_own_agents
from human_portal.portal_tables import stripe_events
from human_portal.topups import (
    TopUpStatus,
    handle_webhook,
    refund_top_up,
    start_top_up,
    top_up_of,
)
from tests.portal.conftest import OPERATOR_EMAIL
from tests.portal.money_helpers import (
    account_net_debit,
    available,
    charge_refunded,
    dispute_created,
    payment_succeeded,
    signed,
    unpaid_top_up,
)

STARTER_MILLICREDITS = 100_000
STARTER_TOTAL_CENTS = 1_030


async def deliver(harness, payload, **signing):
    body, header = signed(payload, harness.context.config.stripe.webhook_secret, **signing)
    return await handle_webhook(harness.context, body, header)


async def events_recorded(harness) -> int:
    async def work(connection):
        query = sa.select(sa.func.count()).select_from(stripe_events)
        return (await connection.execute(query)).scalar_one()

    return await harness.context.read(work)


async def test_a_card_payment_in_localstripe_mints_the_credits_through_its_webhook(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    top_up = await harness.paid_top_up(user, agent.agent_id, "builder")
    assert top_up.status is TopUpStatus.PAID
    assert await available(harness, agent.agent_id) == 550_000
    assert await account_net_debit(harness, USD_STRIPE_ACCOUNT_ID) == 5_150
    assert await account_net_debit(harness, USD_CUSTOMER_FUNDS_ACCOUNT_ID) == -5_000
    assert await account_net_debit(harness, USD_PURCHASE_FEES_ACCOUNT_ID) == -150
    assert (await agent.balance()).available_millicredits == 550_000
    await harness.check_invariants()


async def test_a_payment_mints_once_however_often_its_webhook_arrives(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    succeeded = payment_succeeded(payment, STARTER_TOTAL_CENTS)
    assert (await deliver(harness, succeeded)).outcome == "minted"
    assert (await deliver(harness, succeeded)).outcome == "duplicate_event"
    another_id = payment_succeeded(payment, STARTER_TOTAL_CENTS)
    assert (await deliver(harness, another_id)).outcome == "duplicate_payment"
    assert await available(harness, agent.agent_id) == STARTER_MILLICREDITS
    await harness.check_invariants()


async def test_concurrent_deliveries_of_one_payment_mint_once(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    same = payment_succeeded(payment, STARTER_TOTAL_CENTS)
    deliveries = [same] * 4 + [payment_succeeded(payment, STARTER_TOTAL_CENTS) for _ in range(4)]
    outcomes = await asyncio.gather(*(deliver(harness, payload) for payload in deliveries))
    assert [outcome.outcome for outcome in outcomes].count("minted") == 1
    assert await available(harness, agent.agent_id) == STARTER_MILLICREDITS
    await harness.check_invariants()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("stale", "stale"),
        ("tampered", "bad_signature"),
        ("wrong_secret", "bad_signature"),
        ("missing", "missing_signature"),
        ("garbled_header", "bad_signature"),
        ("not_json", "malformed"),
    ],
)
async def test_a_webhook_that_fails_verification_is_refused_and_changes_nothing(
    harness, case, reason
):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payload = payment_succeeded(started.top_up.payment_intent_id, STARTER_TOTAL_CENTS)
    secret = harness.context.config.stripe.webhook_secret
    body, header = signed(payload, secret)
    if case == "stale":
        body, header = signed(payload, secret, timestamp=int(time.time()) - 3600)
    elif case == "tampered":
        body = body.replace(b'"amount": 1030', b'"amount": 9999')
    elif case == "wrong_secret":
        body, header = signed(payload, "whsec_not_the_portals_secret")
    elif case == "missing":
        header = ""
    elif case == "garbled_header":
        header = "t=notanumber,v1=zz"
    elif case == "not_json":
        body = b"{not json"
        timestamp = int(time.time())
        digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        header = f"t={timestamp},v1={digest.hexdigest()}"
    with pytest.raises(WebhookRejected) as refused:
        await handle_webhook(harness.context, body, header)
    assert refused.value.reason == reason
    assert await available(harness, agent.agent_id) == 0
    assert await events_recorded(harness) == 0
    top_up = await top_up_of(harness.context, user, started.top_up.topup_id)
    assert top_up.status is TopUpStatus.CREATED
    await harness.check_invariants()


async def test_a_payment_for_another_amount_or_currency_mints_nothing(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    cheaper = payment_succeeded(payment, 1, amount_received=1)
    euros = payment_succeeded(payment, STARTER_TOTAL_CENTS, currency="eur")
    assert (await deliver(harness, cheaper)).outcome == "rejected:amount_mismatch"
    assert (await deliver(harness, euros)).outcome == "rejected:amount_mismatch"
    assert await available(harness, agent.agent_id) == 0
    await harness.check_invariants()


async def test_an_unknown_payment_or_event_is_acknowledged_and_ignored(harness):
    unknown = payment_succeeded("pi_not_ours_123", STARTER_TOTAL_CENTS)
    assert (await deliver(harness, unknown)).outcome == "ignored:unknown_payment"
    other = payment_succeeded("pi_x", 5)
    other["type"] = "customer.created"
    assert (await deliver(harness, other)).outcome == "ignored:event_type"
    await harness.check_invariants()


async def test_a_full_refund_claws_back_every_credit_and_dollar(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    await deliver(harness, payment_succeeded(payment, STARTER_TOTAL_CENTS))
    refund = charge_refunded(payment, STARTER_TOTAL_CENTS, STARTER_TOTAL_CENTS)
    assert (await deliver(harness, refund)).outcome == "refund_recorded"
    assert await available(harness, agent.agent_id) == 0
    assert await account_net_debit(harness, USD_STRIPE_ACCOUNT_ID) == 0
    assert await account_net_debit(harness, USD_PURCHASE_FEES_ACCOUNT_ID) == 0
    top_up = await top_up_of(harness.context, user, started.top_up.topup_id)
    assert (top_up.clawed_back_millicredits, top_up.receivable_millicredits) == (100_000, 0)
    await harness.check_invariants()


async def test_partial_refunds_are_cumulative_and_a_late_smaller_one_changes_nothing(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    await deliver(harness, payment_succeeded(payment, STARTER_TOTAL_CENTS))
    await deliver(harness, charge_refunded(payment, STARTER_TOTAL_CENTS, 515))
    half = await available(harness, agent.agent_id)
    assert half == STARTER_MILLICREDITS // 2
    # An older event, delivered late, with a smaller running total.
    await deliver(harness, charge_refunded(payment, STARTER_TOTAL_CENTS, 200))
    assert await available(harness, agent.agent_id) == half
    await deliver(harness, charge_refunded(payment, STARTER_TOTAL_CENTS, STARTER_TOTAL_CENTS))
    assert await available(harness, agent.agent_id) == 0
    await harness.check_invariants()


async def test_a_refund_that_arrives_before_its_payment_is_applied_when_the_payment_arrives(
    harness,
):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payment = started.top_up.payment_intent_id
    refund = charge_refunded(payment, STARTER_TOTAL_CENTS, STARTER_TOTAL_CENTS)
    assert (await deliver(harness, refund)).outcome == "refund_recorded"
    assert await available(harness, agent.agent_id) == 0
    assert (await deliver(harness, payment_succeeded(payment, STARTER_TOTAL_CENTS))).outcome == (
        "minted"
    )
    assert await available(harness, agent.agent_id) == 0
    top_up = await top_up_of(harness.context, user, started.top_up.topup_id)
    assert top_up.status is TopUpStatus.PAID and top_up.clawed_back_millicredits == 100_000
    await harness.check_invariants()


async def test_a_dispute_after_the_credits_were_spent_freezes_the_agent_and_records_what_is_owed(
    harness,
):
    user = await harness.user()
    spender, other = await harness.linked_agent(user), await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, spender.agent_id)
    payment = started.top_up.payment_intent_id
    await deliver(harness, payment_succeeded(payment, STARTER_TOTAL_CENTS))
    await transfer_between_own_agents(
        harness.context,
        user,
        from_agent_id=spender.agent_id,
        to_agent_id=other.agent_id,
        amount_millicredits=70_000,
        idempotency_key="spend-most",
    )
    dispute = dispute_created(payment, STARTER_TOTAL_CENTS)
    assert (await deliver(harness, dispute)).outcome == "dispute_recorded"
    assert (await deliver(harness, dispute)).outcome == "duplicate_event"
    assert await available(harness, spender.agent_id) == 0
    top_up = await top_up_of(harness.context, user, started.top_up.topup_id)
    assert (top_up.clawed_back_millicredits, top_up.receivable_millicredits) == (30_000, 70_000)
    controls = await harness.context.read(
        lambda connection: controls_by_agent(connection, [spender.agent_id])
    )
    assert controls[spender.agent_id].frozen_by_operator
    assert "owed" in controls[spender.agent_id].operator_freeze_reason
    await harness.check_invariants()


async def test_an_operator_refund_goes_through_stripe_and_claws_back_at_once(harness):
    user = await harness.user()
    operator = await harness.user(OPERATOR_EMAIL)
    agent = await harness.linked_agent(user)
    top_up = await harness.paid_top_up(user, agent.agent_id)
    with pytest.raises(LimitExceeded):
        await refund_top_up(harness.context, operator, top_up.topup_id, STARTER_TOTAL_CENTS + 1)
    with pytest.raises(LimitExceeded):
        await refund_top_up(harness.context, operator, top_up.topup_id, -5)
    refunded = await refund_top_up(harness.context, operator, top_up.topup_id, 515)
    assert refunded.refunded_cents == 515
    assert await available(harness, agent.agent_id) == STARTER_MILLICREDITS // 2
    # Stripe's charge.refunded webhook for the same refund finds nothing left to do.
    late = charge_refunded(top_up.payment_intent_id, STARTER_TOTAL_CENTS, 515)
    assert (await deliver(harness, late)).outcome == "refund_recorded"
    assert await available(harness, agent.agent_id) == STARTER_MILLICREDITS // 2
    await harness.check_invariants()


async def test_top_ups_are_for_the_users_own_agents_and_within_bounds(harness):
    user, stranger = await harness.user(), await harness.user("stranger@example.com")
    agent = await harness.linked_agent(user)
    fees = harness.context.config.fees
    with pytest.raises(NotFound):
        await start_top_up(
            harness.context,
            stranger,
            agent.agent_id,
            top_up_quote("starter", custom_cents=None, fees=fees),
        )
    with pytest.raises(LimitExceeded):
        top_up_quote("custom", custom_cents=10**9, fees=fees)
    with pytest.raises(Conflict):
        from human_portal.topups import confirm_offline_card

        started = await unpaid_top_up(harness, user, agent.agent_id)
        await deliver(
            harness, payment_succeeded(started.top_up.payment_intent_id, STARTER_TOTAL_CENTS)
        )
        await confirm_offline_card(harness.context, user, started.top_up.topup_id, "card_abc")
    await harness.check_invariants()


async def test_the_webhook_endpoint_answers_400_for_a_bad_signature_and_200_for_a_good_one(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    started = await unpaid_top_up(harness, user, agent.agent_id)
    payload = payment_succeeded(started.top_up.payment_intent_id, STARTER_TOTAL_CENTS)
    body, header = signed(payload, harness.context.config.stripe.webhook_secret)
    async with httpx.AsyncClient(base_url=harness.url) as client:
        refused = await client.post(
            "/stripe/webhook", content=body, headers={"Stripe-Signature": header + "0"}
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "webhook_rejected"
        accepted = await client.post(
            "/stripe/webhook", content=body, headers={"Stripe-Signature": header}
        )
        assert accepted.status_code == 200 and accepted.json()["outcome"] == "minted"
    assert await available(harness, agent.agent_id) == STARTER_MILLICREDITS
    await harness.check_invariants()


async def test_the_top_up_pages_show_the_fee_before_paying_and_load_stripe_js(harness, browser):
    await browser.sign_up("payer@example.com")
    user = await harness.user_named("payer@example.com")
    agent = await harness.linked_agent(user)
    form = await browser.get("/top-up")
    assert "$10.00 + $0.30 fee = <strong>$10.30</strong>" in form.text
    bad = await browser.post("/top-up", agent_id=agent.agent_id, package="custom", amount="-5")
    assert bad.status_code == 400
    huge = await browser.post("/top-up", agent_id=agent.agent_id, package="custom", amount="99999")
    assert huge.status_code == 400
    created = await browser.post("/top-up", agent_id=agent.agent_id, package="starter")
    assert created.status_code == 303
    page = await browser.get(created.headers["location"])
    assert f'<script src="{harness.offline.local_stripe.js_url}"></script>' in page.text
    assert "_secret_" in page.text and "$10.30" in page.text
    status = await browser.client.get(created.headers["location"] + "/status")
    assert json.loads(status.text)["status"] == "created"
    await harness.check_invariants()
