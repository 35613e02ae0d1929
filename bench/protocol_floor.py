"""Benchmark: the protocol's floor, a deal's signed messages with nothing behind them.

A settled deal is 4 signed round trips (RFQ/quote, ``contract.open``,
``contract.deliver``, ``contract.accept``), the last three answered by the
exchange with signed replies bound to their requests, and 4 exchange-signed
notices, which the parties verify and acknowledge (docs/PROTOCOL.md,
sections 1.4 and 1.7: a notice goes only where the reply has not told the
party already, and a settlement to both). This runs exactly that message
pattern, under NATS auth as the exchange runs, with no contract, ledger,
outbox or database:

* a stand-in for the exchange, in its own process as the exchange is,
  connects with the exchange's key (only that key may serve the agents'
  request subjects), verifies each request as the exchange's endpoints do
  (``verify_request``), answers at once with a signed reply bound to the
  request (``sign_reply``: every answer of the exchange is one), then seals
  the step's notices with its key and sends them, as the exchange does
  after its commit (1 for an opening, 1 for a delivery, 2 for an
  acceptance; ``--notices core:before`` sends the 7 the protocol sent until
  2026-12-06: 2, 3 and 2). Each notice is a plain core-NATS message to its
  recipient's notice subject (``subjects.notice_deliver_subject``,
  ``_INBOX.<id>.notices``: inside the agent's own inbox prefix, which only
  it may read; the broker lets the exchange's key publish there). It
  answers ``notices.subscribe`` (where the notices arrive) and
  ``notices.ack``: one signature verified per batch of acknowledged ids,
  and a signed ``NoticesAckedReply``. It keeps no outbox, so it sends
  nothing again; what the exchange's outbox costs (a row per notice
  inserted, and deleted when acknowledged) is the exchange's own work;
* in this process, a provider answers signed RFQs on the RFQ subject with
  signed quotes and delivers when it is told a contract opened; buyers run
  the deal: quote, open, wait for the delivery notice, accept. Each agent
  connects with its own key, checks every reply (``open_reply``), and
  listens for its notices as the Agent does (``_listen_for_notices``):
  queue-subscribes its notice subject first, then asks
  (``notices.subscribe``); it checks each notice (signature, audience,
  issuer, once only) and acknowledges the ids it handled in batches, as
  the client does (``agent_client.notice_acks.NoticeAcks``: once a second,
  or per 100 ids), each batch one signed ``notices.ack`` request. Ids still
  waiting when the timed part ends are acknowledged before its CPU is read,
  so every notice's acknowledgement is in the CPU figures;
  ``floor_notice_ack_requests_per_deal`` is how many requests that took.

The agents send their steps on their own request subjects
(``agentx.v2.x.<id>.floor.<step>``), which only the exchange key may serve,
but on endpoints the exchange does not have: an exchange running on the
same server (``bench/deals.py`` runs this beside it) never sees them.

Documents are the protocol's own types, but small (a contract id instead
of a quote, a task and a result; every reply carries one contract record
the stand-in sealed at start), so the floor is if anything optimistic.
No real exchange can settle deals faster than this on the same machine;
``bench/deals.py`` measures it in each run and reports ``ratio_vs_floor``.
Run alone, it starts its own nats-server with auth on (the auth callout in
this process).

``--notices jetstream[:TABLE]`` measures the notices' former design instead
(until 2026-12-07), kept as the baseline to compare with
(``bench/jetstream_notices.py``): the stand-in stores each notice in the
JetStream stream ``AGENTX_NOTICES`` on ``subjects.notifications(<id>)``
(waiting for the stream's acknowledgement, in a task of its own), creates
each agent's durable push consumer when asked (``notices.subscribe``), and
the consumer pushes the notices to the same ``_INBOX.<id>.notices``; the
agent acknowledges each message to JetStream (unsigned, one per notice),
and sends no ``notices.ack``. The broker no longer grants what that needs
(the exchange's key publishing to the notify subjects, an agent
acknowledging to its consumer), so the floor's own auth callout grants it
for these modes (``jetstream_notice_grant``): they run only in this
script's own main, not beside an exchange. Notices are signed for
``subjects.notifications(<id>)`` in every mode, as the exchange signs them.

    python bench/protocol_floor.py                    # closed loop, 64 buyers, core:sent
    python bench/protocol_floor.py --rate 200 --json  # open loop, p99 at 200/s
    python bench/protocol_floor.py --compare jetstream:before,jetstream:sent,core:sent
                                      # designs alternately in each run, ratios to the first
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import math
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
from benchmark_main import run_benchmark
from exchange_process import child_process, cpu_s, percentiles
from jetstream_notices import (
    NOTICE_STREAM,
    ensure_notice_consumer,
    ensure_notice_stream,
    notice_consumer_name,
)
from nats.aio.client import Client
from signed_rfq import PRICE_MILLICREDITS, check_quote, quote_for, sealed_rfq

from agent_client import AgentKeys, limits, subjects
from agent_client.agent import EXCHANGE_AUDIENCE
from agent_client.notice_acks import NoticeAcks
from agent_client.protocol import (
    AcknowledgeNotices,
    ContractRecord,
    ContractReply,
    ContractState,
    ContractUpdatedNotice,
    ContractView,
    DeliveredNotice,
    Document,
    Envelope,
    GetContract,
    Header,
    NoticesAckedReply,
    NoticesReply,
    Reply,
    SubscribeNotices,
    json_encoder,
)
from agent_client.replies import open_reply, sign_reply
from agent_client.signing import (
    Clock,
    ReplayGuard,
    SystemClock,
    make_header,
    new_nonce,
    open_envelope,
    seal,
    verify_evidence,
    verify_request,
)
from agent_client.transport import (
    BoundedDispatcher,
    IncomingMessage,
    NatsConnection,
    connect_nats,
    flush_subscriptions,
)
from broker import AccessPolicy, auth_callout
from broker.nats_jwt import UserPermissions
from broker.nats_process import EmbeddedNatsServer, NatsServerConfig
from broker.permissions import Role, permissions_for


class NoticeDelivery(enum.Enum):
    """How the stand-in hands each agent its notices."""

    # As the exchange sends them: a plain core-NATS message to the agent's notice
    # subject, acknowledged in batches with signed notices.ack requests.
    CORE = "core"
    # The former design (the baseline): stored in the notice stream, pushed by the
    # agent's durable consumer, each acknowledged to JetStream.
    JETSTREAM = "jetstream"


# The stand-in's endpoints: agentx.v2.x.<agent id>.floor.<step>.
FLOOR_ENDPOINT = "floor"
AGENT_TOKEN_INDEX = 3
# The RFQs of the floor's deals go to this capability's RFQ subject.
FLOOR_CAPABILITY = "bench.floor"
REQUEST_TIMEOUT_S = 10.0
DELIVERY_TIMEOUT_S = 30.0
HANDLER_CONCURRENCY_MAX = 256
RESULT_SHA256 = "0" * 64
NOTICE_LIFETIME_S = 3600
RECORD_LIFETIME_S = 3600


class NoticeTable(enum.Enum):
    """Which notices each step sends, and to whom."""

    # As the exchange sends them (PROTOCOL.md 1.7.1): none the reply already
    # told its requester, except a settlement; a buyer's delivery news is
    # notice.delivered alone.
    SENT = "sent"
    # As the protocol sent them until 2026-12-06: every change to both parties.
    BEFORE = "before"
    # Only to the party that did not cause the step (settlements too): not the protocol.
    COUNTERPARTY = "counterparty"


NOTICES_PER_STEP: dict[NoticeTable, dict[str, tuple[str, ...]]] = {
    NoticeTable.SENT: {
        "open": ("provider",),
        "deliver": ("buyer-delivered",),
        "accept": ("buyer", "provider"),
    },
    NoticeTable.BEFORE: {
        "open": ("provider", "buyer"),
        "deliver": ("buyer", "provider", "buyer-delivered"),
        "accept": ("buyer", "provider"),
    },
    NoticeTable.COUNTERPARTY: {
        "open": ("provider",),
        "deliver": ("buyer-delivered",),
        "accept": ("provider",),
    },
}


@dataclass(frozen=True, slots=True)
class FloorDesign:
    """How notices travel and which are sent: ``core:sent`` is the protocol today."""

    delivery: NoticeDelivery = NoticeDelivery.CORE
    table: NoticeTable = NoticeTable.SENT

    @classmethod
    def parse(cls, text: str, /) -> FloorDesign:
        delivery, _, table = text.partition(":")
        return cls(NoticeDelivery(delivery), NoticeTable(table or NoticeTable.SENT.value))

    @property
    def name(self) -> str:
        return f"{self.delivery.value}:{self.table.value}"


SUBSCRIBE_STEP = "subscribe"
# JetStream mode: a pushed message is acknowledged by publishing this to its reply subject.
JETSTREAM_ACK = b"+ACK"
# Core mode: an agent's batch of acknowledged notice ids (notices.ack).
ACK_STEP = "ack"
# The contract's state after each step, as the exchange's replies and notices say it.
STATE_AFTER_STEP: dict[str, ContractState] = {
    "open": ContractState.OPEN,
    "deliver": ContractState.DELIVERED,
    "accept": ContractState.RELEASED,
}
IN_FLIGHT_DEFAULT = 64
SECONDS_DEFAULT = 3.0
# Open loop: the first deal is due this long after the schedule is made.
SCHEDULE_LEAD_S = 0.1
# Open loop: enough buyers that each has this long for a deal before it is needed again.
OPEN_LOOP_DEAL_COVERS_S = 1.0
DEAL_NUMBER_MAX = 9_999_999  # a contract id is the buyer's id, a dot and this

assert REQUEST_TIMEOUT_S <= limits.REQUEST_LIFETIME_MAX_S


def notices_per_deal(table: NoticeTable, /) -> int:
    return sum(len(recipients) for recipients in NOTICES_PER_STEP[table].values())


assert [notices_per_deal(table) for table in NoticeTable] == [4, 7, 3]


def step_subject(agent_id: str, step: str, /) -> str:
    """One of the agent's own request subjects, on an endpoint the exchange does not serve."""
    return f"{subjects.exchange_requests_of(agent_id)[:-1]}{FLOOR_ENDPOINT}.{step}"


