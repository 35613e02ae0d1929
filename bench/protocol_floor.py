"""Benchmark: the protocol's floor, a deal's signed messages with nothing behind them.

A settled deal is 4 signed round trips (RFQ/quote, ``contract.open``,
``contract.deliver``, ``contract.accept``), the last three answered by the
exchange with signed replies bound to their requests, and 4 exchange-signed
notices that JetStream stores and delivers to the parties' durable
consumers, which verify and acknowledge each (docs/PROTOCOL.md, sections
1.4 and 1.7: a notice goes only where the reply has not told the party
already, and a settlement to both). This runs exactly that message pattern, under NATS auth as
the exchange runs, with no contract, ledger or database:

* a stand-in for the exchange, in its own process as the exchange is,
  connects with the exchange's key (only that key may serve the agents'
  request subjects), verifies each request as the exchange's endpoints do
  (``verify_request``), answers at once with a signed reply bound to the
  request (``sign_reply``: every answer of the exchange is one), then seals
  the step's notices with its key and publishes them to the notice stream
  in the background, as the exchange does after its commit (1 for an
  opening, 1 for a delivery, 2 for an acceptance; ``--notice-table
  before`` sends the 7 the protocol sent until 2026-12-06: 2, 3 and 2). Agents have no
  JetStream API, so it also creates each agent's notice consumer when
  asked, as the exchange's ``notices.subscribe`` does;
* in this process, a provider answers signed RFQs on the RFQ subject with
  signed quotes and delivers when it is told a contract opened; buyers run
  the deal: quote, open, wait for the delivery notice, accept. Each agent
  connects with its own key and checks every reply (``open_reply``).

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

``--notices core`` measures the design proposed instead of a durable
consumer per agent (each costs nats-server about 52 KB of memory): live
notices over core NATS. The stand-in publishes each sealed notice as a
plain message to the agent's inbox (``subjects.notice_deliver_subject``,
``_INBOX.<id>.notices``, the one place under auth an agent may read its
notices, and where JetStream pushes them today), numbered per agent; the
agent reads it with a plain subscription and checks it exactly as before
(the notice stays signed for ``subjects.notifications(<id>)``, as today).
Nothing is stored, no consumer is made, nothing is acknowledged; catching
up after a gap would be served from the exchange's outbox on request,
which a stand-in without state cannot show. Two things the design needs
that the protocol does not have yet, so the floor makes do:

* the sequence number: no notice document has a field for it, so it rides
  in a NATS header (``Agentx-Notice-Seq``), unsigned and unread, only so
  that the message's size and parsing are honest;
* the exchange's key may publish to the notify subjects but not into an
  agent's inbox (``broker/permissions.py``): core mode grants it
  ``_INBOX.*.notices`` in this process's auth callout (``live_notice_grant``).

    python bench/protocol_floor.py                    # closed loop, 64 buyers
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
from nats.aio.client import Client
from signed_rfq import PRICE_MILLICREDITS, check_quote, quote_for, sealed_rfq

from agent_client import AgentKeys, limits, subjects
from agent_client.agent import EXCHANGE_AUDIENCE
from agent_client.protocol import (
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
from broker.streams import ensure_notice_consumer, ensure_notice_stream, notice_consumer_name


class NoticeDelivery(enum.Enum):
    """How the stand-in hands each agent its notices."""

    # Stored in the notice stream, pushed by the agent's durable consumer, acknowledged.
    JETSTREAM = "jetstream"
    # A plain core-NATS message to the agent's inbox, numbered per agent; nothing stored.
    CORE = "core"


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
    """How notices travel and which are sent: ``jetstream:sent`` is the protocol today."""

    delivery: NoticeDelivery = NoticeDelivery.JETSTREAM
    table: NoticeTable = NoticeTable.SENT

    @classmethod
    def parse(cls, text: str, /) -> FloorDesign:
        delivery, _, table = text.partition(":")
        return cls(NoticeDelivery(delivery), NoticeTable(table or NoticeTable.SENT.value))

    @property
    def name(self) -> str:
        return f"{self.delivery.value}:{self.table.value}"


SUBSCRIBE_STEP = "subscribe"
# Core mode: each notice's number in its recipient's sequence (see the module docstring).
NOTICE_SEQUENCE_HEADER = "Agentx-Notice-Seq"
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
            assert stand_in.design.delivery is NoticeDelivery.JETSTREAM
            await ensure_notice_consumer(js, agent_id)
            return NoticesReply(
                deliver_subject=subjects.notice_deliver_subject(agent_id),
                queue_group=notice_consumer_name(agent_id),
            )
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
        if step == SUBSCRIBE_STEP:
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

    JetStream: each is stored in the notice stream in a task of its own, as
    the exchange publishes after its commit (the publish waits for the
    stream's acknowledgement). Core: each is a plain message to the
    recipient's inbox, sent at once and in order, since there is nothing to
    wait for, with its number in the recipient's sequence.
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
        # One entry per agent of the market (the buyers and the provider).
        self._last_sequence_by_recipient: dict[str, int] = {}

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
        sequence = self._last_sequence_by_recipient.get(recipient, 0) + 1
        self._last_sequence_by_recipient[recipient] = sequence
        await self._client.publish(
            subjects.notice_deliver_subject(recipient),
            payload,
            headers={NOTICE_SEQUENCE_HEADER: str(sequence)},
        )

    async def _store(self, recipient: str, payload: bytes) -> None:
        await self._js.publish(
            subjects.notifications(recipient),
            payload,
            timeout=REQUEST_TIMEOUT_S,
            headers={"Nats-Msg-Id": new_nonce()},
        )


@contextlib.contextmanager
def live_notice_grant() -> Iterator[None]:
    """While open, this process's auth callout also lets the exchange's key publish
    live notices into the agents' inboxes (``_INBOX.*.notices``).

    An agent may read only its own inbox prefix, where JetStream pushes its
    notices today; the exchange's key may publish to the notify subjects
    but not there (``broker/permissions.py``). Live notices need that one
    grant more; until the permissions have it, the floor's own server adds
    it here, for core mode only. Connections authorised meanwhile keep it.
    """

    def with_live_notices(role: Role, identity: str, /) -> UserPermissions:
        permissions = permissions_for(role, identity)
        if role is not Role.EXCHANGE:
            return permissions
        publish = permissions.pub
        allowed = (*publish.allow, subjects.notice_deliver_subject("*"))
        return msgspec.structs.replace(
            permissions, pub=msgspec.structs.replace(publish, allow=allowed)
        )

    # The callout looks the function up in its own module on each connection.
    with mock.patch.object(auth_callout, "permissions_for", with_live_notices):
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
    """One identity with its own connection and its notices (a durable consumer today)."""

    def __init__(self, keys: AgentKeys, connection: NatsConnection, exchange_id: str) -> None:
        self.keys = keys
        self.agent_id = keys.agent_id
        self.connection = connection
        self.exchange_id = exchange_id
        self.clock = SystemClock()
        self._notice_guard = ReplayGuard()

    @classmethod
    async def connect(cls, nats_url: str, exchange_id: str) -> FloorAgent:
        keys = AgentKeys.generate()
        connection = await NatsConnection.connect(nats_url, keys, name="bench-floor-agent")
        return cls(keys, connection, exchange_id)

    async def listen(
        self, on_notice: Callable[[Document], Awaitable[None]], *, notices: NoticeDelivery
    ) -> None:
        """Ask the stand-in for a notice consumer, as an Agent asks the exchange, and listen;
        or, for live notices, just listen on the inbox subject they come to."""

        async def handle(message: IncomingMessage) -> None:
            notice = self.verified_notice(message.data)
            if notice is not None:
                await on_notice(notice)

        if notices is NoticeDelivery.CORE:
            await self.connection.subscribe(
                subjects.notice_deliver_subject(self.agent_id),
                handle,
                concurrency_max=HANDLER_CONCURRENCY_MAX,
            )
            return
        reply = await self.request(SUBSCRIBE_STEP, lambda header: SubscribeNotices(header=header))
        assert isinstance(reply, NoticesReply), reply
        await self.connection.subscribe(
            reply.deliver_subject,
            handle,
            queue=reply.queue_group,
            acknowledge=True,
            concurrency_max=HANDLER_CONCURRENCY_MAX,
        )

    def verified_notice(self, data: bytes) -> Document | None:
        """The checks the Agent runs on a notice: signature, audience, issuer, once only."""
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
            return None
        self._notice_guard.remember(
            header.issuer, header.nonce, header.expires_at_ms, now_ms=self.clock.now_ms()
        )
        return document

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

    @classmethod
    async def start(
        cls, nats_url: str, exchange_id: str, provider_id: str, *, notices: NoticeDelivery
    ) -> Buyer:
        buyer = cls(await FloorAgent.connect(nats_url, exchange_id), provider_id)
        await buyer.agent.listen(buyer.on_notice, notices=notices)
        return buyer

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


@contextlib.asynccontextmanager
async def floor_market(
    nats_url: str,
    exchange_keys: AgentKeys,
    buyers_count: int,
    *,
    design: FloorDesign,
) -> AsyncIterator[tuple[list[Buyer], int]]:
    """The stand-in, a provider and ``buyers_count`` buyers; yields them and the stand-in's pid.

    The stand-in connects with ``exchange_keys``: under NATS auth only the
    exchange's key may serve the agents' request subjects.
    """
    provider = await FloorAgent.connect(nats_url, exchange_keys.agent_id)
    buyers: list[Buyer] = []
    try:
        stand_in = StandIn(nats_url, exchange_keys.seed_text(), provider.agent_id, design)
        notices = design.delivery
        async with child_process(run_stand_in, stand_in, name="exchange stand-in") as stand_in_pid:
            await serve_as_provider(provider, notices=notices)
            for _ in range(buyers_count):
                buyers.append(
                    await Buyer.start(
                        nats_url, exchange_keys.agent_id, provider.agent_id, notices=notices
                    )
                )
            yield buyers, stand_in_pid
    finally:
        for buyer in buyers:
            await buyer.agent.close()
        await provider.close()


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
    the name its figure takes, e.g. ``{"nats_server": pid}``).
    """
    latencies_s: list[float] = []
    async with floor_market(
        nats_url,
        exchange_keys,
        in_flight,
        design=design,
    ) as (buyers, stand_in_pid):
        deadline = time.perf_counter() + seconds

        async def trade(buyer: Buyer) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await buyer.deal()
                latencies_s.append(time.perf_counter() - started)

        pids = {"stand_in": stand_in_pid, "agents": os.getpid(), **nats_server_pids}
        cpu_started_s = cpu_now_s(pids)
        started = time.perf_counter()
        await asyncio.gather(*(trade(buyer) for buyer in buyers))
        elapsed_s = time.perf_counter() - started
        cpu_figures = cpu_ms_per_deal(cpu_started_s, pids, len(latencies_s))
    return {
        "floor_deals_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
        **cpu_figures,
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
    gives it, over the whole schedule (idle gaps included).
    """
    deals_total = max(1, round(rate_per_s * seconds))
    buyers_count = max(8, math.ceil(rate_per_s * OPEN_LOOP_DEAL_COVERS_S))
    latencies_s: list[float] = []
    async with floor_market(
        nats_url,
        exchange_keys,
        buyers_count,
        design=design,
    ) as (buyers, stand_in_pid):
        free = asyncio.Queue[Buyer]()
        for buyer in buyers:
            free.put_nowait(buyer)
        pids = {"stand_in": stand_in_pid, "agents": os.getpid(), **(nats_server_pids or {})}
        cpu_started_s = cpu_now_s(pids)
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
        cpu_figures = cpu_ms_per_deal(cpu_started_s, pids, len(latencies_s))
    return {
        "floor_offered_rate_per_s": rate_per_s,
        "floor_achieved_rate_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
        **(cpu_figures if nats_server_pids is not None else {}),
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
    grant = live_notice_grant() if NoticeDelivery.CORE in deliveries else contextlib.nullcontext()
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
        default="jetstream:sent",
        help="DELIVERY:TABLE, DELIVERY jetstream (stream, durable consumer, ack: today) or "
        "core (live core-NATS notices), TABLE sent (today), before (until 2026-12-06) or "
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
