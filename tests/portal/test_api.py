"""``/api/v1``: personal API tokens, the seven endpoints of the product plan, OpenAPI.

Over real HTTP. Proves that tokens are shown once, stored hashed, work until
revoked and that a missing, wrong or revoked token gets 401; that balance
and transactions show only the caller's agents; that a transfer between
one's own agents takes the transfer fee, is idempotent by its key and
refuses another transfer under the same key, a stranger's agent, negative,
huge or unaffordable amounts (422/404/409, nothing moved); that buying
credits creates a Stripe PaymentIntent; that converting to dollars pays out;
that the marketplace lists active services and relays an agent-signed
acceptance to the exchange; and that the OpenAPI document lists them all.
"""

from __future__ import annotations

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from agent_client import AgentKeys, QuoteRequest, subjects
from agent_client.protocol import OpenContract
from agent_client.signing import SystemClock, make_header, seal
from human_portal.api_tokens import create_api_token, revoke_api_token
from human_portal.linking import issue_link_code
from human_portal.payouts import connect_onboarding_url, refresh_connect_status
from human_portal.portal_tables import api_tokens
from tests.portal.money_helpers import available
from tests.portal.test_payouts import complete_onboarding

CREDIT = 1_000
PRODUCT_PLAN_PATHS = {
    "/api/v1/credits/transfer",
    "/api/v1/credits/balance",
    "/api/v1/credits/transactions",
    "/api/v1/billing/purchase-credits",
    "/api/v1/billing/convert-to-usd",
    "/api/v1/marketplace/services",
    "/api/v1/marketplace/purchase-service",
}


async def api_client(harness, user):
    created = await create_api_token(harness.context, user, "test script")
    return httpx.AsyncClient(
        base_url=harness.url, headers={"Authorization": f"Bearer {created.secret}"}, timeout=30
    ), created


async def test_a_token_works_until_revoked_and_is_stored_hashed(harness):
    user = await harness.user()
    client, created = await api_client(harness, user)
    async with client:
        assert (await client.get("/api/v1/credits/balance")).status_code == 200

        async def stored(connection):
            return (await connection.execute(sa.select(api_tokens.c.token_hash))).scalar_one()

        assert created.secret not in await harness.context.read(stored)
        await revoke_api_token(harness.context, user, created.token.token_id)
        revoked = await client.get("/api/v1/credits/balance")
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "authentication_failed"
    async with httpx.AsyncClient(base_url=harness.url) as anonymous:
        assert (await anonymous.get("/api/v1/credits/balance")).status_code == 401
        wrong = {"Authorization": "Bearer agx_" + "x" * 43}
        assert (await anonymous.get("/api/v1/credits/balance", headers=wrong)).status_code == 401


async def test_balance_and_transactions_show_only_the_callers_agents(harness):
    user, stranger = await harness.user(), await harness.user("stranger@example.com")
    mine = await harness.linked_agent(user, label="mine")
    theirs = await harness.linked_agent(stranger, label="theirs")
    await harness.mint(mine.agent_id, 7 * CREDIT)
    await harness.mint(theirs.agent_id, 9 * CREDIT)
    client, _ = await api_client(harness, user)
    async with client:
        balance = (await client.get("/api/v1/credits/balance")).json()
        assert balance == {
            "agents": [
                {
                    "agent_id": mine.agent_id,
                    "label": "mine",
                    "available_millicredits": 7 * CREDIT,
                    "held_millicredits": 0,
                    "frozen": False,
                }
            ]
        }
        history = (await client.get("/api/v1/credits/transactions", params={"kind": "mint"})).json()
        assert [(t["agent_id"], t["amount_millicredits"]) for t in history["transactions"]] == [
            (mine.agent_id, 7 * CREDIT)
        ]
        bad = await client.get("/api/v1/credits/transactions", params={"kind": "bogus"})
        assert bad.status_code == 422
    await harness.check_invariants()


async def test_a_transfer_between_own_agents_takes_the_fee_once_per_key(harness):
    user, stranger = await harness.user(), await harness.user("stranger@example.com")
    source, target = await harness.linked_agent(user), await harness.linked_agent(user)
    foreign = await harness.linked_agent(stranger)
    await harness.mint(source.agent_id, 10 * CREDIT)
    client, _ = await api_client(harness, user)
    body = {
        "from_agent_id": source.agent_id,
        "to_agent_id": target.agent_id,
        "amount_millicredits": 4 * CREDIT,
        "idempotency_key": "rebalance-1",
    }
    async with client:
        first = (await client.post("/api/v1/credits/transfer", json=body)).json()
        again = (await client.post("/api/v1/credits/transfer", json=body)).json()
        assert (first["fee_millicredits"], first["net_millicredits"]) == (200, 3_800)
        assert first["replayed"] is False and again["replayed"] is True
        other = await client.post(
            "/api/v1/credits/transfer", json={**body, "amount_millicredits": 1}
        )
        assert other.status_code == 409
        refusals = [
            ({"amount_millicredits": -5}, 422),
            ({"amount_millicredits": 10**15}, 422),
            ({"amount_millicredits": 0}, 422),
            ({"amount_millicredits": 7 * CREDIT, "idempotency_key": "too-much"}, 409),
            ({"to_agent_id": foreign.agent_id, "idempotency_key": "steal"}, 404),
            ({"to_agent_id": source.agent_id, "idempotency_key": "self"}, 422),
            ({"idempotency_key": "bad key with spaces"}, 422),
        ]
        for changes, status in refusals:
            response = await client.post("/api/v1/credits/transfer", json={**body, **changes})
            assert response.status_code == status, (changes, response.text)
            assert "error" in response.json()
    assert await available(harness, source.agent_id) == 6 * CREDIT
    assert await available(harness, target.agent_id) == 3_800
    assert await available(harness, foreign.agent_id) == 0
    await harness.check_invariants()