def contract_id_for(buyer_id: str, number: int, /) -> str:
    """The buyer's id and a deal number: the stand-in needs no table to find the buyer."""
    assert 0 <= number <= DEAL_NUMBER_MAX
    return f"{buyer_id}.{number}"


def buyer_of(contract_id: str, /) -> str:
    return contract_id.split(".", 1)[0]


# --- the stand-in for the exchange (its own process) -----------------------------


@dataclass(frozen=True, slots=True)
class StandIn:
    """What the stand-in process needs: the server, the exchange's key and the one provider."""

    nats_url: str
    seed: bytes
    provider_id: str
    design: FloorDesign = FloorDesign()


def run_stand_in(stand_in: StandIn, ready: multiprocessing.synchronize.Event) -> None:
    asyncio.run(serve_steps(stand_in, ready))


async def serve_steps(stand_in: StandIn, ready: multiprocessing.synchronize.Event) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    keys = AgentKeys.from_seed(stand_in.seed)
    clock = SystemClock()
    replay_guard = ReplayGuard()
    client = await connect_nats(stand_in.nats_url, keys, name="bench-floor-exchange")
    js = client.jetstream()
    notices = NOTICES_PER_STEP[stand_in.design.table]
    publisher = NoticePublisher(client, keys, clock, stand_in.design.delivery)
    record = sealed_record(keys, stand_in.provider_id, clock)

    async def reply_for(agent_id: str, step: str, request: Document) -> Reply:
        if step == SUBSCRIBE_STEP:
            assert isinstance(request, SubscribeNotices)
            if stand_in.design.delivery is NoticeDelivery.JETSTREAM:
                await ensure_notice_consumer(js, agent_id)
                queue_group = notice_consumer_name(agent_id)
            else:
                # The exchange also sends again what the agent has not acknowledged;
                # the stand-in keeps nothing to send.
                queue_group = subjects.notice_queue_group(agent_id)
            return NoticesReply(
                deliver_subject=subjects.notice_deliver_subject(agent_id),
                queue_group=queue_group,
            )
        if step == ACK_STEP:
            assert isinstance(request, AcknowledgeNotices)
            assert stand_in.design.delivery is NoticeDelivery.CORE
            # The exchange deletes the signer's own ids from its outbox; with no
            # outbox, every distinct id counts as one it held.
            return NoticesAckedReply(removed=len(set(request.notice_ids)))
        assert isinstance(request, GetContract)
        state = STATE_AFTER_STEP[step]
        return contract_reply(request.contract_id, state, stand_in.provider_id, record, clock)

    async def answer(message: IncomingMessage) -> None:
        tokens = message.subject.split(".")
        agent_id, step = tokens[AGENT_TOKEN_INDEX], tokens[-1]
        request = verify_request(
            open_envelope(message.data),
            subject=message.subject,
            subject_agent_id=agent_id,
            clock=clock,
            replay_guard=replay_guard,
        ).document
        assert request.header.audience == EXCHANGE_AUDIENCE
        reply = await reply_for(agent_id, step, request)
        signed = sign_reply(
            reply,
            keys=keys,
            audience=agent_id,
            request_subject=message.subject,
            request_payload=message.data,
            clock=clock,
        )
        await client.publish(message.reply, signed)
        if step in (SUBSCRIBE_STEP, ACK_STEP):
            return
        # After the answer, as the exchange publishes after commit.
        assert isinstance(request, GetContract)
        contract_id = request.contract_id
        for role in notices[step]:
            recipient = stand_in.provider_id if role == "provider" else buyer_of(contract_id)
            build = functools.partial(
                notice_document, contract_id=contract_id, step=step, role=role
            )
            await publisher.send(recipient, build)

    dispatcher = BoundedDispatcher(answer, concurrency_max=HANDLER_CONCURRENCY_MAX)
    try:
        await client.subscribe(step_subject("*", "*"), cb=dispatcher.dispatch)
        await flush_subscriptions(client)
        ready.set()
        await stop.wait()
    finally:
        await client.close()


