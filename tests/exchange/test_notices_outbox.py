"""Notices after commit: a step's reply does not wait for the send, and no notice is lost.

A step writes its notices to the outbox in its own transaction, so once it
has committed they are safe; they are then sent in the background while the
caller gets its reply, and stay in the outbox until their recipient
acknowledges them. These tests put a gate in front of the worker's real
notice publisher (held shut, or failing) and check that the reply comes
first, the notices still arrive, stopping the worker sends those in flight,
a failed send is relayed from the outbox, past the in-flight bound a step
waits for its own notices, a notice nobody acknowledged is sent again, and
an agent that was away gets what it missed when it comes back. Both
databases; invariants at the end.
"""

from __future__ import annotations

import asyncio

from agent_client import AgentKeys, subjects
from agent_client.limits import NOTICE_ACK_IDS_MAX
from agent_client.protocol import (
    AcknowledgeNotices,
    NoticesAckedReply,
    NoticesReply,
    SubscribeNotices,
)
from broker import auth_callout
from exchange.adapters import contract_store
from exchange.limits import NOTICE_CATCH_UP_PAGE, NOTICE_LIFETIME_S
from exchange.use_cases import exchange_context as context_module
from exchange.use_cases.exchange_context import OutboxNotice
from tests.exchange import notice_tap
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop, quote_from_a_shop_gone_away
from wallet import open_database

# A settled deal's notices (PROTOCOL.md section 1.7.1): the task to the
# provider, the delivery to the buyer, the release to both.
NOTICES_PER_DEAL = 4


class GatedPublisher:
    """The worker's real notice publisher behind a gate a test holds shut, or makes fail."""

    def __init__(self, real: context_module.NoticePublisher) -> None:
        self.real = real
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures_left = 0
        self.attempted: list[str] = []
        self.published: list[str] = []
        # The notice ids of each call, in order.
        self.batches: list[list[str]] = []

    async def publish_notices(self, notices):
        self.attempted.extend(notice.notice_id for notice in notices)
        self.batches.append([notice.notice_id for notice in notices])
        await self.gate.wait()
        refused = min(self.failures_left, len(notices))
        self.failures_left -= refused
        failures = [ConnectionError("NATS is unreachable (test)")] * refused
        failures += await self.real.publish_notices(notices[refused:])
        self.published.extend(
            notice.notice_id
            for notice, failure in zip(notices, failures, strict=True)
            if failure is None
        )
        return failures


def gated_publisher(exchange) -> GatedPublisher:
    context = exchange.worker.context
    publisher = GatedPublisher(context.publisher)
    context.publisher = publisher
    return publisher


async def quoted_buyer(exchange):
    """A provider serving echo, a funded buyer and a quote it may accept."""
    await open_echo_shop(await exchange.agent())
    buyer = await exchange.funded_agent(PRICE)
    return buyer, await echo_quote(buyer)


async def outbox_ids(database_url: str) -> list[str]:
    """The notices still in the outbox, read on an engine of our own (the worker's may
    be stopped)."""
    engine = open_database(database_url)
    try:
        return await notice_tap.outbox_ids(engine)
    finally:
        await engine.dispose()


async def wait_all_acknowledged(exchange) -> None:
    engine = open_database(exchange.worker.config.database_url)
    try:
        await notice_tap.wait_outbox_empty(engine)
    finally:
        await engine.dispose()


async def settle(contract) -> None:
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))


async def notices_described(exchange, agent) -> list[str]:
    """What the stream holds for ``agent``, sorted: the kind, and the event if any."""
    described = []
    for notice in await exchange.notices_to(agent.agent_id):
        kind = notice.__struct_config__.tag
        event = getattr(notice, "event", None)
        described.append(kind if event is None else f"{kind}:{event}")
    return sorted(described)


async def test_a_step_is_answered_while_its_notices_are_still_being_sent(exchange):
    buyer, quote = await quoted_buyer(exchange)
    publisher = gated_publisher(exchange)
    publisher.gate.clear()

    contract = await asyncio.wait_for(buyer.hire(quote, {"n": 1}), timeout=10)

    # Answered, committed, and the provider's notice still waiting at the gate.
    assert len(publisher.attempted) == 1 and publisher.published == []
    assert await outbox_ids(exchange.worker.config.database_url) == publisher.attempted
    publisher.gate.set()
    await settle(contract)
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (0, 0)
    # Each party acknowledged what it was sent.
    await wait_all_acknowledged(exchange)
    await exchange.check_invariants()


