"""Threat model, permissions: an agent with a valid key of its own touches only what is its own.

Each test connects an attacker with a fresh agent key (a real nats-py client,
tests/threats/wire.py) and tries what the issue's adversary did against the
exchange before connection permissions existed: listen to everything, read
the stored results, take another agent's notices or acknowledge them away,
delete the streams, serve the exchange's subjects or its ``info``, publish
as somebody else or into somebody's inbox, flood an offline provider's
notice subject. Each attempt is refused by the server (the violation reaches the
attacker's error callback), and honest agents trade alongside: every deal
settles, nothing is refunded, and the ledger invariants hold.
"""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.js.api import ConsumerConfig

from agent_client import Agent, AgentKeys, AgentOptions, subjects
from agent_client.protocol import AcknowledgeNotices, ErrorReply, NoticesAckedReply
from agent_client.transport import connect_nats
from broker.streams import GOODS_STREAM, RESULT_STREAM
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop, quote_from_a_shop_gone_away
from tests.exchange.notice_tap import outbox_ids
from tests.threats.wire import connect_attacker

# A request the server silently refuses (a publish violation) gets no answer.
REFUSED_REQUEST_TIMEOUT_S = 1.0
JUNK_MESSAGES = 1_000


async def settle_one_deal(buyer: Agent) -> str:
    contract = await buyer.hire(await echo_quote(buyer), {"n": 1})
    delivery = await contract.wait_delivery(timeout_s=15)
    view = await contract.accept_delivery(delivery)
    assert view.state == "released"
    return view.contract_id


async def shop(exchange):
    provider = await exchange.agent()
    await open_echo_shop(provider)
    return provider


async def test_an_agent_cannot_listen_to_everything(exchange, nats_url):
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    heard: list[str] = []

    async def overhear(message) -> None:
        heard.append(message.subject)

    wide = [">", "agentx.>", "_INBOX.>", subjects.notifications("*"), "agentx.v2.results.>"]
    for subject in wide:
        await attacker.client.subscribe(subject, cb=overhear)
    for subject in wide:
        await attacker.wait_for_violation("subscription", subject)
    await shop(exchange)
    await settle_one_deal(await exchange.funded_agent(PRICE))
    await attacker.client.flush()
    assert heard == []
    await attacker.client.close()
    await exchange.check_invariants()


async def test_an_agent_cannot_read_the_stored_results(exchange, nats_url):
    await shop(exchange)
    await settle_one_deal(await exchange.funded_agent(PRICE))
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    js = attacker.client.jetstream(timeout=REFUSED_REQUEST_TIMEOUT_S)
    attempts = {
        "an ephemeral consumer": js.add_consumer(RESULT_STREAM, ConsumerConfig()),
        "the stream's info": js.stream_info(RESULT_STREAM),
        "a stored message": js.get_msg(RESULT_STREAM, seq=1),
        "a stored result": js.get_last_msg(RESULT_STREAM, "agentx.v2.results.>"),
    }
    for what, attempt in attempts.items():
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await attempt
            pytest.fail(f"the attacker got {what}")
    await attacker.wait_for_violation("publish", f"$JS.API.STREAM.INFO.{RESULT_STREAM}")
    await attacker.client.close()


async def test_an_agent_cannot_take_another_agents_notices(exchange, nats_url):
    provider = await shop(exchange)
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    stolen: list[bytes] = []

    async def steal(message) -> None:
        stolen.append(message.data)

    deliver_subject = subjects.notice_deliver_subject(provider.agent_id)
    queue = subjects.notice_queue_group(provider.agent_id)
    await attacker.client.subscribe(deliver_subject, queue=queue, cb=steal)
    await attacker.wait_for_violation("subscription", deliver_subject)
    buyers = [await exchange.funded_agent(PRICE) for _ in range(5)]
    settled = await asyncio.gather(*(settle_one_deal(buyer) for buyer in buyers))
    assert len(set(settled)) == 5 and stolen == []
    await attacker.client.close()
    await exchange.check_invariants()


async def test_nobody_connected_can_delete_a_stream(exchange, nats_url, exchange_keys):
    await shop(exchange)
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    js = attacker.client.jetstream(timeout=REFUSED_REQUEST_TIMEOUT_S)
    for attempt in (
        js.delete_stream(RESULT_STREAM),
        js.purge_stream(RESULT_STREAM),
        js.delete_stream(GOODS_STREAM),
    ):
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await attempt
    await attacker.client.close()
    # Not even a connection with the exchange's own key may delete or purge.
    worker = await connect_nats(nats_url, exchange_keys, name="a stolen worker key")
    worker_js = worker.jetstream(timeout=REFUSED_REQUEST_TIMEOUT_S)
    for attempt in (worker_js.delete_stream(RESULT_STREAM), worker_js.purge_stream(GOODS_STREAM)):
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await attempt
    worker_js = worker.jetstream(timeout=5)
    assert (await worker_js.stream_info(RESULT_STREAM)).config.name == RESULT_STREAM
    assert (await worker_js.stream_info(GOODS_STREAM)).config.name == GOODS_STREAM
    await worker.close()
    await settle_one_deal(await exchange.funded_agent(PRICE))
    await exchange.check_invariants()