class NoticePublisher:
    """Seals notices with the exchange's key and sends them the way ``delivery`` says.

    Core (the exchange's design): each is a plain message to the recipient's
    notice subject, sent at once and in order, since there is nothing to
    wait for. JetStream (the former design): each is stored in the notice
    stream in a task of its own, as the exchange published after its commit
    (the publish waits for the stream's acknowledgement).
    """

    def __init__(
        self, client: Client, keys: AgentKeys, clock: Clock, delivery: NoticeDelivery
    ) -> None:
        self._client = client
        self._js = client.jetstream()
        self._keys = keys
        self._clock = clock
        self._delivery = delivery
        self._publishing: set[asyncio.Task[None]] = set()

    async def send(self, recipient: str, build: Callable[[Header], Document]) -> None:
        """Seal the notice ``build`` makes for ``recipient`` and send it."""
        header = make_header(
            self._keys,
            audience=recipient,
            subject=subjects.notifications(recipient),
            lifetime_s=NOTICE_LIFETIME_S,
            clock=self._clock,
        )
        payload = json_encoder.encode(seal(build(header), self._keys))
        if self._delivery is NoticeDelivery.CORE:
            await self._publish_live(recipient, payload)
            return
        task = asyncio.create_task(self._store(recipient, payload))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish_live(self, recipient: str, payload: bytes) -> None:
        # As exchange/adapters/live_notices.py sends each.
        await self._client.publish(subjects.notice_deliver_subject(recipient), payload)

    async def _store(self, recipient: str, payload: bytes) -> None:
        await self._js.publish(
            subjects.notifications(recipient),
            payload,
            timeout=REQUEST_TIMEOUT_S,
            headers={"Nats-Msg-Id": new_nonce()},
        )


