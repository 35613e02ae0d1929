"""Benchmark: the protocol's floor, a deal's signed messages with nothing behind them.

A settled deal is 4 signed round trips (RFQ/quote, ``contract.open``,
``contract.deliver``, ``contract.accept``), the last three answered by the
exchange with signed replies bound to their requests, and 7 exchange-signed
notices that JetStream stores and delivers to the parties' durable
consumers, which verify and acknowledge each (docs/PROTOCOL.md, sections
1.4 and 1.7). This runs exactly that message pattern, under NATS auth as
the exchange runs, with no contract, ledger or database:

* a stand-in for the exchange, in its own process as the exchange is,
  connects with the exchange's key (only that key may serve the agents'
  request subjects), verifies each request as the exchange's endpoints do
  (``verify_request``), answers at once with a signed reply bound to the
  request (``sign_reply``: every answer of the exchange is one), then seals
  the step's notices with its key and publishes them to the notice stream
  in the background, as the exchange does after its commit (2 for an
  opening, 3 for a delivery, 2 for an acceptance). Agents have no
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

    python bench/protocol_floor.py                    # closed loop, 64 buyers
    python bench/protocol_floor.py --rate 200 --json  # open loop, p99 at 200/s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_process import child_process, cpu_s, percentiles
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
from broker import AccessPolicy
from broker.nats_process import EmbeddedNatsServer, NatsServerConfig
from broker.streams import ensure_notice_consumer, ensure_notice_stream, notice_consumer_name

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
# Who gets which notice, as the exchange sends them (PROTOCOL.md 1.7.1).
NOTICES_PER_STEP: dict[str, tuple[str, ...]] = {
    "open": ("provider", "buyer"),
    "deliver": ("buyer", "provider", "buyer-delivered"),
    "accept": ("buyer", "provider"),
}
# What the floor would be if the protocol told only the party that did not
# cause a step (the one that caused it has the answer): --counterparty-notices-only.
COUNTERPARTY_NOTICES_PER_STEP: dict[str, tuple[str, ...]] = {
    "open": ("provider",),
    "deliver": ("buyer-delivered",),
    "accept": ("provider",),
}
SUBSCRIBE_STEP = "subscribe"
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


def notices_per_step(*, counterparty_only: bool) -> dict[str, tuple[str, ...]]:
    return COUNTERPARTY_NOTICES_PER_STEP if counterparty_only else NOTICES_PER_STEP


def notices_per_deal(*, counterparty_only: bool) -> int:
    table = notices_per_step(counterparty_only=counterparty_only)
    return sum(len(recipients) for recipients in table.values())


assert notices_per_deal(counterparty_only=False) == 7


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
    counterparty_notices_only: bool = False


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
    publishing: set[asyncio.Task[None]] = set()
    notices = notices_per_step(counterparty_only=stand_in.counterparty_notices_only)
    record = sealed_record(keys, stand_in.provider_id, clock)

    def sealed_notice(recipient: str, contract_id: str, step: str, role: str) -> bytes:
        header = make_header(
            keys,
            audience=recipient,
            subject=subjects.notifications(recipient),
            lifetime_s=NOTICE_LIFETIME_S,
            clock=clock,
        )
        document = notice_document(header, contract_id, step, role)
        return json_encoder.encode(seal(document, keys))

    async def publish(recipient: str, payload: bytes) -> None:
        await js.publish(
            subjects.notifications(recipient),
            payload,
            timeout=REQUEST_TIMEOUT_S,
            headers={"Nats-Msg-Id": new_nonce()},
        )

    async def reply_for(agent_id: str, step: str, request: Document) -> Reply:
        if step == SUBSCRIBE_STEP:
            assert isinstance(request, SubscribeNotices)
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
        # After the answer, in the background, as the exchange publishes after commit.
        assert isinstance(request, GetContract)
        contract_id = request.contract_id
        for role in notices[step]:
            recipient = stand_in.provider_id if role == "provider" else buyer_of(contract_id)
            task = asyncio.create_task(
                publish(recipient, sealed_notice(recipient, contract_id, step, role))
            )
            publishing.add(task)
            task.add_done_callback(publishing.discard)

    dispatcher = BoundedDispatcher(answer, concurrency_max=HANDLER_CONCURRENCY_MAX)
    try:
        await client.subscribe(step_subject("*", "*"), cb=dispatcher.dispatch)
        await flush_subscriptions(client)
        ready.set()
        await stop.wait()
    finally:
        await client.close()


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
    """One identity with its own connection and durable notice consumer, as an Agent has."""

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

    async def listen(self, on_notice: Callable[[Document], Awaitable[None]]) -> None:
        """Ask the stand-in for a notice consumer, as an Agent asks the exchange, and listen."""

        async def handle(message: IncomingMessage) -> None:
            notice = self.verified_notice(message.data)
            if notice is not None:
                await on_notice(notice)

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


async def serve_as_provider(provider: FloorAgent) -> None:
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
    await provider.listen(on_notice)


class Buyer:
    """Runs deals one after another: quote, open, wait for the delivery, accept."""

    def __init__(self, agent: FloorAgent, provider_id: str) -> None:
        self.agent = agent
        self.provider_id = provider_id
        self.deals_done = 0
        self._deliveries: dict[str, asyncio.Future[None]] = {}

    @classmethod
    async def start(cls, nats_url: str, exchange_id: str, provider_id: str) -> Buyer:
        buyer = cls(await FloorAgent.connect(nats_url, exchange_id), provider_id)
        await buyer.agent.listen(buyer.on_notice)
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
    counterparty_notices_only: bool,
) -> AsyncIterator[tuple[list[Buyer], int]]:
    """The stand-in, a provider and ``buyers_count`` buyers; yields them and the stand-in's pid.

    The stand-in connects with ``exchange_keys``: under NATS auth only the
    exchange's key may serve the agents' request subjects.
    """
    provider = await FloorAgent.connect(nats_url, exchange_keys.agent_id)
    buyers: list[Buyer] = []
    try:
        stand_in = StandIn(
            nats_url, exchange_keys.seed_text(), provider.agent_id, counterparty_notices_only
        )
        async with child_process(run_stand_in, stand_in, name="exchange stand-in") as stand_in_pid:
            await serve_as_provider(provider)
            for _ in range(buyers_count):
                buyers.append(
                    await Buyer.start(nats_url, exchange_keys.agent_id, provider.agent_id)
                )
            yield buyers, stand_in_pid
    finally:
        for buyer in buyers:
            await buyer.agent.close()
        await provider.close()


async def floor_closed_loop(
    nats_url: str,
    nats_server_pids: Mapping[str, int],
    exchange_keys: AgentKeys,
    *,
    in_flight: int = IN_FLIGHT_DEFAULT,
    seconds: float = SECONDS_DEFAULT,
    counterparty_notices_only: bool = False,
) -> dict[str, float]:
    """Deals per second with ``in_flight`` buyers each dealing one after another.

    Also the CPU each process spent per deal: the stand-in, the agents (this
    process) and the nats-servers (``nats_server_pids``: each one's pid by
    the name its figure takes, e.g. ``{"nats_server": pid}``).
    """
    latencies_s: list[float] = []
    async with floor_market(
        nats_url, exchange_keys, in_flight, counterparty_notices_only=counterparty_notices_only
    ) as (buyers, stand_in_pid):
        deadline = time.perf_counter() + seconds

        async def trade(buyer: Buyer) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await buyer.deal()
                latencies_s.append(time.perf_counter() - started)

        pids = {"stand_in": stand_in_pid, "agents": os.getpid(), **nats_server_pids}
        cpu_started_s = {name: cpu_s(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await asyncio.gather(*(trade(buyer) for buyer in buyers))
        elapsed_s = time.perf_counter() - started
        cpu_used_s = {name: cpu_s(pid) - cpu_started_s[name] for name, pid in pids.items()}
    deals = max(1, len(latencies_s))
    return {
        "floor_deals_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
        **{
            f"floor_cpu_ms_per_deal_{name}": used * 1000 / deals
            for name, used in cpu_used_s.items()
        },
    }


async def floor_open_loop(
    nats_url: str,
    exchange_keys: AgentKeys,
    *,
    rate_per_s: float,
    seconds: float,
    counterparty_notices_only: bool = False,
) -> dict[str, float]:
    """A deal due every 1/rate s on a free buyer; latency from its scheduled start."""
    deals_total = max(1, round(rate_per_s * seconds))
    buyers_count = max(8, math.ceil(rate_per_s * OPEN_LOOP_DEAL_COVERS_S))
    latencies_s: list[float] = []
    async with floor_market(
        nats_url, exchange_keys, buyers_count, counterparty_notices_only=counterparty_notices_only
    ) as (buyers, _):
        free = asyncio.Queue[Buyer]()
        for buyer in buyers:
            free.put_nowait(buyer)
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
    return {
        "floor_offered_rate_per_s": rate_per_s,
        "floor_achieved_rate_per_s": len(latencies_s) / elapsed_s,
        **floor_percentiles(latencies_s),
    }


def floor_percentiles(latencies_s: list[float]) -> dict[str, float]:
    return {f"floor_{name}": value for name, value in percentiles(latencies_s).items()}


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    exchange_keys = AgentKeys.generate()
    access = AccessPolicy(exchange_ids=frozenset({exchange_keys.agent_id}))
    with tempfile.TemporaryDirectory(prefix="agentx-bench-floor-") as data_dir:
        config = NatsServerConfig(data_dir=Path(data_dir))
        async with EmbeddedNatsServer(config, access=access) as server:
            client = await connect_nats(server.url, exchange_keys, name="bench-floor-setup")
            try:
                await ensure_notice_stream(client.jetstream())
            finally:
                await client.close()
            nats_server_pid = server.process_id
            assert nats_server_pid is not None
            counterparty_only = arguments.counterparty_notices_only

            async def one_run() -> dict[str, float]:
                if arguments.rate is None:
                    return await floor_closed_loop(
                        server.url,
                        {"nats_server": nats_server_pid},
                        exchange_keys,
                        in_flight=arguments.in_flight,
                        counterparty_notices_only=counterparty_only,
                    )
                return await floor_open_loop(
                    server.url,
                    exchange_keys,
                    rate_per_s=arguments.rate,
                    seconds=arguments.duration,
                    counterparty_notices_only=counterparty_only,
                )

            runs = [await one_run() for _ in range(arguments.runs)]
    summary: dict[str, Any] = {
        name: statistics.median(run[name] for run in runs) for name in runs[0]
    }
    summary["notices_per_deal"] = notices_per_deal(counterparty_only=counterparty_only)
    summary["runs"] = runs
    return summary


def parse_arguments() -> argparse.Namespace | str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT_DEFAULT, help="closed loop")
    parser.add_argument("--rate", type=float, help="open loop: deals started per second")
    parser.add_argument("--duration", type=float, default=10.0, help="open loop: seconds")
    parser.add_argument("--runs", type=int, default=3, help="medians over this many runs")
    parser.add_argument(
        "--counterparty-notices-only",
        action="store_true",
        help="a notice only to the party that did not cause the step (not the protocol today)",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not (1 <= arguments.in_flight <= 1_000 and 1 <= arguments.runs <= 20):
        return "--in-flight 1..1,000 and --runs 1..20"
    if arguments.rate is not None and not (0 < arguments.rate <= 5_000):
        return "--rate 0..5,000 per second"
    if not (0 < arguments.duration <= 600):
        return "--duration 0..600 s"
    return arguments


def main() -> int:
    arguments = parse_arguments()
    if isinstance(arguments, str):
        print(arguments, file=sys.stderr)
        return 2
    summary = asyncio.run(main_async(arguments))
    if arguments.json:
        print(json.dumps(summary))
    else:
        for name, value in summary.items():
            if name != "runs":
                print(
                    f"{name:<40} {value:,.3f}"
                    if isinstance(value, float)
                    else f"{name:<40} {value}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