async def test_buying_credits_creates_a_payment_that_the_webhook_later_mints(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    client, _ = await api_client(harness, user)
    async with client:
        bought = await client.post(
            "/api/v1/billing/purchase-credits",
            json={"agent_id": agent.agent_id, "package": "custom", "amount_cents": 2_000},
        )
        assert bought.status_code == 200, bought.text
        purchase = bought.json()
        assert (purchase["price_cents"], purchase["fee_cents"], purchase["total_cents"]) == (
            2_000,
            60,
            2_060,
        )
        assert purchase["credits_millicredits"] == 200 * CREDIT
        assert purchase["payment_intent_id"].startswith("pi_")
        assert purchase["client_secret"].startswith(purchase["payment_intent_id"])
        too_small = await client.post(
            "/api/v1/billing/purchase-credits",
            json={"agent_id": agent.agent_id, "package": "custom", "amount_cents": 1},
        )
        assert too_small.status_code == 422
    # No webhook yet: nothing minted.
    assert await available(harness, agent.agent_id) == 0
    await harness.check_invariants()


async def test_converting_to_dollars_pays_out_through_connect(harness):
    user = await harness.user()
    agent = await harness.linked_agent(user)
    await harness.mint(agent.agent_id, 500 * CREDIT)
    await complete_onboarding(await connect_onboarding_url(harness.context, user))
    await refresh_connect_status(harness.context, await harness.user_named(user.email))
    client, _ = await api_client(harness, user)
    async with client:
        paid = await client.post(
            "/api/v1/billing/convert-to-usd", json={"agent_id": agent.agent_id, "credits": 100}
        )
        assert paid.json()["status"] == "paid" and paid.json()["net_cents"] == 900
        too_few = await client.post(
            "/api/v1/billing/convert-to-usd", json={"agent_id": agent.agent_id, "credits": 99}
        )
        assert too_few.status_code == 422
    assert await available(harness, agent.agent_id) == 400 * CREDIT
    await harness.check_invariants()


async def test_the_marketplace_lists_services_and_relays_a_signed_acceptance(harness):
    user = await harness.user()
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Upper-cases text", price_millicredits=500)
    await provider.serve("text.upper", _upper, pricing=500)
    buyer_keys = AgentKeys.generate()
    buyer = await harness.agent(buyer_keys)
    issued = await issue_link_code(harness.context, user, label="buyer")
    await buyer.link_human(issued.code)
    await harness.mint(buyer.agent_id, 5 * CREDIT)
    client, _ = await api_client(harness, user)
    async with client:
        listed = (await client.get("/api/v1/marketplace/services", params={"text": "upper"})).json()
        assert [s["provider_id"] for s in listed["services"]] == [provider.agent_id]
        [quote] = await buyer.request_quotes(
            QuoteRequest(
                "text.upper", "shout", budget_millicredits=1_000, timeout_s=2, quotes_max=1
            )
        )
        subject = subjects.exchange_request(buyer.agent_id, "contract.open")
        header = make_header(
            buyer_keys, audience="exchange", subject=subject, lifetime_s=30, clock=SystemClock()
        )
        acceptance = seal(
            OpenContract(header=header, quote=quote.envelope, task=msgspec.Raw(b'{"text":"hi"}')),
            buyer_keys,
        )
        relayed = await client.post(
            "/api/v1/marketplace/purchase-service",
            json={"acceptance": {"doc": acceptance.doc, "sig": acceptance.sig}},
        )
        assert relayed.status_code == 200, relayed.text
        assert relayed.json()["kind"] == "contract"
        assert relayed.json()["contract"]["buyer_id"] == buyer.agent_id
    assert (await buyer.balance()).held_millicredits == 500
    await harness.check_invariants()


async def _upper(task):
    return {"text": task["text"].upper()}


async def test_the_openapi_document_lists_the_product_plans_endpoints(harness):
    async with httpx.AsyncClient(base_url=harness.url) as client:
        schema = (await client.get("/api/v1/openapi.json")).json()
        docs = await client.get("/api/v1/docs")
    assert set(schema["paths"]) >= PRODUCT_PLAN_PATHS
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    assert docs.status_code == 200 and "/api/v1/credits/transfer" in docs.text


READ_PATHS = {
    "/api/v1/credits/balance",
    "/api/v1/credits/transactions",
    "/api/v1/marketplace/services",
}


@pytest.mark.parametrize("path", sorted(PRODUCT_PLAN_PATHS))
async def test_every_endpoint_refuses_a_request_without_a_token(harness, path):
    async with httpx.AsyncClient(base_url=harness.url) as client:
        if path in READ_PATHS:
            response = await client.get(path)
        else:
            response = await client.post(path, json={})
    assert response.status_code == 401