@contextlib.contextmanager
def jetstream_notice_grant() -> Iterator[None]:
    """While open, this process's auth callout also grants what the notices' former
    design needs: the exchange's key publishing notices into the notice stream
    (``subjects.notifications(<id>)``), and each agent acknowledging to its own
    durable consumer (``$JS.ACK.AGENTX_NOTICES.notices_<id>.>``).

    The broker granted both until notices went live (``broker/permissions.py``
    lets the exchange publish into ``_INBOX.*.notices`` instead); the floor's
    own server adds them here, for the JetStream modes only. Connections
    authorised meanwhile keep them.
    """

    def with_jetstream_notices(role: Role, identity: str, /) -> UserPermissions:
        permissions = permissions_for(role, identity)
        if role is Role.EXCHANGE:
            granted = subjects.notifications("*")
        elif role is Role.AGENT:
            granted = f"$JS.ACK.{NOTICE_STREAM}.{notice_consumer_name(identity)}.>"
        else:
            return permissions
        publish = permissions.pub
        return msgspec.structs.replace(
            permissions,
            pub=msgspec.structs.replace(publish, allow=(*publish.allow, granted)),
        )

    # The callout looks the function up in its own module on each connection.
    with mock.patch.object(auth_callout, "permissions_for", with_jetstream_notices):
        yield


def sealed_record(keys: AgentKeys, provider_id: str, clock: Clock) -> Envelope:
    """One contract record, sealed once: every reply carries it (a real one is per contract)."""
    header = make_header(
        keys, audience=provider_id, subject="floor", lifetime_s=RECORD_LIFETIME_S, clock=clock
    )
    record = ContractRecord(
        header=header,
        contract_id=contract_id_for(provider_id, 0),
        buyer_id=provider_id,
        provider_id=provider_id,
        capability=FLOOR_CAPABILITY,
        price_millicredits=PRICE_MILLICREDITS,
        fee_millicredits=PRICE_MILLICREDITS // 20,
        delivery_deadline_ms=header.expires_at_ms,
        quote_sha256=RESULT_SHA256,
        acceptance_sha256=RESULT_SHA256,
    )
    return seal(record, keys)