async def test_stopping_the_worker_sends_the_notices_in_flight(exchange):
    buyer, quote = await quoted_buyer(exchange)
    publisher = gated_publisher(exchange)
    publisher.gate.clear()
    contract = await buyer.hire(quote, {"n": 1})

    stopping = asyncio.create_task(exchange.worker.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stop must wait for the notices still in flight"
    publisher.gate.set()
    await asyncio.wait_for(stopping, timeout=10)

    assert sorted(publisher.published) == sorted(publisher.attempted)
    await exchange.restart()
    # The provider got its task while the worker stopped; its delivery (retried
    # until a worker answers) and acknowledgement reach the new one.
    await settle(contract)
    await wait_all_acknowledged(exchange)
    await exchange.check_invariants()


async def test_notices_whose_send_failed_are_relayed_from_the_outbox(exchange):
    buyer, quote = await quoted_buyer(exchange)
    publisher = gated_publisher(exchange)
    publisher.failures_left = 1  # the opening's one notice, to the provider

    contract = await buyer.hire(quote, {"n": 1})
    for _ in range(100):
        if publisher.attempted:
            break
        await asyncio.sleep(0.01)
    assert await outbox_ids(exchange.worker.config.database_url) == publisher.attempted[:1]

    # The provider hears of the contract only through the relay, which finds
    # the failed notice due at once, not after the ack wait.
    await exchange.worker.relay_outbox()
    await settle(contract)
    await wait_all_acknowledged(exchange)
    assert len(set(publisher.published)) == NOTICES_PER_DEAL
    await exchange.check_invariants()


async def test_past_the_in_flight_bound_a_step_waits_for_its_own_notices(exchange, monkeypatch):
    monkeypatch.setattr(context_module, "NOTICES_PUBLISHING_MAX", 1)
    first_buyer, first_quote = await quoted_buyer(exchange)
    second_buyer = await exchange.funded_agent(PRICE)
    second_quote = await echo_quote(second_buyer)
    publisher = gated_publisher(exchange)
    publisher.gate.clear()

    first = await asyncio.wait_for(first_buyer.hire(first_quote, {"n": 1}), timeout=10)
    second_hire = asyncio.create_task(second_buyer.hire(second_quote, {"n": 2}))
    await asyncio.sleep(0.3)
    assert not second_hire.done(), "a notice is in flight: the second step must wait"
    assert len(publisher.attempted) >= 2  # the second opening's own, at the gate too
    publisher.gate.set()
    second = await asyncio.wait_for(second_hire, timeout=10)

    await settle(first)
    await settle(second)
    await exchange.check_invariants()


async def test_a_party_is_sent_only_what_its_reply_did_not_tell_it(exchange):
    """The requester of a step has the contract in its reply: no notice of it, except
    a settlement, which reaches both parties (wait_settled waits for it)."""
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(2 * PRICE)
    contract = await buyer.hire(await echo_quote(buyer), {"n": 1})
    await settle(contract)
    assert (await buyer.wait_settled(contract.contract_id, timeout_s=10)).state == "released"
    assert await notices_described(exchange, provider) == [
        "notice.contract_opened",
        "notice.contract_updated:accept",
    ]
    assert await notices_described(exchange, buyer) == [
        "notice.contract_updated:accept",
        "notice.delivered",
    ]

    # A dispute is news to the provider only: the buyer asked for it.
    disputed = await buyer.hire(await echo_quote(buyer), {"n": 2})
    await disputed.wait_delivery(timeout_s=10)
    await disputed.reject_delivery(reason="not what I asked")
    to_provider = await notices_described(exchange, provider)
    assert to_provider.count("notice.contract_updated:reject") == 1
    assert await notices_described(exchange, buyer) == [
        "notice.contract_updated:accept",
        "notice.delivered",
        "notice.delivered",
    ]
    await exchange.check_invariants()


async def test_a_notice_stays_in_the_outbox_until_its_recipient_acknowledges_it(exchange):
    """Sent to an agent that is away, a notice waits in the outbox, is sent again
    once nobody acknowledged it within the ack wait, and reaches the agent when it
    comes back (notices.subscribe); the agent acts on it once and acknowledges it."""
    await exchange.put_timers_to_sleep(notice_ack_wait_s=0.5)
    provider_keys, buyer, quote = await quote_from_a_shop_gone_away(exchange)
    publisher = gated_publisher(exchange)

    contract = await buyer.hire(quote, {"n": 7})
    await exchange.notices_to(provider_keys.agent_id)
    (opening,) = publisher.published
    assert await outbox_ids(exchange.worker.config.database_url) == [opening]
    assert await exchange.worker.relay_outbox() == 0  # not due yet
    await asyncio.sleep(0.6)
    assert await exchange.worker.relay_outbox() == 1  # nobody acknowledged it
    assert publisher.published == [opening, opening]
    # Next due after a wait as long as its age: not at the next pass.
    assert await exchange.worker.relay_outbox() == 0

    provider = await exchange.agent(provider_keys)  # asks for what it missed
    await open_echo_shop(provider)  # the kept task runs now, once
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"n": 7}
    await contract.accept_delivery(delivery)
    await wait_all_acknowledged(exchange)
    assert publisher.published.count(opening) == 3
    view = await buyer.contract(contract.contract_id)
    assert view.state == "released"
    await exchange.check_invariants()


