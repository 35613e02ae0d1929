"""Notices after commit: a step's reply does not wait for JetStream, and no notice is lost.

A step writes its notices to the outbox in its own transaction, so once it
has committed they are safe; they are then published in the background while
the caller gets its reply. These tests put a gate in front of the worker's
real JetStream publisher (held shut, or failing) and check that the reply
comes first, the notices still arrive, stopping the worker publishes those in
flight, a failed publish is relayed from the outbox, and past the in-flight
bound a step waits for its own notices. Both databases; invariants at the end.
"""

from __future__ import annotations

import asyncio

from agent_client import AgentKeys, subjects
from exchange.use_cases import exchange_context as context_module
from exchange.use_cases.exchange_context import OutboxNotice
from tests.exchange import stored_notices
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop
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
        failures = [ConnectionError("JetStream is unreachable (test)")] * refused
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
        return await stored_notices.outbox_ids(engine)
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


async def test_a_step_is_answered_while_its_notices_still_wait_for_jetstream(exchange):
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
    await exchange.check_invariants()


async def test_stopping_the_worker_publishes_the_notices_in_flight(exchange):
    buyer, quote = await quoted_buyer(exchange)
    publisher = gated_publisher(exchange)
    publisher.gate.clear()
    await buyer.hire(quote, {"n": 1})

    stopping = asyncio.create_task(exchange.worker.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stop must wait for the notices still in flight"
    publisher.gate.set()
    await asyncio.wait_for(stopping, timeout=10)

    assert sorted(publisher.published) == sorted(publisher.attempted)
    # Stored by JetStream, so out of the outbox.
    assert await outbox_ids(exchange.worker.config.database_url) == []
    await exchange.restart()
    await exchange.check_invariants()


async def test_notices_whose_publish_failed_are_relayed_from_the_outbox(exchange, monkeypatch):
    monkeypatch.setattr(context_module, "OUTBOX_RELAY_DELAY_MS", 0)
    buyer, quote = await quoted_buyer(exchange)
    publisher = gated_publisher(exchange)
    publisher.failures_left = 1  # the opening's one notice, to the provider

    contract = await buyer.hire(quote, {"n": 1})
    for _ in range(100):
        if publisher.attempted:
            break
        await asyncio.sleep(0.01)
    assert await outbox_ids(exchange.worker.config.database_url) == publisher.attempted[:1]

    # The provider hears of the contract only through the relay.
    await exchange.worker.relay_outbox()
    await settle(contract)
    # Each relay run first deletes what was published since the last one.
    for _ in range(50):
        await exchange.worker.relay_outbox()
        if not await outbox_ids(exchange.worker.config.database_url):
            break
        await asyncio.sleep(0.1)
    assert await outbox_ids(exchange.worker.config.database_url) == []
    # With no relay delay, a notice may be re-published before its first publish
    # left the outbox; JetStream stores it once (its id is the message id).
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


async def test_the_outbox_keeps_only_what_jetstream_has_not_stored(exchange, monkeypatch):
    """Published notices leave the outbox (JetStream keeps them); unpublished ones stay."""
    monkeypatch.setattr(context_module, "OUTBOX_RELAY_DELAY_MS", 0)
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(2 * PRICE)
    await settle(await buyer.hire(await echo_quote(buyer), {"n": 1}))
    assert len(await exchange.notices_to(provider.agent_id)) == 2
    assert await outbox_ids(exchange.worker.config.database_url) == []

    publisher = gated_publisher(exchange)
    publisher.failures_left = 1_000  # JetStream refuses every notice from now on
    contract = await buyer.hire(await echo_quote(buyer), {"n": 2})
    for _ in range(100):
        if publisher.attempted:
            break
        await asyncio.sleep(0.01)
    await exchange.worker.context.flush_published()
    assert await outbox_ids(exchange.worker.config.database_url) == publisher.attempted

    publisher.failures_left = 0
    await exchange.worker.relay_outbox()  # what the relay re-published leaves too
    await settle(contract)
    assert len(await exchange.notices_to(provider.agent_id)) == 4
    assert await outbox_ids(exchange.worker.config.database_url) == []
    await exchange.check_invariants()


async def test_notices_queued_in_one_turn_of_the_loop_are_published_as_one_batch(exchange):
    """A group's callers are woken together: their notices share one publish call
    (one wait for JetStream's answers), not one call each."""
    publisher = gated_publisher(exchange)
    publisher.gate.clear()
    context = exchange.worker.context
    # Nobody listens to this agent's notices: the stream just keeps them.
    subject = subjects.notifications(AgentKeys.generate().agent_id)
    notices = [OutboxNotice(f"batched-{number}", subject, b"{}") for number in range(5)]

    # Five callers, each with its own notice, in one turn of the loop.
    await asyncio.gather(*(context.publish_soon([notice]) for notice in notices))
    await asyncio.sleep(0.2)
    assert publisher.batches == [[notice.notice_id for notice in notices]]

    publisher.gate.set()
    await exchange.worker.stop()  # waits for the notices in flight
    assert sorted(publisher.published) == sorted(notice.notice_id for notice in notices)
    await exchange.restart()
    await exchange.check_invariants()