def contract_reply(
    contract_id: str, state: ContractState, provider_id: str, record: Envelope, clock: Clock
) -> ContractReply:
    now_ms = clock.now_ms()
    return ContractReply(
        contract=ContractView(
            contract_id=contract_id,
            state=state,
            buyer_id=buyer_of(contract_id),
            provider_id=provider_id,
            capability=FLOOR_CAPABILITY,
            price_millicredits=PRICE_MILLICREDITS,
            fee_millicredits=PRICE_MILLICREDITS // 20,
            delivery_deadline_ms=now_ms + RECORD_LIFETIME_S * 1000,
            result_sha256=RESULT_SHA256 if state is not ContractState.OPEN else None,
            record=record,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
    )


def notice_document(header: Header, contract_id: str, step: str, role: str) -> Document:
    if role == "buyer-delivered":
        return DeliveredNotice(header=header, contract_id=contract_id, result_sha256=RESULT_SHA256)
    return ContractUpdatedNotice(
        header=header,
        contract_id=contract_id,
        state=STATE_AFTER_STEP[step],
        event=step,
        price_millicredits=PRICE_MILLICREDITS,
        fee_millicredits=PRICE_MILLICREDITS // 20,
    )


# --- the agents (this process) ----------------------------------------------------


class FloorAgent:
    """One identity with its own connection, its notices and their acknowledgements."""

    def __init__(self, keys: AgentKeys, connection: NatsConnection, exchange_id: str) -> None:
        self.keys = keys
        self.agent_id = keys.agent_id
        self.connection = connection
        self.exchange_id = exchange_id
        self.clock = SystemClock()
        self._notice_guard = ReplayGuard()
        # Core mode: handled notices' ids, acknowledged in batches as the Agent does.
        self._acks = NoticeAcks(self._acknowledge)
        # Signed notices.ack requests this agent sent (each answered).
        self.ack_requests = 0

    @classmethod
    async def connect(cls, nats_url: str, exchange_id: str) -> FloorAgent:
        keys = AgentKeys.generate()
        connection = await NatsConnection.connect(nats_url, keys, name="bench-floor-agent")
        return cls(keys, connection, exchange_id)

    async def listen(
        self, on_notice: Callable[[Document], Awaitable[None]], *, notices: NoticeDelivery
    ) -> None:
        """Listen for notices as the Agent does (core), or as it did (JetStream).

        Core: queue-subscribe the notice subject first, then ask the stand-in
        (``notices.subscribe``); each notice handled is acknowledged with the
        next batch, a repeat too (as ``Agent._on_notice_message`` does).
        JetStream: ask the stand-in for a durable consumer, then subscribe to
        where it pushes, acknowledging each message to JetStream.
        """

        async def handle(message: IncomingMessage) -> None:
            notice, first_time = self.verified_notice(message.data)
            if first_time:
                await on_notice(notice)
            if notices is NoticeDelivery.CORE:
                self._acks.add(notice.header.nonce)
            else:
                # What nats-py's Msg.ack() sends: the consumer's acknowledgement.
                await self.connection.publish(message.reply, JETSTREAM_ACK)

        if notices is NoticeDelivery.CORE:
            await self.connection.subscribe(
                subjects.notice_deliver_subject(self.agent_id),
                handle,
                queue=subjects.notice_queue_group(self.agent_id),
                concurrency_max=HANDLER_CONCURRENCY_MAX,
            )
        reply = await self.request(SUBSCRIBE_STEP, lambda header: SubscribeNotices(header=header))
        assert isinstance(reply, NoticesReply), reply
        assert reply.deliver_subject == subjects.notice_deliver_subject(self.agent_id), reply
        if notices is NoticeDelivery.CORE:
            return
        await self.connection.subscribe(
            reply.deliver_subject,
            handle,
            queue=reply.queue_group,
            concurrency_max=HANDLER_CONCURRENCY_MAX,
        )

    def verified_notice(self, data: bytes) -> tuple[Document, bool]:
        """The checks the Agent runs on a notice (signature, audience, issuer), and
        whether it is the first time it came (its nonce makes it count once)."""
        opened = open_envelope(data)
        document = verify_evidence(
            opened,
            expected_type=type(opened.document),
            audience=self.agent_id,
            issuer=self.exchange_id,
            expected_subject=subjects.notifications(self.agent_id),
            clock=self.clock,
            lifetime_max_s=limits.NOTICE_LIFETIME_MAX_S,
        ).document
        header = document.header
        if self._notice_guard.seen(header.issuer, header.nonce):
            return document, False
        self._notice_guard.remember(
            header.issuer, header.nonce, header.expires_at_ms, now_ms=self.clock.now_ms()
        )
        return document, True

    async def _acknowledge(self, notice_ids: list[str]) -> None:
        """One batch: a signed notices.ack, its signed reply checked (``NoticeAcks`` sends)."""
        reply = await self.request(
            ACK_STEP, lambda header: AcknowledgeNotices(header=header, notice_ids=notice_ids)
        )
        assert isinstance(reply, NoticesAckedReply), reply
        self.ack_requests += 1

    async def acknowledge_now(self) -> None:
        """Send the ids still waiting at once (the batch timer stops until the next notice)."""
        await self._acks.close()

    async def request(self, step: str, build: Callable[[Header], Document]) -> Reply:
        """A signed request to the stand-in; its signed reply checked as the Agent checks one."""
        subject = step_subject(self.agent_id, step)
        header = make_header(
            self.keys,
            audience=EXCHANGE_AUDIENCE,
            subject=subject,
            lifetime_s=REQUEST_TIMEOUT_S,
            clock=self.clock,
        )
        payload = json_encoder.encode(seal(build(header), self.keys))
        data = await self.connection.request(subject, payload, timeout_s=REQUEST_TIMEOUT_S)
        _, reply = open_reply(
            data,
            signer_id=self.exchange_id,
            audience=self.agent_id,
            request_subject=subject,
            request_payload=payload,
            clock=self.clock,
        )
        return reply

    async def step(self, step: str, contract_id: str) -> None:
        reply = await self.request(
            step, lambda header: GetContract(header=header, contract_id=contract_id)
        )
        assert isinstance(reply, ContractReply) and reply.contract.contract_id == contract_id

    async def close(self) -> None:
        await self.connection.close()


async def serve_as_provider(provider: FloorAgent, *, notices: NoticeDelivery) -> None:
    """Quote every RFQ and deliver every contract ``provider`` is told opened."""
    replay_guard = ReplayGuard()
    delivering: set[asyncio.Task[None]] = set()

    async def quote(message: IncomingMessage) -> None:
        await provider.connection.publish(
            message.reply,
            quote_for(message.data, message.subject, provider.keys, provider.clock, replay_guard),
        )

    async def on_notice(notice: Document) -> None:
        if isinstance(notice, ContractUpdatedNotice) and notice.state is ContractState.OPEN:
            # The Agent performs the task in a task of its own, then delivers.
            task = asyncio.create_task(provider.step("deliver", notice.contract_id))
            delivering.add(task)
            task.add_done_callback(delivering.discard)

    await provider.connection.subscribe(
        subjects.rfq(FLOOR_CAPABILITY), quote, concurrency_max=HANDLER_CONCURRENCY_MAX
    )
    await provider.listen(on_notice, notices=notices)


class Buyer:
    """Runs deals one after another: quote, open, wait for the delivery, accept."""

    def __init__(self, agent: FloorAgent, provider_id: str) -> None:
        self.agent = agent
        self.provider_id = provider_id
        self.deals_done = 0
        self._deliveries: dict[str, asyncio.Future[None]] = {}

    async def on_notice(self, notice: Document) -> None:
        if isinstance(notice, DeliveredNotice):
            future = self._deliveries.get(notice.contract_id)
            if future is not None and not future.done():
                future.set_result(None)

    async def deal(self) -> None:
        agent = self.agent
        contract_id = contract_id_for(agent.agent_id, self.deals_done)
        await self.quote()
        delivered = asyncio.get_running_loop().create_future()
        self._deliveries[contract_id] = delivered
        try:
            await agent.step("open", contract_id)
            await asyncio.wait_for(delivered, DELIVERY_TIMEOUT_S)
        finally:
            del self._deliveries[contract_id]
        await agent.step("accept", contract_id)
        self.deals_done += 1

    async def quote(self) -> None:
        agent = self.agent
        subject = subjects.rfq(FLOOR_CAPABILITY)
        rfq, rfq_id = sealed_rfq(agent.keys, subject, agent.clock)
        reply = await agent.connection.request(subject, rfq, timeout_s=REQUEST_TIMEOUT_S)
        check_quote(
            reply,
            buyer_id=agent.agent_id,
            subject=subject,
            provider_id=self.provider_id,
            rfq_id=rfq_id,
            clock=agent.clock,
        )


# --- the measurement ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloorMarket:
    """The provider and the buyers, with the stand-in's pid."""

    provider: FloorAgent
    buyers: list[Buyer]
    stand_in_pid: int

    @property
    def agents(self) -> list[FloorAgent]:
        return [self.provider, *(buyer.agent for buyer in self.buyers)]

    def ack_requests(self) -> int:
        """The signed notices.ack requests the agents have sent so far."""
        return sum(agent.ack_requests for agent in self.agents)

    async def acknowledge_now(self) -> None:
        """Every agent sends the notice ids still waiting for their batch."""
        await asyncio.gather(*(agent.acknowledge_now() for agent in self.agents))


@contextlib.asynccontextmanager
async def floor_market(
    nats_url: str,
    exchange_keys: AgentKeys,
    buyers_count: int,
    *,
    design: FloorDesign,
) -> AsyncIterator[FloorMarket]:
    """The stand-in, a provider and ``buyers_count`` buyers.

    The stand-in connects with ``exchange_keys``: under NATS auth only the
    exchange's key may serve the agents' request subjects. On exit the
    agents send their last acknowledgements and close while the stand-in
    still answers (the stack unwinds in reverse), then it stops.
    """
    notices = design.delivery
    async with contextlib.AsyncExitStack() as stack:
        provider = await FloorAgent.connect(nats_url, exchange_keys.agent_id)
        stack.push_async_callback(provider.close)
        stand_in = StandIn(nats_url, exchange_keys.seed_text(), provider.agent_id, design)
        stand_in_pid = await stack.enter_async_context(
            child_process(run_stand_in, stand_in, name="exchange stand-in")
        )
        stack.push_async_callback(provider.acknowledge_now)
        await serve_as_provider(provider, notices=notices)
        buyers: list[Buyer] = []
        for _ in range(buyers_count):
            agent = await FloorAgent.connect(nats_url, exchange_keys.agent_id)
            stack.push_async_callback(agent.close)
            stack.push_async_callback(agent.acknowledge_now)
            buyer = Buyer(agent, provider.agent_id)
            await agent.listen(buyer.on_notice, notices=notices)
            buyers.append(buyer)
        yield FloorMarket(provider, buyers, stand_in_pid)


def cpu_now_s(pids: Mapping[str, int], /) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}


