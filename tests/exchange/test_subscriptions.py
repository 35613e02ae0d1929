"""Subscriptions over a real worker: plans, period charges by the timers, tokens, cancels.

A provider publishes a plan on a capability it lists; a buyer subscribes
(the first period is charged at once, or after a trial) and the sweeper
charges each later period exactly once, under the human's spending
controls. A failed renewal leaves the subscription past due (access goes
on, the charge is retried) until the grace period ends and it lapses. A
cancel takes effect at the paid period's end. Tokens are checked offline
by the provider. Hostile input and races change nothing. Every test that
moves money ends with the ledger invariants, which include "no period is
charged twice". Both databases.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import sqlalchemy as sa

from agent_client import AgentKeys, ExchangeError, subjects
from agent_client.agent import EXCHANGE_AUDIENCE
from agent_client.errors import SignatureRejected
from agent_client.limits import SUBSCRIPTION_GRACE_S, SUBSCRIPTION_RETRY_S
from agent_client.protocol import (
    Envelope,
    PublishPlan,
    Subscribe,
    SubscriptionNotice,
    SubscriptionState,
    SubscriptionToken,
)
from agent_client.signing import (
    SystemClock,
    b64decode,
    b64encode,
    make_header,
    seal,
)
from exchange.adapters.exchange_tables import subscription_charges
from exchange.use_cases.subscriptions import request_cancellation
from human_portal.portal_tables import agent_controls, approvals
from tests.exchange.echo_shop import CAPABILITY, open_echo_shop

PRICE = 1_000
PERIOD_S = 3_600
FEE_BPS = 500  # the seeds' subscription fee


class _Shifted:
    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.shift_ms


class TimeTravel:
    """Runs the worker's subscription timers as if at a later time.

    The worker's clock is moved only while the timers run: the agents keep
    the real time, so their requests and the exchange's answers stay valid.
    Notices the timers sign then carry a future time the agents refuse; the
    tests read those from the notice stream instead (:func:`staged_events`).
    """

    def __init__(self, exchange) -> None:
        self._exchange = exchange
        self._real = exchange.worker.context.clock

    async def to(self, at_ms: int) -> int:
        context = self._exchange.worker.context
        context.clock = _Shifted(max(0, at_ms - SystemClock().now_ms() + 1))
        try:
            return await self._exchange.worker.subscriptions.sweep()
        finally:
            context.clock = self._real

    def back(self) -> None:
        self._exchange.worker.context.clock = self._real


@pytest.fixture
async def travel(exchange):
    await exchange.put_timers_to_sleep()
    traveller = TimeTravel(exchange)
    yield traveller
    traveller.back()


async def staged_events(exchange, subscription_id, agent_id):
    """The events of the notices sent to ``agent_id`` about a subscription, in order."""
    return [
        notice.event
        for notice in await exchange.notices_to(agent_id)
        if isinstance(notice, SubscriptionNotice)
        and notice.subscription.subscription_id == subscription_id
    ]


async def shop_with_plan(exchange, *, trial_s=0, price=PRICE, plan="monthly"):
    provider = await exchange.agent()
    await open_echo_shop(provider)
    plan_view = await provider.publish_plan(
        CAPABILITY, plan, price_millicredits=price, period_s=PERIOD_S, trial_s=trial_s
    )
    return provider, plan_view


async def controls(exchange, agent_id, **values):
    row = {
        "agent_id": agent_id,
        "daily_limit_millicredits": None,
        "contract_limit_millicredits": None,
        "approval_threshold_millicredits": None,
        "frozen_by_owner": False,
        "frozen_by_operator": False,
        "operator_freeze_reason": "",
        "updated_at_ms": 0,
        **values,
    }
    async with exchange.worker.engine.begin() as connection:
        await connection.execute(
            agent_controls.delete().where(agent_controls.c.agent_id == agent_id)
        )
        await connection.execute(agent_controls.insert().values(**row))


async def charge_periods(exchange, subscription_id):
    async with exchange.worker.engine.connect() as connection:
        rows = await connection.execute(
            sa.select(subscription_charges.c.period)
            .where(subscription_charges.c.subscription_id == subscription_id)
            .order_by(subscription_charges.c.period)
        )
        return list(rows.scalars())


def net_of(amount):
    return amount - amount * FEE_BPS // 10_000


# --- the life of a subscription ----------------------------------------------------------


async def test_the_first_period_is_charged_at_once_and_each_next_once_by_the_timers(
    exchange, travel
):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(5 * PRICE)
    subscription = await buyer.subscribe(plan)
    assert (subscription.state, subscription.periods_charged) == (SubscriptionState.ACTIVE, 1)
    assert (await buyer.balance()).available_millicredits == 4 * PRICE
    assert (await provider.balance()).available_millicredits == net_of(PRICE)
    started = await provider.wait_subscription_event(subscription.subscription_id, "started")
    assert started.buyer_id == buyer.agent_id

    # Nothing is due before the period ends; at its end, one renewal.
    assert await travel.to(subscription.period_ends_at_ms - 60_000) == 0
    assert await travel.to(subscription.period_ends_at_ms) == 1
    renewed = await buyer.subscription(subscription.subscription_id)
    assert renewed.periods_charged == 2
    # On time, the billing anchor holds: the new period starts where the old one ended.
    assert renewed.period_started_at_ms == subscription.period_ends_at_ms
    assert renewed.period_ends_at_ms == subscription.period_ends_at_ms + PERIOD_S * 1000
    # Sweeping again charges nothing more.
    assert await travel.to(subscription.period_ends_at_ms + 60_000) == 0
    assert await staged_events(exchange, subscription.subscription_id, buyer.agent_id) == [
        "started",
        "renewed",
    ]
    assert await charge_periods(exchange, subscription.subscription_id) == [1, 2]
    assert (await buyer.balance()).available_millicredits == 3 * PRICE
    assert (await provider.balance()).available_millicredits == 2 * net_of(PRICE)
    # The provider's analytics count the periods and their net revenue.
    (listing,) = (await provider.analytics()).listings
    assert (listing.capability, listing.subscription_periods) == (CAPABILITY, 2)
    assert listing.revenue_net_millicredits == 2 * net_of(PRICE)
    assert listing.fees_millicredits == 2 * (PRICE - net_of(PRICE))
    await exchange.check_invariants()


async def test_a_timer_racing_itself_charges_a_period_once(exchange, travel):
    _provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(5 * PRICE)
    subscription = await buyer.subscribe(plan)
    exchange.worker.context.clock = _Shifted(
        subscription.period_ends_at_ms - SystemClock().now_ms() + 1
    )
    sweeper = exchange.worker.subscriptions
    applied = await asyncio.gather(*(sweeper.sweep() for _ in range(4)), return_exceptions=True)
    travel.back()
    assert sum(count for count in applied if isinstance(count, int)) == 1
    assert await charge_periods(exchange, subscription.subscription_id) == [1, 2]
    assert (await buyer.balance()).available_millicredits == 3 * PRICE
    await exchange.check_invariants()


async def test_a_trial_charges_nothing_until_it_ends(exchange, travel):
    provider, plan = await shop_with_plan(exchange, trial_s=600)
    buyer = await exchange.funded_agent(2 * PRICE)
    subscription = await buyer.subscribe(plan)
    assert (subscription.state, subscription.periods_charged) == (SubscriptionState.TRIALING, 0)
    assert (await buyer.balance()).available_millicredits == 2 * PRICE
    token = await buyer.subscription_token(subscription.subscription_id)
    assert provider.check_subscription_token(token).state is SubscriptionState.TRIALING

    assert await travel.to(subscription.period_ends_at_ms) == 1
    paid = await buyer.subscription(subscription.subscription_id)
    assert (paid.state, paid.periods_charged) == (SubscriptionState.ACTIVE, 1)
    assert paid.period_started_at_ms == subscription.period_ends_at_ms
    assert (await buyer.balance()).available_millicredits == PRICE
    await exchange.check_invariants()


async def test_a_failed_renewal_is_retried_in_grace_and_a_late_payment_starts_a_new_period(
    exchange, travel
):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(PRICE)
    subscription = await buyer.subscribe(plan)
    sid = subscription.subscription_id
    assert await travel.to(subscription.period_ends_at_ms) == 1
    past_due = await buyer.subscription(sid)
    assert past_due.state is SubscriptionState.PAST_DUE
    assert past_due.failure.startswith("insufficient_funds")
    assert past_due.grace_ends_at_ms == subscription.period_ends_at_ms + SUBSCRIPTION_GRACE_S * 1000
    assert await staged_events(exchange, sid, buyer.agent_id) == ["started", "renewal_failed"]
    # Access goes on in grace: the provider still accepts tokens.
    token = await buyer.subscription_token(sid)
    assert provider.check_subscription_token(token).state is SubscriptionState.PAST_DUE
    # Before the retry interval nothing is tried; after it, with funds, it is paid.
    assert await travel.to(past_due.next_attempt_at_ms - 60_000) == 0
    await _mint(exchange, buyer, PRICE)
    assert await travel.to(past_due.next_attempt_at_ms) == 1
    paid = await buyer.subscription(sid)
    assert (paid.state, paid.periods_charged, paid.failure) == (SubscriptionState.ACTIVE, 2, "")
    assert paid.period_started_at_ms >= past_due.next_attempt_at_ms
    assert (await buyer.balance()).available_millicredits == 0
    assert (await provider.balance()).available_millicredits == 2 * net_of(PRICE)
    await exchange.check_invariants()


async def test_an_unpaid_subscription_lapses_when_the_grace_ends(exchange, travel):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(PRICE)
    subscription = await buyer.subscribe(plan)
    sid = subscription.subscription_id
    await travel.to(subscription.period_ends_at_ms)
    grace_ends_at_ms = subscription.period_ends_at_ms + SUBSCRIPTION_GRACE_S * 1000
    # Bounded: one retry an hour for the grace's three days, then the lapse.
    for _ in range(SUBSCRIPTION_GRACE_S // SUBSCRIPTION_RETRY_S + 2):
        view = await buyer.subscription(sid)
        if view.state is SubscriptionState.LAPSED:
            break
        assert view.state is SubscriptionState.PAST_DUE
        await travel.to(min(view.next_attempt_at_ms, grace_ends_at_ms))
    lapsed = await buyer.subscription(sid)
    assert lapsed.state is SubscriptionState.LAPSED
    assert lapsed.failed_attempts >= SUBSCRIPTION_GRACE_S // SUBSCRIPTION_RETRY_S
    assert (await staged_events(exchange, sid, provider.agent_id))[-1] == "lapsed"
    with pytest.raises(ExchangeError) as refused:
        await buyer.subscription_token(sid)
    assert refused.value.code == "invalid_state"
    assert await charge_periods(exchange, sid) == [1]
    assert (await buyer.balance()).available_millicredits == 0
    # A lapsed subscription no longer blocks a new one.
    await _mint(exchange, buyer, PRICE)
    again = await buyer.subscribe(plan)
    assert again.subscription_id != sid and again.periods_charged == 1
    await exchange.check_invariants()


async def test_a_cancel_takes_effect_at_the_period_end_and_charges_nothing_more(exchange, travel):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(3 * PRICE)
    subscription = await buyer.subscribe(plan)
    sid = subscription.subscription_id
    cancelling = await buyer.cancel_subscription(sid)
    assert (cancelling.state, cancelling.cancel_at_period_end) == (
        SubscriptionState.CANCELLING,
        True,
    )
    assert (await buyer.cancel_subscription(sid)) == cancelling  # again: nothing changes
    await provider.wait_subscription_event(sid, "cancelling")
    # Paid to the period's end: tokens are still given until then.
    provider.check_subscription_token(await buyer.subscription_token(sid))
    assert await travel.to(subscription.period_ends_at_ms) == 1
    ended = await buyer.subscription(sid)
    assert (ended.state, ended.periods_charged) == (SubscriptionState.ENDED, 1)
    assert await staged_events(exchange, sid, buyer.agent_id) == ["started", "cancelling", "ended"]
    assert (await buyer.balance()).available_millicredits == 2 * PRICE
    await exchange.check_invariants()


async def test_the_provider_may_cancel_too_and_a_past_due_cancel_ends_at_once(exchange, travel):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(PRICE)
    subscription = await buyer.subscribe(plan)
    sid = subscription.subscription_id
    await travel.to(subscription.period_ends_at_ms)
    assert (await buyer.subscription(sid)).state is SubscriptionState.PAST_DUE
    ended = await provider.cancel_subscription(sid)
    assert ended.state is SubscriptionState.ENDED
    assert await travel.to(ended.updated_at_ms + SUBSCRIPTION_RETRY_S * 1000) == 0
    assert await charge_periods(exchange, sid) == [1]
    await exchange.check_invariants()


async def test_a_humans_cancel_in_the_portal_is_applied_by_the_next_sweep(exchange, travel):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(2 * PRICE)
    sid = (await buyer.subscribe(plan)).subscription_id
    async with exchange.worker.engine.begin() as connection:
        stranger = await request_cancellation(
            connection, sid, buyer_ids={provider.agent_id}, now_ms=SystemClock().now_ms()
        )
        marked = await request_cancellation(
            connection, sid, buyer_ids={buyer.agent_id}, now_ms=SystemClock().now_ms()
        )
    assert stranger is None  # only the human behind the buyer cancels
    assert marked is not None and marked.state is SubscriptionState.ACTIVE
    assert await travel.to(SystemClock().now_ms()) == 1
    view = await buyer.wait_subscription_event(sid, "cancelling")
    assert view.cancel_at_period_end
    await exchange.check_invariants()


async def test_a_subscribe_refused_for_funds_succeeds_when_retried_after_a_top_up(exchange):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(PRICE - 1)
    with pytest.raises(ExchangeError) as poor:
        await buyer.subscribe(plan, request_id="after-top-up")
    assert poor.value.code == "insufficient_funds"
    assert (await buyer.subscriptions()).subscriptions == []
    await _mint(exchange, buyer, 1)
    subscription = await buyer.subscribe(plan, request_id="after-top-up")
    assert subscription.periods_charged == 1
    assert (await buyer.balance()).available_millicredits == 0
    assert (await provider.balance()).available_millicredits == net_of(PRICE)
    await exchange.check_invariants()


# --- spending controls ---------------------------------------------------------------------


async def test_a_frozen_agent_cannot_subscribe_and_a_freeze_fails_its_renewals(exchange, travel):
    _provider, plan = await shop_with_plan(exchange)
    frozen = await exchange.funded_agent(3 * PRICE)
    await controls(exchange, frozen.agent_id, frozen_by_owner=True)
    with pytest.raises(ExchangeError) as refused:
        await frozen.subscribe(plan)
    assert refused.value.code == "agent_frozen"
    assert (await frozen.subscriptions()).subscriptions == []

    buyer = await exchange.funded_agent(3 * PRICE)
    subscription = await buyer.subscribe(plan)
    await controls(exchange, buyer.agent_id, frozen_by_owner=True)
    await travel.to(subscription.period_ends_at_ms)
    view = await buyer.subscription(subscription.subscription_id)
    assert view.state is SubscriptionState.PAST_DUE
    assert view.failure.startswith("agent_frozen")
    assert (await buyer.balance()).available_millicredits == 2 * PRICE
    await exchange.check_invariants()


async def test_renewals_count_in_the_daily_limit_and_an_approval_covers_one_period(
    exchange, travel
):
    _provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(5 * PRICE)
    await controls(exchange, buyer.agent_id, approval_threshold_millicredits=PRICE - 1)
    with pytest.raises(ExchangeError) as refused:
        await buyer.subscribe(plan, request_id="first-try")
    assert refused.value.code == "pending_approval"
    async with exchange.worker.engine.begin() as connection:
        asked = (await connection.execute(sa.select(approvals.c.contract_id))).scalars().all()
        assert len(asked) == 1 and asked[0].endswith(".p1")
        await connection.execute(approvals.update().values(status="approved"))
    # The same request, retried, is approved now.
    subscription = await buyer.subscribe(plan, request_id="first-try")
    assert subscription.periods_charged == 1
    # The next period needs its own approval: a renewal waits for the human.
    await travel.to(subscription.period_ends_at_ms)
    view = await buyer.subscription(subscription.subscription_id)
    assert view.failure.startswith("pending_approval")
    # A daily limit counts what the subscription already spent today.
    await controls(exchange, buyer.agent_id, daily_limit_millicredits=PRICE)
    other_provider, other_plan = await shop_with_plan(exchange, plan="other")
    with pytest.raises(ExchangeError) as over:
        await buyer.subscribe(other_plan)
    assert over.value.code == "budget_exceeded"
    assert (await other_provider.balance()).available_millicredits == 0
    await exchange.check_invariants()


# --- tokens, checked offline ------------------------------------------------------------


async def test_a_token_is_checked_offline_and_any_tampering_fails(exchange, travel):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(2 * PRICE)
    sid = (await buyer.subscribe(plan)).subscription_id
    token = await buyer.subscription_token(sid)
    checked = provider.check_subscription_token(token, capability=CAPABILITY)
    assert (checked.buyer_id, checked.subscription_id) == (buyer.agent_id, sid)
    assert checked.header.expires_at_ms - checked.header.issued_at_ms <= 15 * 60 * 1000

    document = msgspec.json.decode(b64decode(token.doc))
    document["buyer_id"] = (await exchange.agent()).agent_id
    tampered = Envelope(doc=b64encode(msgspec.json.encode(document)), sig=token.sig)
    with pytest.raises(SignatureRejected) as bad:
        provider.check_subscription_token(tampered)
    assert bad.value.code == "bad_signature"
    # Another provider is not the token's audience.
    with pytest.raises(SignatureRejected) as elsewhere:
        (await exchange.agent()).check_subscription_token(token)
    assert elsewhere.value.code == "wrong_audience"
    # A buyer forging its own token is not the exchange.
    forged = _forged_token(exchange.keys_of(buyer), provider.agent_id, checked)
    with pytest.raises(SignatureRejected) as impostor:
        provider.check_subscription_token(forged)
    assert impostor.value.code == "signer_mismatch"
    with pytest.raises(SignatureRejected) as other_capability:
        provider.check_subscription_token(token, capability="text.other")
    assert other_capability.value.code == "forbidden"
    # Short-lived: a token from an hour ago is refused.
    late = _Shifted(3_600_000)
    with pytest.raises(SignatureRejected) as expired:
        from agent_client.subscribing import verify_subscription_token

        verify_subscription_token(
            token, exchange_ids={provider.exchange_id}, provider_id=provider.agent_id, clock=late
        )
    assert expired.value.code == "expired"
    # Only the buyer is given tokens.
    with pytest.raises(ExchangeError) as not_buyer:
        await provider.subscription_token(sid)
    assert not_buyer.value.code == "forbidden"


def _forged_token(keys: AgentKeys, provider_id: str, genuine: SubscriptionToken) -> Envelope:
    header = make_header(
        keys,
        audience=provider_id,
        subject=genuine.header.subject,
        lifetime_s=60,
        clock=SystemClock(),
    )
    return seal(msgspec.structs.replace(genuine, header=header), keys)


# --- hostile input: clear codes, nothing changed -------------------------------------------


async def test_bad_subscriptions_are_refused_and_change_nothing(exchange):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(3 * PRICE)
    stranger = await exchange.agent()

    async def refused(call):
        with pytest.raises(ExchangeError) as error:
            await call
        return error.value.code

    cheaper = msgspec.structs.replace(plan, price_millicredits=PRICE - 1)
    assert await refused(buyer.subscribe(cheaper)) == "invalid_request"
    unknown = msgspec.structs.replace(plan, plan_id="plan_" + "0" * 32)
    assert await refused(buyer.subscribe(unknown)) == "not_found"
    assert await refused(provider.subscribe(plan)) == "invalid_request"
    # Plans: only on a capability the provider lists; terms never change.
    assert (
        await refused(
            stranger.publish_plan(CAPABILITY, "x", price_millicredits=PRICE, period_s=PERIOD_S)
        )
        == "not_found"
    )
    changed = provider.publish_plan(
        CAPABILITY, plan.plan, price_millicredits=2 * PRICE, period_s=PERIOD_S
    )
    assert await refused(changed) == "invalid_request"
    same = await provider.publish_plan(
        CAPABILITY, plan.plan, price_millicredits=PRICE, period_s=PERIOD_S
    )
    assert same == plan

    subscription = await buyer.subscribe(plan)
    sid = subscription.subscription_id
    assert await refused(buyer.subscribe(plan)) == "invalid_state"  # one live per plan
    for call in (stranger.subscription(sid), stranger.cancel_subscription(sid)):
        assert await refused(call) == "not_found"
    assert await refused(stranger.subscription_token(sid)) == "not_found"
    assert await buyer.subscription(sid) == subscription
    assert (await buyer.balance()).available_millicredits == 2 * PRICE
    assert (await provider.balance()).available_millicredits == net_of(PRICE)
    await exchange.check_invariants()


async def test_malformed_plan_and_subscribe_documents_are_refused_before_any_use_case(exchange):
    provider, plan = await shop_with_plan(exchange)
    keys = exchange.keys_of(provider)
    bad_period = _raw_document(
        keys,
        PublishPlan,
        plan="tiny",
        capability=CAPABILITY,
        price_millicredits=PRICE,
        period_s=1,
    )
    reply = await exchange.raw_request(keys, _request_subject(keys, PublishPlan), bad_period)
    assert reply.code == "malformed"
    buyer = await exchange.funded_agent(PRICE)
    buyer_keys = exchange.keys_of(buyer)
    bad_key = _raw_document(
        buyer_keys,
        Subscribe,
        plan_id=plan.plan_id,
        price_millicredits=PRICE,
        period_s=PERIOD_S,
        request_id="has spaces",
    )
    reply = await exchange.raw_request(buyer_keys, _request_subject(buyer_keys, Subscribe), bad_key)
    assert reply.code == "malformed"
    assert (await buyer.balance()).available_millicredits == PRICE
    await exchange.check_invariants()


def _request_subject(keys, document_type):
    from agent_client.protocol import endpoint_of

    return subjects.exchange_request(keys.agent_id, endpoint_of(document_type))


def _raw_document(keys, document_type, **fields) -> bytes:
    """A signed document whose fields skip the constructor's checks (as a hostile client's)."""
    header = make_header(
        keys,
        audience=EXCHANGE_AUDIENCE,
        subject=_request_subject(keys, document_type),
        lifetime_s=30,
        clock=SystemClock(),
    )
    tag = document_type.__struct_config__.tag
    document = {"kind": tag, "header": msgspec.to_builtins(header), **fields}
    document_bytes = msgspec.json.encode(document)
    return msgspec.json.encode(
        {"doc": b64encode(document_bytes), "sig": b64encode(keys.sign(document_bytes))}
    )


# --- races ------------------------------------------------------------------------------


async def test_the_same_subscribe_sent_at_once_charges_once(exchange):
    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(5 * PRICE)
    answers = await asyncio.gather(
        *(buyer.subscribe(plan, request_id="once") for _ in range(5)), return_exceptions=True
    )
    views = [answer for answer in answers if not isinstance(answer, BaseException)]
    assert views and len({view.subscription_id for view in views}) == 1
    assert (await buyer.balance()).available_millicredits == 4 * PRICE
    assert (await provider.balance()).available_millicredits == net_of(PRICE)
    await exchange.check_invariants()


async def test_different_subscribes_to_one_plan_at_once_leave_one_live(exchange):
    _provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(5 * PRICE)
    answers = await asyncio.gather(
        *(buyer.subscribe(plan) for _ in range(5)), return_exceptions=True
    )
    started = [answer for answer in answers if not isinstance(answer, BaseException)]
    refused = [answer for answer in answers if isinstance(answer, ExchangeError)]
    assert len(started) == 1 and len(refused) == 4
    assert {error.code for error in refused} == {"invalid_state"}
    assert (await buyer.balance()).available_millicredits == 4 * PRICE
    await exchange.check_invariants()


async def _mint(exchange, agent, amount):
    from agent_client.operator import OperatorClient

    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(agent.agent_id, amount, reason="test top-up")


# --- the command line -------------------------------------------------------------------


async def test_agentx_subscriptions_lists_and_cancels(exchange, tmp_path, capsys):
    from exchange.entrypoints.cli import main

    provider, plan = await shop_with_plan(exchange)
    buyer = await exchange.funded_agent(2 * PRICE)
    sid = (await buyer.subscribe(plan)).subscription_id
    buyer_seed, provider_seed = tmp_path / "buyer.seed", tmp_path / "provider.seed"
    exchange.keys_of(buyer).save(buyer_seed)
    exchange.keys_of(provider).save(provider_seed)

    def cli(seed, *arguments):
        location = ["--url", exchange.nats_url, "--exchange-id", exchange.worker.exchange_id]
        return asyncio.to_thread(main, ["subscriptions", *arguments, *location, "--key", str(seed)])

    assert await cli(buyer_seed) == 0
    listed = capsys.readouterr().out
    # SUBSCRIPTION PLAN CAPABILITY PROVIDER STATE PRICE (cr) EVERY ("30 d") PAID UNTIL
    (cells,) = [line.split() for line in listed.splitlines() if line.startswith(sid)]
    assert "1 subscriptions as buyer" in listed and cells[:2] == [sid, "monthly"]
    assert cells[4] == "active" and cells[8] == "1"
    assert await cli(provider_seed, "--provider") == 0
    assert sid in capsys.readouterr().out
    assert await cli(buyer_seed, "--cancel", sid) == 0
    assert f"{sid}: cancelling" in capsys.readouterr().out
    assert await cli(buyer_seed, "--cancel", "sub_" + "0" * 32) == 1
    assert "no such subscription" in capsys.readouterr().err
    assert (await buyer.subscription(sid)).state is SubscriptionState.CANCELLING
    await exchange.check_invariants()