async def test_notices_queued_in_one_turn_of_the_loop_are_published_as_one_batch(exchange):
    """A group's callers are woken together: their notices share one publish call,
    not one call each."""
    publisher = gated_publisher(exchange)
    publisher.gate.clear()
    context = exchange.worker.context
    # Nobody listens to this agent's notices.
    recipient = AgentKeys.generate().agent_id
    subject = subjects.notifications(recipient)
    notices = [OutboxNotice(f"batched-{number}", recipient, subject, b"{}") for number in range(5)]

    # Five callers, each with its own notice, in one turn of the loop.
    await asyncio.gather(*(context.publish_soon([notice]) for notice in notices))
    await asyncio.sleep(0.2)
    assert publisher.batches == [[notice.notice_id for notice in notices]]

    publisher.gate.set()
    await exchange.worker.stop()  # waits for the notices in flight
    assert sorted(publisher.published) == sorted(notice.notice_id for notice in notices)
    await exchange.restart()
    await exchange.check_invariants()


async def test_notices_sent_while_an_agent_reconnects_come_when_it_asks_again(
    exchange, monkeypatch
):
    """A notice published while the provider's connection is down is lost on the
    way (core NATS keeps nothing); after the reconnect the client asks again
    (notices.subscribe) and gets it at once, not after the 30 s ack wait."""
    monkeypatch.setattr(auth_callout, "AGENT_SUSPENSION_S", 0.5)
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(PRICE)
    quote = await echo_quote(buyer)
    publisher = gated_publisher(exchange)

    assert exchange.evictor is not None
    await exchange.evictor.evict(provider.agent_id)  # its connection is cut
    contract = await buyer.hire(quote, {"n": 9})
    for _ in range(100):
        if publisher.published:
            break
        await asyncio.sleep(0.01)
    assert len(publisher.published) == 1  # sent while nobody was listening

    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == {"n": 9}
    assert publisher.published.count(publisher.published[0]) == 2  # once more, on asking
    await contract.accept_delivery(delivery)
    await wait_all_acknowledged(exchange)
    await exchange.check_invariants()


CATCH_UP_NOTICES = NOTICE_CATCH_UP_PAGE + 44  # more than one page


async def test_asking_sends_everything_missed_oldest_first_page_after_page(exchange):
    await exchange.put_timers_to_sleep()
    keys = AgentKeys.generate()
    context = exchange.worker.context
    notices = [
        OutboxNotice(f"missed-notice-{n:04}", keys.agent_id, "s", b"{}")
        for n in range(CATCH_UP_NOTICES)
    ]

    async def stage(connection) -> None:
        await context.stage(connection, notices)

    await context.run(stage)  # committed, never sent: the agent was away
    tap = await exchange.tap(keys)
    publisher = gated_publisher(exchange)

    await ask_for_notices(exchange, keys)
    for _ in range(200):
        if tap.arrivals == CATCH_UP_NOTICES:
            break
        await asyncio.sleep(0.02)
    assert [len(batch) for batch in publisher.batches] == [NOTICE_CATCH_UP_PAGE, 44]
    assert publisher.published == [notice.notice_id for notice in notices]
    assert tap.arrivals == CATCH_UP_NOTICES
    # Once acknowledged, nothing is sent again, however often the agent asks.
    ids = [notice.notice_id for notice in notices]
    for start in range(0, len(ids), NOTICE_ACK_IDS_MAX):
        await acknowledge(exchange, keys, ids[start : start + NOTICE_ACK_IDS_MAX])
    assert await notice_tap.outbox_ids(exchange.worker.engine) == []
    await ask_for_notices(exchange, keys)
    await asyncio.sleep(0.2)
    assert len(publisher.published) == CATCH_UP_NOTICES
    await exchange.check_invariants()


async def test_notices_past_their_lifetime_leave_the_outbox(exchange):
    context = exchange.worker.context
    now_ms = context.clock.now_ms()
    lifetime_ms = NOTICE_LIFETIME_S * 1000
    rows = [
        {"notice_id": notice_id, "subject": "s", "payload": "{}", "created_at_ms": created,
         "recipient": "U", "published_at_ms": created, "due_at_ms": created}
        for notice_id, created in (("expired", now_ms - lifetime_ms - 1), ("alive", now_ms - 1))
    ]  # fmt: skip

    async def add(connection) -> None:
        await contract_store.add_outbox_notices(connection, rows)

    await context.run(add)
    assert await exchange.worker.notices.prune() == 1
    assert await notice_tap.outbox_ids(exchange.worker.engine) == ["alive"]


async def ask_for_notices(exchange, keys: AgentKeys) -> None:
    reply = await exchange.signed_request(keys, SubscribeNotices)
    assert isinstance(reply, NoticesReply)


async def acknowledge(exchange, keys: AgentKeys, notice_ids: list[str]) -> None:
    reply = await exchange.signed_request(keys, AcknowledgeNotices, notice_ids=notice_ids)
    assert reply == NoticesAckedReply(removed=len(notice_ids))