async def test_an_agent_cannot_serve_the_exchanges_subjects_or_its_info(exchange, nats_url):
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    answered: list[str] = []

    async def impersonate(message) -> None:
        answered.append(message.subject)
        await message.respond(b'{"kind": "balance"}')

    every_request = subjects.exchange_request_wildcard(">")
    await attacker.client.subscribe(
        every_request, queue=subjects.EXCHANGE_QUEUE_GROUP, cb=impersonate
    )
    await attacker.client.subscribe(subjects.EXCHANGE_INFO, cb=impersonate)
    await attacker.wait_for_violation("subscription", every_request)
    await attacker.wait_for_violation("subscription", subjects.EXCHANGE_INFO)

    honest = await exchange.funded_agent(7_000)
    balances = await asyncio.gather(*(honest.balance() for _ in range(20)))
    assert {balance.available_millicredits for balance in balances} == {7_000}
    newcomer = await exchange.agent()
    assert newcomer.exchange_id == exchange.worker.exchange_id
    assert answered == []
    await attacker.client.close()
    await exchange.check_invariants()


async def test_an_agent_cannot_publish_as_someone_else_or_into_their_inbox(exchange, nats_url):
    victim = await exchange.funded_agent(9_000)
    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    targets = [
        subjects.exchange_request(victim.agent_id, "wallet.transfer"),
        subjects.portal_requests_of(victim.agent_id).replace(">", "cash_out"),
        f"{subjects.inbox_prefix(victim.agent_id)}.forged",
        # A forged notice, straight into the victim's notice subject.
        subjects.notice_deliver_subject(victim.agent_id),
        subjects.notifications(victim.agent_id),
        f"{subjects.inbox_prefix(exchange.worker.exchange_id)}.forged",
    ]
    for subject in targets:
        await attacker.client.publish(subject, b"{}")
    for subject in targets:
        await attacker.wait_for_violation("publish", subject)
    assert (await victim.balance()).available_millicredits == 9_000
    await attacker.client.close()
    await exchange.check_invariants()


async def test_junk_on_an_offline_providers_notice_subject_evicts_nothing(exchange, nats_url):
    provider_keys = AgentKeys.generate()
    provider = await exchange.agent(provider_keys)
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(PRICE)
    quote = await echo_quote(buyer)
    await provider.close()  # offline from here: its notices wait in the outbox
    contract = await buyer.hire(quote, {"n": 7})

    attacker = await connect_attacker(nats_url, AgentKeys.generate())
    notify = subjects.notice_deliver_subject(provider.agent_id)
    for _ in range(JUNK_MESSAGES):
        await attacker.client.publish(notify, b"junk")
    await attacker.client.flush()
    await attacker.wait_for_violation("publish", notify)
    await attacker.client.close()

    options = AgentOptions(close_grace_s=0.2)
    back = await Agent.connect(exchange.nats_url, provider_keys, options=options)
    exchange.agents.append(back)
    await open_echo_shop(back)  # hired while offline: the task runs now
    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == {"n": 7}
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_an_agent_cannot_acknowledge_away_another_agents_notices(exchange, nats_url):
    """Even knowing the ids (a worst case: notice ids are never published), an
    acknowledgement drops only the signer's own notices; the victim, away while
    hired, still gets its task when it comes back."""
    provider_keys, buyer, quote = await quote_from_a_shop_gone_away(exchange)
    contract = await buyer.hire(quote, {"n": 3})
    waiting = await outbox_ids(exchange.worker.engine)
    assert len(waiting) == 1

    attacker_keys = AgentKeys.generate()
    reply = await exchange.signed_request(attacker_keys, AcknowledgeNotices, notice_ids=waiting)
    assert reply == NoticesAckedReply(removed=0)
    too_many = await exchange.signed_request(
        attacker_keys, AcknowledgeNotices, notice_ids=waiting * 257
    )
    assert isinstance(too_many, ErrorReply) and too_many.code == "malformed"
    not_an_id = await exchange.signed_request(
        attacker_keys, AcknowledgeNotices, notice_ids=["not an id!" * 2]
    )
    assert isinstance(not_an_id, ErrorReply) and not_an_id.code == "malformed"
    # The victim's own acknowledgement, captured and sent again, is refused.
    subject, captured = exchange.signed_payload(
        provider_keys, AcknowledgeNotices, notice_ids=["nothing-it-holds-0"]
    )
    first = await exchange.raw_request(provider_keys, subject, captured)
    assert first == NoticesAckedReply(removed=0)
    again = await exchange.raw_request(provider_keys, subject, captured)
    assert isinstance(again, ErrorReply) and again.code == "replayed"
    assert await outbox_ids(exchange.worker.engine) == waiting

    back = await exchange.agent(provider_keys)
    await open_echo_shop(back)  # hired while away: the task runs now
    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == {"n": 3}
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()