def cpu_ms_per_deal(
    started_s: Mapping[str, float], pids: Mapping[str, int], deals: int, /
) -> dict[str, float]:
    """The CPU each process (by the name its figure takes) spent per deal since ``started_s``."""
    return {
        f"floor_cpu_ms_per_deal_{name}": (cpu_s(pid) - started_s[name]) * 1000 / max(1, deals)
        for name, pid in pids.items()
    }


async def floor_closed_loop(
    nats_url: str,
    nats_server_pids: Mapping[str, int],
    exchange_keys: AgentKeys,
    *,
    in_flight: int = IN_FLIGHT_DEFAULT,
    seconds: float = SECONDS_DEFAULT,
    design: FloorDesign = FloorDesign(),
) -> dict[str, float]:
    """Deals per second with ``in_flight`` buyers each dealing one after another.

    Also the CPU each process spent per deal: the stand-in, the agents (this
    process) and the nats-servers (``nats_server_pids``: each one's pid by
    the name its figure takes, e.g. ``{"nats_server": pid}``), the timed
    part's notices all acknowledged; and the acknowledgements it took.
    """
    latencies_s: list[float] = []
    async with floor_market(
        nats_url,
        exchange_keys,
        in_flight,
        design=design,
    ) as market:
        deadline = time.perf_counter() + seconds

        async def trade(buyer: Buyer) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await buyer.deal()
                latencies_s.append(time.perf_counter() - started)

        pids = {"stand_in": market.stand_in_pid, "agents": os.getpid(), **nats_server_pids}
        cpu_started_s = cpu_now_s(pids)
        acks_started = market.ack_requests()
        started = time.perf_counter()
        await asyncio.gather(*(trade(buyer) for buyer in market.buyers))
        elapsed_s = time.perf_counter() - started
        await market.acknowledge_now()
        cpu_figures = cpu_ms_per_deal(cpu_started_s, pids, len(latencies_s))
        acks = market.ack_requests() - acks_started
    return {
        "floor_deals_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
        **cpu_figures,
        "floor_notice_ack_requests_per_deal": acks / max(1, len(latencies_s)),
    }


