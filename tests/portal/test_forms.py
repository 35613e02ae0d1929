"""The portal's forms keep what was typed, say each mistake beside its field, and ask first.

Real components throughout: a running portal over HTTP (the ``browser``
fixture keeps cookies and fills in CSRF tokens like a browser), a real
exchange over NATS for the agents, localstripe and the Connect stand-in for
money, and Debian's headless Chromium where what a person sees matters.
Proves that a refused form comes back as the same page with status 400 or
409, every typed value kept (passwords excepted), each mistake in plain
words (no field names) in a ``field-error`` the input names in
``aria-describedby``, one summary line on top, and nothing written; that
signing in works whatever CSRF cookie or session the browser holds; that
approvals name the agent, the provider and the task, and confirm a decision
in words; that the freeze is a button of its own which the exchange obeys
and which keeps the budget; that unlinking and cashing out wait for a
confirmation page that states the consequence; and that cash-out errors
speak in credits and dollars, the balance checked before the month's
maximum. Money tests end with the ledger's invariants.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
import sqlalchemy as sa

from agent_client import ExchangeError, QuoteRequest
from human_portal.linking import linked_agents
from human_portal.payouts import connect_onboarding_url, refresh_connect_status
from human_portal.portal_tables import agent_controls, payouts, topups
from tests.portal.chromium_pages import CHROMIUM, chromium_page, sign_up_in_page
from tests.portal.conftest import OPERATOR_EMAIL, PASSWORD, Browser
from tests.portal.money_helpers import available
from tests.portal.test_payouts import complete_onboarding

CREDIT = 1_000
PRICE = 3 * CREDIT
FIELD_NAMES = re.compile(r"\b[a-z]+_[a-z_]+:")


class Page(HTMLParser):
    """The parts of a page a test reads: inputs by name, field errors by id, the summary."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.inputs: dict[str, dict[str, str]] = {}
        self.selected: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.summaries: list[str] = []
        self._select = ""
        self._open: tuple[str, str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "input" and "name" in found and found.get("type") != "radio":
            self.inputs[found["name"]] = found
        elif tag == "input" and found.get("type") == "radio" and "checked" in found:
            self.selected[found["name"]] = found["value"]
        elif tag == "select":
            self._select = found.get("name", "")
            self.inputs[self._select] = found
        elif tag == "option" and "selected" in found:
            self.selected[self._select] = found["value"]
        elif tag == "p" and "field-error" in found.get("class", ""):
            self._open = ("error", found["id"])
        elif tag == "p" and "form-summary" in found.get("class", ""):
            self._open = ("summary", "")

    def handle_data(self, data: str) -> None:
        if self._open is None:
            return
        kind, key = self._open
        if kind == "error":
            self.errors[key] = self.errors.get(key, "") + data
        else:
            self.summaries.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._open = None

    def error_beside(self, name: str) -> str:
        """The mistake the input called ``name`` points at with aria-describedby."""
        described_by = self.inputs[name].get("aria-describedby", "")
        assert described_by, f"{name} names no error"
        assert self.inputs[name].get("aria-invalid") == "true"
        return self.errors[described_by]


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def signed_up_with_agent(harness, browser: Browser, email: str, *, label: str = "buyer"):
    await browser.sign_up(email)
    user = await harness.user_named(email)
    agent = await harness.linked_agent(user, label=label)
    return user, agent


async def rows(harness, table) -> list:
    async def work(connection):
        return (await connection.execute(sa.select(table))).mappings().all()

    return await harness.context.read(work)


async def a_quote(buyer):
    [quote] = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=10 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    return quote


async def shop(harness):
    provider = await harness.agent()
    await provider.advertise("text.upper", description="Shouts", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    return provider


# --- sign up and sign in -------------------------------------------------------------


async def test_sign_up_mistakes_show_beside_each_field_in_plain_words(harness, browser):
    await browser.get("/sign-up")
    refused = await browser.post(
        "/sign-up", email="not-an-email", password="short", password_again="different"
    )
    assert refused.status_code == 400
    page = Page(refused.text)
    assert page.inputs["email"]["value"] == "not-an-email"
    assert page.inputs["password"].get("value", "") == ""  # passwords are never sent back
    beside = {name: page.error_beside(name) for name in ("email", "password", "password_again")}
    assert beside["email"] == "Enter an email address like name@example.com."
    assert beside["password"].startswith("Choose a password of 10 to")
    assert beside["password_again"].startswith("The two passwords differ")
    assert page.summaries == ["3 fields below need a change; no account was created."]
    assert not FIELD_NAMES.search(refused.text.split("<main>")[1].split("</main>")[0])
    await harness.user("taken@example.com")
    taken = await browser.post(
        "/sign-up", email="taken@example.com", password=PASSWORD, password_again=PASSWORD
    )
    assert taken.status_code == 409
    assert Page(taken.text).error_beside("email") == "An account with this email already exists."


async def test_signing_in_works_when_already_signed_in(harness, browser):
    await harness.user("second@example.com")
    await browser.sign_up("first@example.com")
    first_session = browser.client.cookies.get("agentx_session")
    # The sign-in page opened while signed in (the back button, a second tab)
    # goes on to where the person was going.
    opened = await browser.client.get("/sign-in?next=/agents")
    assert opened.status_code == 303 and opened.headers["location"] == "/agents"
    # A sign-in form rendered for the session (here: the session's token) still
    # signs in; before, it was checked against the anonymous cookie only: 403.
    switched = await browser.post("/sign-in", email="second@example.com", password=PASSWORD)
    assert switched.status_code == 303, switched.text
    assert browser.client.cookies.get("agentx_session") != first_session
    account = await browser.get("/account")
    assert "second@example.com" in account.text
    # The session it replaced is over.
    stale = httpx.AsyncClient(base_url=harness.url, cookies={"agentx_session": first_session})
    async with stale:
        assert (await stale.get("/dashboard")).status_code == 303


async def test_a_stale_csrf_token_gives_the_form_back_and_the_next_try_signs_in(harness, browser):
    await harness.user("stale@example.com")
    await browser.get("/sign-in")
    # The page in an older tab carries a token the cookie no longer matches.
    browser.client.cookies.set("agentx_csrf", "y" * 43, domain="127.0.0.1")
    stale = await browser.post("/sign-in", email="stale@example.com", password=PASSWORD)
    assert stale.status_code == 403
    page = Page(stale.text)
    assert page.inputs["email"]["value"] == "stale@example.com"
    assert "security token was stale" in page.summaries[0]
    # The page it got back carries the browser's current token: sending it signs in.
    browser.csrf_token = page.inputs["csrf_token"]["value"]
    signed_in = await browser.post("/sign-in", email="stale@example.com", password=PASSWORD)
    assert signed_in.status_code == 303
    assert (await browser.client.get("/dashboard")).status_code == 200


async def test_a_wrong_password_keeps_the_email_and_says_so_beside_the_password(harness, browser):
    await harness.user("who@example.com")
    await browser.get("/sign-in")
    wrong = await browser.post("/sign-in", email="who@example.com", password="not it at all")
    assert wrong.status_code == 401
    page = Page(wrong.text)
    assert page.inputs["email"]["value"] == "who@example.com"
    assert page.error_beside("password") == "Wrong email or password."


async def test_the_password_form_names_each_mistake_and_changes_nothing(harness, browser):
    await browser.sign_up("changer@example.com")
    await browser.get("/account")
    refused = await browser.post(
        "/account/password",
        current_password=PASSWORD,
        new_password="short",
        new_password_again="other",
    )
    assert refused.status_code == 400
    page = Page(refused.text)
    assert page.error_beside("new_password").startswith("Choose a password of 10 to")
    assert page.error_beside("new_password_again").startswith("The two new passwords differ")
    wrong = await browser.post(
        "/account/password",
        current_password="not the password",
        new_password="a much longer one",
        new_password_again="a much longer one",
    )
    assert Page(wrong.text).error_beside("current_password") == "The current password is wrong."
    token = await browser.post("/account/tokens", name="x" * 65)
    assert token.status_code == 400
    page = Page(token.text)
    assert page.inputs["name"]["value"] == "x" * 65
    assert page.error_beside("name").startswith("Give the token a name of 1 to 64")
    # The old password still signs in.
    fresh = Browser(httpx.AsyncClient(base_url=harness.url, timeout=30))
    async with fresh.client:
        await fresh.get("/sign-in")
        opened = await fresh.post("/sign-in", email="changer@example.com", password=PASSWORD)
        assert opened.status_code == 303


# --- top-up --------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (tests/run.sh installs it)"
)


@needs_chromium
async def test_a_bad_custom_top_up_keeps_the_amount_and_the_custom_choice_and_buys_nothing(
    harness, tmp_path
):
    email = "topper@example.com"
    async with chromium_page(tmp_path / "profile", width=390, height=844) as (_, page):
        await sign_up_in_page(page, harness.url, email, PASSWORD)
        user = await harness.user_named(email)
        await harness.linked_agent(user, label="first")
        second = await harness.linked_agent(user, label="second")

        await page.goto(f"{harness.url}/top-up")
        await page.select_option("select[name=agent_id]", second.agent_id)
        await page.check("input[name=package][value=custom]")
        await page.fill("input[name=amount]", "2.50")
        async with page.expect_response(f"{harness.url}/top-up") as answer:
            await page.click("text=Continue to payment")
        assert (await answer.value).status == 400

        assert await page.input_value("input[name=amount]") == "2.50"
        assert await page.is_checked("input[name=package][value=custom]")
        assert not await page.is_checked("input[name=package][value=starter]")
        assert await page.input_value("select[name=agent_id]") == second.agent_id
        described_by = await page.get_attribute("input[name=amount]", "aria-describedby")
        error = page.locator(f"#{described_by}")
        assert await error.is_visible()
        assert (await error.inner_text()) == "A custom top-up is between $5.00 and $1,000.00."
        summary = await page.inner_text(".form-summary")
        assert summary == "One field below needs a change; nothing was bought."
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
    assert await rows(harness, topups) == []
    await harness.check_invariants()


# --- budget and freeze ---------------------------------------------------------------


async def test_a_budget_with_two_mistakes_shows_both_keeps_every_value_and_saves_nothing(
    harness, browser
):
    _, agent = await signed_up_with_agent(harness, browser, "budget@example.com")
    await browser.get("/agents")
    assert (
        await browser.post(f"/agents/{agent.agent_id}/controls", daily_limit="40")
    ).status_code == 303
    await browser.get("/agents")
    refused = await browser.post(
        f"/agents/{agent.agent_id}/controls",
        daily_limit="twenty",
        contract_limit="0",
        approval_threshold="7.5",
    )
    assert refused.status_code == 400
    page = Page(refused.text)
    assert page.inputs["daily_limit"]["value"] == "twenty"
    assert page.inputs["contract_limit"]["value"] == "0"
    assert page.inputs["approval_threshold"]["value"] == "7.5"
    assert page.error_beside("daily_limit") == "Enter a number of credits like 12 or 12.5."
    assert page.error_beside("contract_limit") == (
        "Enter more than 0 and at most a billion credits, or leave it empty."
    )
    assert "aria-describedby" not in page.inputs["approval_threshold"], "a good value is fine"
    assert page.summaries == ["2 fields below need a change; nothing was saved."]
    assert not FIELD_NAMES.search(refused.text.split("<main>")[1].split("</main>")[0])
    [controls] = await rows(harness, agent_controls)
    assert controls["daily_limit_millicredits"] == 40 * CREDIT
    assert controls["contract_limit_millicredits"] is None
    assert controls["approval_threshold_millicredits"] is None
    assert "frozen" not in page.inputs, "the freeze is not part of the budget form"


async def test_freeze_is_its_own_button_the_exchange_obeys_and_it_keeps_the_budget(
    harness, browser
):
    await shop(harness)
    _, buyer = await signed_up_with_agent(harness, browser, "freezer@example.com")
    await harness.mint(buyer.agent_id, 100 * CREDIT)
    page = await browser.get("/agents")
    assert f'action="/agents/{buyer.agent_id}/freeze"' in page.text
    assert "refuses every new purchase by this agent until you unfreeze it" in page.text
    await browser.post(f"/agents/{buyer.agent_id}/controls", daily_limit="50", contract_limit="9")
    await browser.get("/agents")
    forged = await browser.client.post(f"/agents/{buyer.agent_id}/freeze", data={})
    assert forged.status_code == 403
    frozen = await browser.post(f"/agents/{buyer.agent_id}/freeze")
    assert frozen.status_code == 303
    told = await browser.get(frozen.headers["location"])
    assert "Frozen: the exchange refuses every new purchase by &#39;buyer&#39;" in told.text
    assert f'action="/agents/{buyer.agent_id}/unfreeze"' in told.text
    with pytest.raises(ExchangeError) as refused:
        await buyer.hire(await a_quote(buyer), {"text": "while frozen"})
    assert refused.value.code == "agent_frozen"
    assert (await buyer.balance()).held_millicredits == 0
    [controls] = await rows(harness, agent_controls)
    assert (controls["daily_limit_millicredits"], controls["contract_limit_millicredits"]) == (
        50 * CREDIT,
        9 * CREDIT,
    )
    # Saving the budget while frozen keeps the freeze.
    await browser.post(f"/agents/{buyer.agent_id}/controls", daily_limit="60", contract_limit="9")
    [controls] = await rows(harness, agent_controls)
    assert controls["frozen_by_owner"] is True and controls["daily_limit_millicredits"] == 60_000
    await browser.get("/agents")
    assert (await browser.post(f"/agents/{buyer.agent_id}/unfreeze")).status_code == 303
    await buyer.hire(await a_quote(buyer), {"text": "thawed"})
    assert (await buyer.balance()).held_millicredits == PRICE
    await harness.check_invariants()


# --- approvals -----------------------------------------------------------------------


async def test_approvals_name_the_agent_the_provider_and_the_task_and_confirm_a_decision(
    harness, browser
):
    provider = await shop(harness)
    _, buyer = await signed_up_with_agent(harness, browser, "asker@example.com")
    await harness.mint(buyer.agent_id, 100 * CREDIT)
    await browser.get("/agents")
    await browser.post(f"/agents/{buyer.agent_id}/controls", approval_threshold="1")
    quote = await a_quote(buyer)
    with pytest.raises(ExchangeError) as waiting:
        await buyer.hire(quote, {"text": "translate the manual"})
    assert waiting.value.code == "pending_approval"
    page = await browser.get("/approvals")
    row = page.text.split(f'data-contract="{waiting.value.contract_id}"')[1].split("</tr>")[0]
    assert 'data-label="Agent" title="' + buyer.agent_id + '">buyer</td>' in row
    short_provider = f"{provider.agent_id[:6]}…{provider.agent_id[-4:]}"
    assert f">{short_provider}</td>" in row
    assert "translate the manual" in row
    approved = await browser.post(f"/approvals/{waiting.value.contract_id}/approve")
    assert approved.status_code == 303
    confirmed = await browser.get(approved.headers["location"])
    assert (
        "Approved: text.upper for 3 credits by &#39;buyer&#39;; the agent can now retry"
        in confirmed.text
    )
    again = await browser.post(f"/approvals/{waiting.value.contract_id}/reject")
    assert again.status_code == 409
    assert "This contract was already approved." in Page(again.text).summaries[0]
    contract = await buyer.hire(quote, {"text": "translate the manual"})
    assert contract.contract_id == waiting.value.contract_id
    await harness.check_invariants()


# --- unlink and cash-out ask first ---------------------------------------------------


async def test_unlinking_waits_for_a_confirmation_that_says_what_it_means(harness, browser):
    user, agent = await signed_up_with_agent(harness, browser, "unlinker@example.com")
    await harness.mint(agent.agent_id, 42 * CREDIT)
    await browser.get("/agents")
    asked = await browser.get(f"/agents/{agent.agent_id}/unlink")
    assert asked.status_code == 200
    assert "&#39;buyer&#39; keeps its 42 credits; you stop controlling its spending." in asked.text
    # A post without the confirmation (an old page's button) only asks.
    unconfirmed = await browser.post(f"/agents/{agent.agent_id}/unlink")
    assert unconfirmed.status_code == 200 and "you stop controlling its spending" in (
        unconfirmed.text
    )
    links = await harness.context.read(lambda c: linked_agents(c, user.user_id))
    assert [link.agent_id for link in links] == [agent.agent_id]
    done = await browser.post(f"/agents/{agent.agent_id}/unlink", confirm="yes")
    assert done.status_code == 303 and done.headers["location"] == "/agents?notice=unlinked"
    assert await harness.context.read(lambda c: linked_agents(c, user.user_id)) == []
    assert await available(harness, agent.agent_id) == 42 * CREDIT
    await harness.check_invariants()


async def connected(harness, browser, email: str, credits: int):
    user, agent = await signed_up_with_agent(harness, browser, email, label="seller")
    await harness.mint(agent.agent_id, credits * CREDIT)
    await complete_onboarding(await connect_onboarding_url(harness.context, user))
    assert await refresh_connect_status(harness.context, await harness.user_named(email))
    await browser.get("/payouts")
    return agent


async def test_a_cash_out_waits_for_a_confirmation_that_states_the_dollars(harness, browser):
    agent = await connected(harness, browser, "casher@example.com", 117)
    transfers_before = len(harness.offline.connect_state.transfers)
    asked = await browser.post("/payouts", agent_id=agent.agent_id, credits="100")
    assert asked.status_code == 200
    assert (
        "You will receive $9.00 (fee $1.00) in your bank; 100 credits leave &#39;seller&#39;."
        in asked.text
    )
    assert await rows(harness, payouts) == []
    assert await available(harness, agent.agent_id) == 117 * CREDIT
    assert len(harness.offline.connect_state.transfers) == transfers_before
    await harness.check_invariants()
    done = await browser.post("/payouts", agent_id=agent.agent_id, credits="100", confirm="yes")
    assert done.headers["location"] == "/payouts?notice=payout_paid"
    assert await available(harness, agent.agent_id) == 17 * CREDIT
    await harness.check_invariants()


async def test_cash_out_errors_speak_credits_and_dollars_and_check_the_balance_first(
    harness, browser
):
    agent = await connected(harness, browser, "short@example.com", 117)
    too_much = await browser.post("/payouts", agent_id=agent.agent_id, credits="999,999")
    assert too_much.status_code == 409
    page = Page(too_much.text)
    assert page.inputs["credits"]["value"] == "999,999"
    assert page.selected["agent_id"] == agent.agent_id
    assert page.error_beside("credits") == (
        "The agent has 117 credits ($11.70) available; this needs 999,999 credits ($99,999.90)."
    )
    assert "millicredits" not in too_much.text.split("<main>")[1].split("</main>")[0]
    too_little = await browser.post("/payouts", agent_id=agent.agent_id, credits="99")
    assert too_little.status_code == 400
    assert Page(too_little.text).error_beside("credits") == (
        "A cash-out is at least 100 credits ($10.00)."
    )
    confirmed_too_much = await browser.post(
        "/payouts", agent_id=agent.agent_id, credits="5000", confirm="yes"
    )
    assert confirmed_too_much.status_code == 409
    assert "this needs 5,000 credits ($500.00)" in confirmed_too_much.text
    assert await rows(harness, payouts) == []
    assert await available(harness, agent.agent_id) == 117 * CREDIT
    await harness.check_invariants()


async def test_the_months_maximum_is_cited_in_credits_and_dollars_when_the_balance_allows(
    harness, browser
):
    agent = await connected(harness, browser, "rich@example.com", 20_000)
    over = await browser.post("/payouts", agent_id=agent.agent_id, credits="10001")
    assert over.status_code == 400
    assert Page(over.text).error_beside("credits") == (
        "An agent cashes out at most 10,000 credits ($1,000.00) a month; "
        "10,000 credits ($1,000.00) remain this month."
    )
    assert await rows(harness, payouts) == []
    await harness.check_invariants()


async def test_an_operator_form_mistake_keeps_the_typed_values_and_freezes_nothing(
    harness, browser
):
    await browser.sign_up(OPERATOR_EMAIL)
    owner = await harness.user("owner@example.com")
    agent = await harness.linked_agent(owner)
    await browser.get("/operator")
    refused = await browser.post("/operator/freeze", agent_id=agent.agent_id, reason="  ")
    assert refused.status_code == 400
    page = Page(refused.text)
    assert page.inputs["agent_id"]["value"] == agent.agent_id
    assert page.error_beside("reason") == "Say why the agent is frozen."
    assert page.summaries == ["One field below needs a change; nothing was changed."]
    [controls] = await rows(harness, agent_controls)
    assert controls["frozen_by_operator"] is False
    frozen = await browser.post("/operator/freeze", agent_id=agent.agent_id, reason="review")
    assert frozen.status_code == 303
    [controls] = await rows(harness, agent_controls)
    assert controls["frozen_by_operator"] is True
