"""The web layer's guards, through real HTTP against a running portal.

Proves that every form needs its CSRF token (missing or wrong: 403, nothing
written), that the session cookie is HttpOnly and SameSite=Lax, that pages
send a Content-Security-Policy that allows no CDN, that signed-out visitors
are sent to sign in (and only to local paths afterwards), that the sign-in
form answers 429 with Retry-After once the window is full, that operator
pages refuse ordinary users, and that oversized forms are refused.
"""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from human_portal import limits
from human_portal.portal_tables import agent_controls, users
from tests.portal.conftest import OPERATOR_EMAIL, PASSWORD, Browser


async def user_count(harness) -> int:
    async def work(connection):
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(users))
        ).scalar_one()

    return await harness.context.read(work)


async def test_sign_up_without_or_with_a_wrong_csrf_token_is_refused_and_writes_nothing(
    harness, browser
):
    await browser.get("/sign-up")
    fields = {"email": "a@example.com", "password": PASSWORD, "password_again": PASSWORD}
    missing = await browser.client.post("/sign-up", data=fields)
    wrong = await browser.client.post("/sign-up", data={**fields, "csrf_token": "x" * 43})
    assert missing.status_code == wrong.status_code == 403
    assert "security token" in missing.text
    assert await user_count(harness) == 0
    assert (await browser.post("/sign-up", **fields)).status_code == 303
    assert await user_count(harness) == 1


async def test_a_signed_in_form_needs_the_sessions_own_token(harness, browser):
    await browser.sign_up("owner@example.com")
    user = await harness.user_named("owner@example.com")
    agent = await harness.linked_agent(user)
    path = f"/agents/{agent.agent_id}/freeze"
    anonymous_token = browser.client.cookies.get("agentx_csrf")
    refused = await browser.client.post(path, data={"csrf_token": anonymous_token or ""})
    assert refused.status_code == 403

    async def frozen(connection):
        query = sa.select(agent_controls.c.frozen_by_owner).where(
            agent_controls.c.agent_id == agent.agent_id
        )
        return (await connection.execute(query)).scalar_one()

    assert await harness.context.read(frozen) is False
    assert (await browser.post(path)).status_code == 303
    assert await harness.context.read(frozen) is True


async def test_the_session_cookie_is_http_only_and_same_site(harness, browser):
    await harness.user("cookie@example.com")
    await browser.get("/sign-in")
    signed_in = await browser.post("/sign-in", email="cookie@example.com", password=PASSWORD)
    assert signed_in.status_code == 303
    set_cookie = signed_in.headers["set-cookie"]
    assert set_cookie.startswith("agentx_session=")
    assert "HttpOnly" in set_cookie
    assert "samesite=lax" in set_cookie.lower()
    # Served over http here; over https the cookie is Secure too.
    assert harness.context.config.cookie_secure is False


async def test_pages_send_a_strict_content_security_policy_without_any_cdn(harness, browser):
    response = await browser.get("/sign-in")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    stripe_origin = harness.offline.local_stripe.url
    assert f"script-src 'self' {stripe_origin}" in policy
    for cdn in ("cdn.", "jsdelivr", "unpkg", "googleapis", "cloudflare"):
        assert cdn not in policy
        assert cdn not in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_signed_out_visitors_are_sent_to_sign_in_and_back_only_to_local_pages(browser):
    for path in ("/dashboard", "/agents", "/top-up", "/payouts", "/operator", "/transactions.csv"):
        response = await browser.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sign-in?next=")
    await browser.sign_up("next@example.com")
    await browser.client.post("/sign-out", data={"csrf_token": browser.csrf_token})
    await browser.get("/sign-in")
    away = await browser.post(
        "/sign-in", email="next@example.com", password=PASSWORD, next="https://evil.example/"
    )
    assert away.headers["location"] == "/dashboard"
    await browser.client.post("/sign-out", data={"csrf_token": (await _token(browser))})
    await browser.get("/sign-in")
    local = await browser.post(
        "/sign-in", email="next@example.com", password=PASSWORD, next="/payouts"
    )
    assert local.headers["location"] == "/payouts"


async def _token(browser) -> str:
    await browser.get("/dashboard")
    return browser.csrf_token


async def test_sign_out_ends_the_session(browser):
    await browser.sign_up("leaving@example.com")
    assert (await browser.client.get("/dashboard")).status_code == 200
    assert (await browser.post("/sign-out")).status_code == 303
    assert (await browser.client.get("/dashboard")).status_code == 303


async def test_the_sign_in_form_answers_429_with_retry_after_when_limited(harness, browser):
    await harness.user("target@example.com")
    await browser.get("/sign-in")
    for _ in range(limits.LOGIN_FAILURES_MAX):
        wrong = await browser.post("/sign-in", email="target@example.com", password="not it at all")
        assert wrong.status_code == 401
    limited = await browser.post("/sign-in", email="target@example.com", password=PASSWORD)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "agentx_session" not in browser.client.cookies


async def test_operator_pages_refuse_ordinary_users_and_open_for_operators(harness, browser):
    await browser.sign_up("plain@example.com")
    assert (await browser.client.get("/operator")).status_code == 403
    async with httpx.AsyncClient(base_url=harness.url) as client:
        operator = Browser(client)
        await operator.sign_up(OPERATOR_EMAIL)
        page = await operator.client.get("/operator")
        assert page.status_code == 200
        assert "Purchase fees" in page.text


async def test_an_oversized_form_is_refused(browser):
    await browser.get("/sign-up")
    response = await browser.post("/sign-up", email="x" * (limits.FORM_BYTES_MAX + 1))
    assert response.status_code == 422