async def floor_open_loop(
    nats_url: str,
    exchange_keys: AgentKeys,
    *,
    rate_per_s: float,
    seconds: float,
    design: FloorDesign = FloorDesign(),
    nats_server_pids: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """A deal due every 1/rate s on a free buyer; latency from its scheduled start.

    Given ``nats_server_pids``, also the CPU per deal as ``floor_closed_loop``
    gives it, over the whole schedule (idle gaps included); and, as it does,
    the acknowledgements per deal.
    """
    deals_total = max(1, round(rate_per_s * seconds))
    buyers_count = max(8, math.ceil(rate_per_s * OPEN_LOOP_DEAL_COVERS_S))
    latencies_s: list[float] = []
    async with floor_market(
        nats_url,
        exchange_keys,
        buyers_count,
        design=design,
    ) as market:
        free = asyncio.Queue[Buyer]()
        for buyer in market.buyers:
            free.put_nowait(buyer)
        pids = {
            "stand_in": market.stand_in_pid,
            "agents": os.getpid(),
            **(nats_server_pids or {}),
        }
        cpu_started_s = cpu_now_s(pids)
        acks_started = market.ack_requests()
        first_due = time.perf_counter() + SCHEDULE_LEAD_S

        async def deal(due: float) -> None:
            buyer = await free.get()
            try:
                await buyer.deal()
            finally:
                free.put_nowait(buyer)
            latencies_s.append(time.perf_counter() - due)

        tasks = []
        for index in range(deals_total):
            due = first_due + index / rate_per_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(deal(due)))
        await asyncio.gather(*tasks)
        elapsed_s = time.perf_counter() - first_due
        await market.acknowledge_now()
        cpu_figures = cpu_ms_per_deal(cpu_started_s, pids, len(latencies_s))
        acks = market.ack_requests() - acks_started
    return {
        "floor_offered_rate_per_s": rate_per_s,
        "floor_achieved_rate_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
        **(cpu_figures if nats_server_pids is not None else {}),
        "floor_notice_ack_requests_per_deal": acks / max(1, len(latencies_s)),
    }


def floor_percentiles(latencies_s: list[float]) -> dict[str, float]:
    return {f"floor_{name}": value for name, value in percentiles(latencies_s).items()}


async def floor_run(
    nats_url: str,
    nats_server_pid: int,
    exchange_keys: AgentKeys,
    arguments: argparse.Namespace,
    design: FloorDesign,
) -> dict[str, float]:
    """One run of the floor's own main: closed loop, or open loop with ``--rate``."""
    nats_server_pids = {"nats_server": nats_server_pid}
    if arguments.rate is None:
        return await floor_closed_loop(
            nats_url,
            nats_server_pids,
            exchange_keys,
            in_flight=arguments.in_flight,
            design=design,
        )
    return await floor_open_loop(
        nats_url,
        exchange_keys,
        rate_per_s=arguments.rate,
        seconds=arguments.duration,
        design=design,
        nats_server_pids=nats_server_pids,
    )


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    exchange_keys = AgentKeys.generate()
    access = AccessPolicy(exchange_ids=frozenset({exchange_keys.agent_id}))
    designs: tuple[FloorDesign, ...] = arguments.designs
    deliveries = {design.delivery for design in designs}
    runs: dict[FloorDesign, list[dict[str, float]]] = {design: [] for design in designs}
    grant = (
        jetstream_notice_grant()
        if NoticeDelivery.JETSTREAM in deliveries
        else contextlib.nullcontext()
    )
    with tempfile.TemporaryDirectory(prefix="agentx-bench-floor-") as data_dir, grant:
        config = NatsServerConfig(data_dir=Path(data_dir))
        async with EmbeddedNatsServer(config, access=access) as server:
            if NoticeDelivery.JETSTREAM in deliveries:
                client = await connect_nats(server.url, exchange_keys, name="bench-floor-setup")
                try:
                    await ensure_notice_stream(client.jetstream())
                finally:
                    await client.close()
            nats_server_pid = server.process_id
            assert nats_server_pid is not None
            for index in range(arguments.runs):
                # Which goes first alternates, so that neither always meets a warmer machine.
                for design in designs if index % 2 == 0 else designs[::-1]:
                    runs[design].append(
                        await floor_run(
                            server.url, nats_server_pid, exchange_keys, arguments, design
                        )
                    )
    return summarize(arguments, runs)


def medians(runs: list[dict[str, float]], /) -> dict[str, float]:
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def summarize(
    arguments: argparse.Namespace, runs: Mapping[FloorDesign, list[dict[str, float]]]
) -> dict[str, Any]:
    """One design: the medians of its figures, as always. Several: each one's medians
    and each figure's ratio to the first design's."""
    if len(runs) == 1:
        ((design, only_runs),) = runs.items()
        return {
            **medians(only_runs),
            "notices": design.name,
            "notices_per_deal": notices_per_deal(design.table),
            "runs": only_runs,
        }
    by_design = {design.name: medians(design_runs) for design, design_runs in runs.items()}
    first = next(iter(by_design.values()))
    return {
        "notices": "compared",
        "runs_count": arguments.runs,
        "notices_per_deal": {design.name: notices_per_deal(design.table) for design in runs},
        "medians": by_design,
        "ratios_to_first": {
            name: {
                figure: value / first[figure] if first[figure] else math.nan
                for figure, value in figures.items()
            }
            for name, figures in by_design.items()
        },
        "runs": {design.name: design_runs for design, design_runs in runs.items()},
    }


def print_text(summary: dict[str, Any]) -> None:
    if summary["notices"] != "compared":
        for name, value in summary.items():
            if name != "runs":
                shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
                print(f"{name:<40} {shown}")
        return
    names = list(summary["medians"])
    print(f"designs compared, medians of {summary['runs_count']} runs each:")
    print(f"{'':<40}" + "".join(f"{name:>18}" for name in names))
    per_deal = summary["notices_per_deal"]
    print(f"{'notices_per_deal':<40}" + "".join(f"{per_deal[name]:>18}" for name in names))
    for figure in summary["medians"][names[0]]:
        cells = "".join(
            f"{summary['medians'][name][figure]:>10,.3f}"
            f" ×{summary['ratios_to_first'][name][figure]:<5.2f}"
            for name in names
        )
        print(f"{figure:<40}{cells}")
    for name, design_runs in summary["runs"].items():
        print(f"{name} per run:")
        for index, run in enumerate(design_runs, start=1):
            print(f"  {index}: " + "  ".join(f"{key} {value:,.3f}" for key, value in run.items()))


def parse_arguments() -> argparse.Namespace | str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT_DEFAULT, help="closed loop")
    parser.add_argument("--rate", type=float, help="open loop: deals started per second")
    parser.add_argument("--duration", type=float, default=10.0, help="open loop: seconds")
    parser.add_argument("--runs", type=int, default=3, help="medians over this many runs")
    design = parser.add_mutually_exclusive_group()
    design.add_argument(
        "--notices",
        default="core:sent",
        help="DELIVERY:TABLE (default core:sent, the protocol today), DELIVERY core (live "
        "core-NATS notices, batched signed notices.ack: today) or jetstream (stream, durable "
        "consumer, ack: until 2026-12-07), TABLE sent (today), before (until 2026-12-06) or "
        "counterparty",
    )
    design.add_argument(
        "--compare",
        help="several designs, comma-separated, run alternately; ratios to the first",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not (1 <= arguments.in_flight <= 1_000 and 1 <= arguments.runs <= 20):
        return "--in-flight 1..1,000 and --runs 1..20"
    if arguments.rate is not None and not (0 < arguments.rate <= 5_000):
        return "--rate 0..5,000 per second"
    if not (0 < arguments.duration <= 600):
        return "--duration 0..600 s"
    try:
        arguments.designs = tuple(
            FloorDesign.parse(text) for text in (arguments.compare or arguments.notices).split(",")
        )
    except ValueError as exc:
        return f"a design is DELIVERY:TABLE, e.g. jetstream:sent or core:before ({exc})"
    if not 1 <= len(set(arguments.designs)) == len(arguments.designs) <= 4:
        return "--compare: one to four different designs"
    return arguments


def main() -> int:
    return run_benchmark(parse_arguments, main_async, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
