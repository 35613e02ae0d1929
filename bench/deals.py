"""Benchmark: settled deals per second, the exchange in its own process, beside its limits.

A deal is RFQ → quote → accept (escrow hold) → deliver → accept delivery
(release), every message signed and verified, the SQLite ledger in WAL mode.
The exchange runs as in production: ``agentx up`` in a child process (its
nats-server a child of that), while the agents (one provider, the buyers)
run in this process. ``--in-process`` runs the exchange worker inside this
process instead, as this benchmark used to, so the two can be compared.

Two modes:

* closed loop (``--deals N --concurrency C``): C buyers each settle deals one
  after another; ``deals_per_s`` and the latency p50/p99 of a deal.
* open loop (``--rate R --duration S``): a deal is due every 1/R s, whatever
  the earlier ones are doing. Each takes a free buyer from a pool, which
  grows (up to ``--buyers-max``) when none is free, so that no buyer has two
  deals at once. Latency counts from the deal's *scheduled* start, so a
  backlog shows in it (no coordinated omission); ``late_starts`` counts deals
  that began more than LATE_START_TOLERANCE_MS after their time. Target
  (issue 5): p99 at most 25 ms at 200 deals/s.

NATS auth is on, as ``agentx up`` runs: every client connects with its own
key and has least-privilege permissions. In the same run, on the same
nats-server, it measures the limits the deals stand on: plain request/reply
(64 B echoed, unsigned) between two agents' connections, the responder
serving its own negotiation subject (which any agent may request), one at a
time and 64 in flight; the signed round trip on that subject (a client
seals an RFQ with the project's signing, a responder in another process
runs the receiver's checks, ``verify_request``, and answers with a sealed
quote that the client checks with ``verify_evidence``), one at a time and 64
in flight; and ed25519 sign and verify rates in this process. ``ratio`` is
deals/s (in the open loop the achieved rate) × 4 round trips per deal /
signed round trips per second (64 in flight);
``ratio_vs_unsigned_request_reply`` is the same against plain
request/reply. ``cpu_ms_per_deal_*`` is the CPU time (from ``/proc``) the
agents (this process), the exchange process and nats-server spent over the
timed part (in the open loop including buyers joining the pool), divided by
the deals settled: on a small machine it shows which process runs out first.

Last in each run comes the protocol's floor (``bench/protocol_floor.py``):
the same deals' signed messages and notices, at the same concurrency or
offered rate, against a stand-in that verifies, answers, sends notices on
core NATS and takes their batched acknowledgements, as the exchange does,
but keeps no state (and signs its replies, as the exchange must).
``floor_*`` are its figures and
``ratio_vs_floor`` is deals/s (achieved rate) over the floor's: how much of
what the protocol itself allows on this machine the exchange delivers.

``--compare-auth`` runs the same load, limits and floor in each run twice,
on fresh data directories: against ``agentx up`` with auth on and with
``--insecure-no-auth`` (which order goes first alternates between runs),
and prints deals/s, p50/p99, the CPU per deal of each process and the
limits for both, with their ratio (on / off).

Signed replies cannot be switched off: the protocol requires them. What
they cost is measured instead, in every run: the agents' requests to the
exchange during the timed part are counted (``exchange_requests_per_deal``;
each is answered with a signed reply), and the CPU time of ``sign_reply``
(the exchange's side) and of ``open_reply`` (the client's side) on a typical
reply (the ``ContractReply`` a buyer got back from ``contract.accept`` in
this run), less encoding and decoding the bare reply, is measured in this
process. Their product, in µs per deal, is printed beside the CPU per deal,
and ``cpu_ms_per_deal_*_without_signed_replies`` is the measured CPU per
deal less it: that is how the "without signed replies" figures are
obtained; they are estimates, not runs without signed replies.

``floor_cpu_ms_per_deal_stand_in`` is the CPU the floor's stand-in spent
per deal: what the protocol's messages cost a server that keeps no state.
``cpu_ms_per_deal_exchange_above_stand_in`` is the exchange's CPU per deal
less it (the exchange's own work: state, ledger, outbox, timers), and
``cpu_exchange_vs_stand_in`` their ratio.

After each run, with the exchange stopped, the exchange invariants are
checked on its SQLite file; ``ledger_balanced`` is that check, and the
benchmark exits 1 if it fails. ``database_bytes_per_deal`` is the bytes that
file uses (its pages less the free ones) over the deals settled: what a
deal leaves on disk, contracts, ledger and outbox together.
``wal_bytes_after_load`` is the size of its write-ahead log right after the
load, before the exchange stops: checkpoints must keep it bounded (it does
not grow with the run's length). ``--runs K``
repeats everything K times, each with a fresh exchange process and data
directory, and reports the median of each figure plus the per-run values
of the key ones (``runs``). Prints text, or one JSON object with --json.

    python bench/deals.py --deals 500 --concurrency 32
    python bench/deals.py --rate 200 --duration 10
    python bench/deals.py --deals 300 --concurrency 16 --compare-auth
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
from benchmark_main import run_benchmark
from exchange_process import (
    RunningExchange,
    child_process,
    cpu_s,
    database_bytes,
    embedded_exchange,
    ledger_problems,
    nats_server_pid,
    percentiles,
    running_exchange,
    wal_bytes,
)
from protocol_floor import floor_closed_loop, floor_open_loop
from signed_rfq import CAPABILITY, PRICE_MILLICREDITS, check_quote, quote_for, sealed_rfq

from agent_client import (
    Agent,
    AgentClientError,
    AgentKeys,
    OperatorClient,
    QuoteRequest,
    limits,
    subjects,
)
from agent_client.keys import verify_key_for
from agent_client.protocol import ContractReply, ContractView, Reply, json_encoder
from agent_client.replies import open_reply, sign_reply
from agent_client.signing import ReplayGuard, SystemClock
from agent_client.transport import NatsConnection, connect_nats, flush_subscriptions

ROUND_TRIPS_PER_DEAL = 4  # RFQ/quote, open, deliver, accept
PROBE_S = 1.5
IN_FLIGHT = 64
DELIVERY_TIMEOUT_S = 30.0
# Timing one call of sign_reply, open_reply and the bare encode and decode.
REPLY_COST_PROBE_S = 0.3
REPLY_COST_CALLS_MAX = 100_000
# The request a signed reply answers: only its SHA-256 enters the reply.
REQUEST_BYTES_TYPICAL = 600
# Open loop: the first deal is due this long after the schedule is made.
SCHEDULE_LEAD_S = 0.1
LATE_START_TOLERANCE_MS = 5.0
# Open loop: the pool starts with enough buyers for deals lasting this long.
POOL_COVERS_S = 0.25
POOL_SIZE_MIN = 8
BUYERS_MAX_DEFAULT = 500
BUYERS_MAX_LIMIT = 2_000
RUNS_MAX = 20
TARGET_RATE_PER_S = 200.0
TARGET_P99_MS = 25.0
# The figures reported per run as well as by their median.
KEY_FIGURES = (
    "deals_per_s",
    "achieved_rate_per_s",
    "p99_ms",
    "late_starts",
    "deals_failed",
    "signed_roundtrips_per_s",
    "ratio",
    "floor_deals_per_s",
    "floor_achieved_rate_per_s",
    "floor_p99_ms",
    "ratio_vs_floor",
)
# Figures printed for auth on and off with --compare-auth, with their ratio.
AUTH_COMPARED_FIGURES = (
    "deals_per_s",
    "achieved_rate_per_s",
    "p50_ms",
    "p99_ms",
    "cpu_ms_per_deal_exchange",
    "cpu_ms_per_deal_agents",
    "cpu_ms_per_deal_agents_and_exchange",
    "cpu_ms_per_deal_nats_server",
    "raw_request_reply_per_s_sequential",
    "raw_request_reply_per_s_64_in_flight",
    "signed_roundtrips_per_s_sequential",
    "signed_roundtrips_per_s",
    "floor_deals_per_s",
    "floor_achieved_rate_per_s",
    "floor_p99_ms",
)
SIGNED_REPLIES_NOTE = (
    "signed replies cannot be switched off; *_without_signed_replies = the CPU per deal"
    " measured less exchange_requests_per_deal x the measured cost of sign_reply (exchange)"
    " or open_reply (agents) on this run's contract.accept reply, net of the bare encode"
    " and decode: an estimate, not a run"
)

assert POOL_SIZE_MIN <= BUYERS_MAX_DEFAULT <= BUYERS_MAX_LIMIT
assert IN_FLIGHT * PROBE_S * 10_000 < limits.REPLAY_CACHE_ENTRIES_MAX


class NoQuote(Exception):
    """The provider's quote did not arrive within the collection timeout."""


async def echo(task: Any) -> Any:
    return task


class Phases:
    """How long each phase of the settled deals took, as the buyer saw it.

    quote: RFQ until the quote arrives; open: ``contract.open`` until its
    reply; delivery: that reply until the delivery notice arrives (the
    provider's notice, its ``contract.deliver``, the buyer's notice);
    accept: ``contract.accept`` until its reply. It also keeps the last
    contract ``contract.accept`` answered with: a typical signed reply's
    body, whose signing is timed afterwards (``signed_reply_costs``).
    """

    NAMES = ("quote", "open", "delivery", "accept")

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {name: [] for name in self.NAMES}
        self.last_contract: ContractView | None = None

    def add(self, durations_s: tuple[float, ...], contract: ContractView, /) -> None:
        for name, duration_s in zip(self.NAMES, durations_s, strict=True):
            self.seconds[name].append(duration_s)
        self.last_contract = contract

    def figures(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        for name, durations_s in self.seconds.items():
            for percentile, value in percentiles(durations_s).items():
                if percentile != "max_ms":
                    figures[f"{name}_{percentile}"] = value
        return figures


async def settle_one_deal(buyer: Agent, phases: Phases) -> None:
    started = time.perf_counter()
    quotes = await buyer.request_quotes(
        QuoteRequest(CAPABILITY, "echo", budget_millicredits=PRICE_MILLICREDITS, quotes_max=1)
    )
    if not quotes:
        raise NoQuote()
    quoted = time.perf_counter()
    contract = await buyer.hire(quotes[0], {"n": 1})
    opened = time.perf_counter()
    delivery = await contract.wait_delivery(timeout_s=DELIVERY_TIMEOUT_S)
    delivered = time.perf_counter()
    settled = await contract.accept_delivery(delivery)
    accepted = time.perf_counter()
    phases.add(
        (quoted - started, opened - quoted, delivered - opened, accepted - delivered), settled
    )


@contextlib.asynccontextmanager
async def market(exchange: RunningExchange) -> AsyncIterator[Agent]:
    """A provider serving CAPABILITY; yields the operator agent, who mints for buyers."""
    provider = await Agent.connect(exchange.nats_url, AgentKeys.generate())
    operator = await Agent.connect(exchange.nats_url, exchange.operator_keys)
    try:
        await provider.advertise(
            CAPABILITY, description="echo", price_millicredits=PRICE_MILLICREDITS
        )
        await provider.serve(CAPABILITY, echo, pricing=PRICE_MILLICREDITS)
        yield operator
    finally:
        await operator.close()
        await provider.close()


async def new_buyer(nats_url: str, operator: Agent, *, credits_millicredits: int) -> Agent:
    buyer = await Agent.connect(nats_url, AgentKeys.generate())
    await OperatorClient(operator).mint(buyer.agent_id, credits_millicredits, reason="bench")
    return buyer


class DealMeter(Protocol):
    """What the deal loops read just before and just after their timed part."""

    async def start(self) -> None: ...

    async def per_deal(self, deals: int, /) -> dict[str, float]: ...


class CpuMeter:
    """CPU time over the timed part of a run, per deal, of each named process.

    ``for_exchange``: the agents (this process), the exchange and
    nats-server; with the exchange in this process too (``--in-process``)
    the agents' figure includes it.
    """

    def __init__(self, pids: dict[str, int], /) -> None:
        self._pids = pids
        self._started_s: dict[str, float] = {}

    @classmethod
    def for_exchange(cls, exchange: RunningExchange, /) -> CpuMeter:
        agents = "agents" if exchange.pid is not None else "agents_and_exchange"
        pids = {agents: os.getpid()}
        if exchange.pid is not None:
            pids["exchange"] = exchange.pid
        pids["nats_server"] = nats_server_pid(exchange.pid or os.getpid())
        return cls(pids)

    async def start(self) -> None:
        self._started_s = {name: cpu_s(pid) for name, pid in self._pids.items()}

    async def per_deal(self, deals: int, /) -> dict[str, float]:
        assert self._started_s, "start() first"
        return {
            f"cpu_ms_per_deal_{name}": (cpu_s(pid) - self._started_s[name]) * 1000 / max(1, deals)
            for name, pid in self._pids.items()
        }


class ExchangeRequestCounter:
    """The agents' requests to the exchange, each answered with a signed reply, by endpoint.

    Every Agent request goes through ``NatsConnection.request``; while
    ``counting``, that method is wrapped (in this process only) to count the
    requests on the exchange's subjects: ``agentx.v2.x.<id>.<endpoint>`` and
    ``info``.
    """

    def __init__(self) -> None:
        self.by_endpoint: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        original = NatsConnection.request
        by_endpoint = self.by_endpoint

        async def request(
            connection: NatsConnection, subject: str, payload: bytes, /, *, timeout_s: float
        ) -> bytes:
            if subjects.agent_id_in_request_subject(subject) is not None:
                by_endpoint[subject.split(".", 4)[4]] += 1
            elif subject == subjects.EXCHANGE_INFO:
                by_endpoint["info"] += 1
            return await original(connection, subject, payload, timeout_s=timeout_s)

        NatsConnection.request = request  # type: ignore[method-assign]
        try:
            yield
        finally:
            NatsConnection.request = original  # type: ignore[method-assign]

    def per_deal(self, deals: int, /) -> dict[str, float]:
        figures = {"exchange_requests_per_deal": sum(self.by_endpoint.values()) / max(1, deals)}
        for endpoint, count in sorted(self.by_endpoint.items()):
            figures[f"exchange_requests_per_deal_{endpoint}"] = count / max(1, deals)
        return figures


def call_cpu_us(call: Callable[[], object], /) -> float:
    """The CPU time (this thread's) one ``call()`` takes, in µs, over REPLY_COST_PROBE_S."""
    calls, started = 0, time.thread_time()
    while calls < REPLY_COST_CALLS_MAX and time.thread_time() - started < REPLY_COST_PROBE_S:
        call()
        calls += 1
    return (time.thread_time() - started) * 1e6 / calls


def signed_reply_costs(contract: ContractView, /) -> dict[str, float]:
    """What signing a reply adds, per reply, in µs of CPU: both sides, net of the bare body.

    The reply is the ContractReply of ``contract.accept`` (``contract``,
    from this run). The exchange's side is ``sign_reply`` less encoding the
    bare reply; the client's is ``open_reply`` (every check, the signature
    included) less decoding the bare reply.
    """
    exchange_keys = AgentKeys.generate()
    audience = contract.buyer_id
    reply = ContractReply(contract=contract)
    subject = subjects.exchange_request(audience, "contract.accept")
    request_payload = b"x" * REQUEST_BYTES_TYPICAL
    clock = SystemClock()
    bare = json_encoder.encode(reply)
    reply_decoder = msgspec.json.Decoder(Reply)

    def signed() -> bytes:
        return sign_reply(
            reply,
            keys=exchange_keys,
            audience=audience,
            request_subject=subject,
            request_payload=request_payload,
            clock=clock,
        )

    payload = signed()

    def opened() -> object:
        return open_reply(
            payload,
            signer_id=exchange_keys.agent_id,
            audience=audience,
            request_subject=subject,
            request_payload=request_payload,
            clock=clock,
        )

    encode_us = call_cpu_us(lambda: json_encoder.encode(reply))
    decode_us = call_cpu_us(lambda: reply_decoder.decode(bare))
    return {
        "signed_reply_bytes": len(payload),
        "bare_reply_bytes": len(bare),
        "signed_reply_sign_us": max(0.0, call_cpu_us(signed) - encode_us),
        "signed_reply_open_us": max(0.0, call_cpu_us(opened) - decode_us),
    }


def signed_reply_figures(figures: dict[str, Any], /) -> dict[str, float]:
    """Signed replies' CPU per deal, and the CPU per deal without them (an estimate)."""
    replies = figures["exchange_requests_per_deal"]
    exchange_us = replies * figures["signed_reply_sign_us"]
    agents_us = replies * figures["signed_reply_open_us"]
    derived = {
        "signed_replies_us_per_deal_exchange": exchange_us,
        "signed_replies_us_per_deal_agents": agents_us,
    }
    if "cpu_ms_per_deal_exchange" in figures:
        derived["cpu_ms_per_deal_exchange_without_signed_replies"] = (
            figures["cpu_ms_per_deal_exchange"] - exchange_us / 1000
        )
        derived["cpu_ms_per_deal_agents_without_signed_replies"] = (
            figures["cpu_ms_per_deal_agents"] - agents_us / 1000
        )
    else:
        derived["cpu_ms_per_deal_agents_and_exchange_without_signed_replies"] = (
            figures["cpu_ms_per_deal_agents_and_exchange"] - (exchange_us + agents_us) / 1000
        )
    return derived


async def closed_loop(
    exchange: RunningExchange, meter: DealMeter, /, *, deals: int, concurrency: int
) -> dict[str, Any]:
    counts = [
        deals // concurrency + (1 if index < deals % concurrency else 0)
        for index in range(concurrency)
    ]
    latencies_s: list[float] = []
    phases = Phases()
    requests = ExchangeRequestCounter()

    async def trade(buyer: Agent, count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await settle_one_deal(buyer, phases)
            latencies_s.append(time.perf_counter() - started)

    async with market(exchange) as operator:
        buyers: list[Agent] = []
        try:
            for count in counts:
                buyers.append(
                    await new_buyer(
                        exchange.nats_url,
                        operator,
                        credits_millicredits=max(1, count) * PRICE_MILLICREDITS,
                    )
                )
            await meter.start()
            started = time.perf_counter()
            with requests.counting():
                await asyncio.gather(
                    *(trade(buyer, count) for buyer, count in zip(buyers, counts, strict=True))
                )
            elapsed_s = time.perf_counter() - started
            cpu = await meter.per_deal(len(latencies_s))
        finally:
            for buyer in buyers:
                await buyer.close()
    assert phases.last_contract is not None
    return {
        "deals": len(latencies_s),
        "concurrency": concurrency,
        "deals_per_s": len(latencies_s) / elapsed_s,
        **percentiles(latencies_s),
        **phases.figures(),
        **cpu,
        **requests.per_deal(len(latencies_s)),
        **signed_reply_costs(phases.last_contract),
    }


class BuyerPool:
    """Buyers free to start a deal; a new one joins when none is free, up to ``size_max``.

    Every buyer is minted enough for every deal of the run, so no deal fails
    for want of credits whichever buyer takes it.
    """

    def __init__(
        self, nats_url: str, operator: Agent, *, credits_millicredits: int, size_max: int
    ) -> None:
        assert size_max >= 1
        self._nats_url = nats_url
        self._operator = operator
        self._credits_millicredits = credits_millicredits
        self._size_max = size_max
        self._free: asyncio.Queue[Agent] = asyncio.Queue(maxsize=size_max)
        self._buyers: list[Agent] = []
        self._joining = 0

    @property
    def size(self) -> int:
        return len(self._buyers)

    async def grow(self, count: int, /) -> None:
        for _ in range(count):
            self._free.put_nowait(await self._join())

    async def take(self) -> Agent:
        if self._free.empty() and self.size + self._joining < self._size_max:
            return await self._join()
        return await self._free.get()

    def give_back(self, buyer: Agent, /) -> None:
        self._free.put_nowait(buyer)

    async def close(self) -> None:
        for buyer in self._buyers:
            await buyer.close()

    async def _join(self) -> Agent:
        self._joining += 1
        try:
            buyer = await new_buyer(
                self._nats_url, self._operator, credits_millicredits=self._credits_millicredits
            )
        finally:
            self._joining -= 1
        self._buyers.append(buyer)
        return buyer


async def open_loop(
    exchange: RunningExchange,
    meter: DealMeter,
    /,
    *,
    rate_per_s: float,
    duration_s: float,
    buyers_max: int,
) -> dict[str, Any]:
    deals_total = max(1, round(rate_per_s * duration_s))
    async with market(exchange) as operator:
        pool = BuyerPool(
            exchange.nats_url,
            operator,
            credits_millicredits=deals_total * PRICE_MILLICREDITS,
            size_max=buyers_max,
        )
        try:
            initial = min(buyers_max, max(POOL_SIZE_MIN, math.ceil(rate_per_s * POOL_COVERS_S)))
            await pool.grow(initial)
            await meter.start()
            figures, contract = await offer_deals(
                pool, rate_per_s=rate_per_s, deals_total=deals_total
            )
            figures.update(await meter.per_deal(figures["deals"]))
            figures["buyers_initial"] = initial
            figures["buyers_used"] = pool.size
        finally:
            await pool.close()
    # After the CPU meter's reading: timing the reply's signing costs CPU here.
    figures.update(signed_reply_costs(contract))
    return figures


async def offer_deals(
    pool: BuyerPool, *, rate_per_s: float, deals_total: int
) -> tuple[dict[str, Any], ContractView]:
    """Start deal i at t0 + i/R whatever the others are doing; latency from that time.

    Also the last contract ``contract.accept`` answered with (see Phases).
    """
    loop = asyncio.get_running_loop()
    latencies_s: list[float] = []
    start_lags_s: list[float] = []
    failures: dict[str, int] = {}
    phases = Phases()
    requests = ExchangeRequestCounter()

    async def deal(scheduled_at: float) -> None:
        buyer = await pool.take()
        start_lags_s.append(loop.time() - scheduled_at)
        try:
            await settle_one_deal(buyer, phases)
            latencies_s.append(loop.time() - scheduled_at)
        except (NoQuote, AgentClientError, TimeoutError) as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
        finally:
            pool.give_back(buyer)

    started_at = loop.time() + SCHEDULE_LEAD_S
    tasks = []
    with requests.counting():
        for index in range(deals_total):
            scheduled_at = started_at + index / rate_per_s
            await asyncio.sleep(max(0.0, scheduled_at - loop.time()))
            tasks.append(asyncio.create_task(deal(scheduled_at)))
        await asyncio.gather(*tasks)
    elapsed_s = loop.time() - started_at
    for name, count in failures.items():
        print(f"open loop: {count} deal(s) failed with {name}", file=sys.stderr)
    assert phases.last_contract is not None, "no deal settled"
    figures = {
        **requests.per_deal(len(latencies_s)),
        "deals": len(latencies_s),
        "deals_failed": sum(failures.values()),
        "offered_rate_per_s": rate_per_s,
        "achieved_rate_per_s": len(latencies_s) / elapsed_s,
        **percentiles(latencies_s),
        **phases.figures(),
        "late_starts": sum(lag_s * 1000 > LATE_START_TOLERANCE_MS for lag_s in start_lags_s),
        "start_lag_max_ms": max(start_lags_s) * 1000,
    }
    return figures, phases.last_contract


async def round_trips_per_s(round_trip: Callable[[], Awaitable[None]], *, in_flight: int) -> float:
    """How many ``round_trip`` calls complete per second with ``in_flight`` at a time."""
    done = 0
    deadline = time.perf_counter() + PROBE_S

    async def repeat() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await round_trip()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(repeat() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


async def raw_request_reply(nats_url: str, *, in_flight: int) -> float:
    """Plain request/reply (64 B echoed, nothing signed) round trips per second.

    Two agents, each connected with its own key: the responder serves its
    own negotiation subject, which any agent may request.
    """
    responder_keys, client_keys = AgentKeys.generate(), AgentKeys.generate()
    subject = subjects.negotiation(responder_keys.agent_id)
    server = await connect_nats(nats_url, responder_keys, name="bench-raw-responder")
    client = await connect_nats(nats_url, client_keys, name="bench-raw-client")
    try:

        async def answer(message: Any) -> None:
            await message.respond(message.data)

        await server.subscribe(subject, cb=answer)
        await flush_subscriptions(server)

        async def round_trip() -> None:
            await client.request(subject, b"x" * 64, timeout=5)

        return await round_trips_per_s(round_trip, in_flight=in_flight)
    finally:
        await client.close()
        await server.close()


def run_signed_responder(
    nats_url: str, seed: bytes, ready: multiprocessing.synchronize.Event
) -> None:
    """The responder process: answer each signed RFQ with a signed quote until SIGTERM.

    It serves its own negotiation subject, connected with its key.
    """
    asyncio.run(serve_signed_requests(nats_url, AgentKeys.from_seed(seed), ready))


async def serve_signed_requests(
    nats_url: str, keys: AgentKeys, ready: multiprocessing.synchronize.Event
) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    clock = SystemClock()
    replay_guard = ReplayGuard()
    connection = await connect_nats(nats_url, keys, name="bench-signed-responder")

    async def answer(message: Any) -> None:
        # The checks a receiver runs on a request (the exchange's endpoints
        # and a provider answering an RFQ both do this), then a sealed reply.
        await message.respond(quote_for(message.data, message.subject, keys, clock, replay_guard))

    try:
        await connection.subscribe(subjects.negotiation(keys.agent_id), cb=answer)
        await flush_subscriptions(connection)
        ready.set()
        await stop.wait()
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def signed_responder(nats_url: str, keys: AgentKeys) -> AsyncIterator[None]:
    """``run_signed_responder`` in a separate process, as the exchange is."""
    async with child_process(
        run_signed_responder, nats_url, keys.seed_text(), name="signed responder"
    ):
        yield


async def signed_round_trips(nats_url: str, responder_id: str, *, in_flight: int) -> float:
    """Signed RFQ out, signed quote back, both verified: round trips per second."""
    keys = AgentKeys.generate()
    clock = SystemClock()
    subject = subjects.negotiation(responder_id)
    client = await connect_nats(nats_url, keys, name="bench-signed-client")
    try:

        async def round_trip() -> None:
            rfq, rfq_id = sealed_rfq(keys, subject, clock)
            reply = await client.request(subject, rfq, timeout=5)
            check_quote(
                reply.data,
                buyer_id=keys.agent_id,
                subject=subject,
                provider_id=responder_id,
                rfq_id=rfq_id,
                clock=clock,
            )

        return await round_trips_per_s(round_trip, in_flight=in_flight)
    finally:
        await client.close()


async def request_reply_limits(nats_url: str) -> dict[str, float]:
    figures = {
        "raw_request_reply_per_s_sequential": await raw_request_reply(nats_url, in_flight=1),
        "raw_request_reply_per_s_64_in_flight": await raw_request_reply(
            nats_url, in_flight=IN_FLIGHT
        ),
    }
    responder_keys = AgentKeys.generate()
    async with signed_responder(nats_url, responder_keys):
        responder_id = responder_keys.agent_id
        figures["signed_roundtrips_per_s_sequential"] = await signed_round_trips(
            nats_url, responder_id, in_flight=1
        )
        figures["signed_roundtrips_per_s"] = await signed_round_trips(
            nats_url, responder_id, in_flight=IN_FLIGHT
        )
    return figures


def sign_and_verify_rates() -> tuple[float, float]:
    keys = AgentKeys.generate()
    verify_key = verify_key_for(keys.agent_id)
    assert verify_key is not None
    message = b"x" * 300
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < PROBE_S / 2:
        signature = keys.sign(message)
        count += 1
    sign_rate = count / (time.perf_counter() - started)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < PROBE_S / 2:
        verify_key.verify(message, signature)
        count += 1
    return sign_rate, count / (time.perf_counter() - started)


async def measure_once(arguments: argparse.Namespace, *, auth: bool) -> dict[str, Any]:
    """One whole run on a fresh exchange and data directory, NATS auth on or off."""
    start_exchange = embedded_exchange if arguments.in_process else running_exchange
    with tempfile.TemporaryDirectory(prefix="agentx-bench-deals-") as data_dir:
        group_commit = not arguments.no_group_commit
        async with start_exchange(Path(data_dir), group_commit=group_commit, auth=auth) as exchange:
            assert exchange.auth == auth
            if arguments.rate is None:
                figures = await closed_loop(
                    exchange,
                    CpuMeter.for_exchange(exchange),
                    deals=arguments.deals,
                    concurrency=arguments.concurrency,
                )
            else:
                figures = await open_loop(
                    exchange,
                    CpuMeter.for_exchange(exchange),
                    rate_per_s=arguments.rate,
                    duration_s=arguments.duration,
                    buyers_max=arguments.buyers_max,
                )
            # While the exchange still runs: stopping checkpoints and removes the WAL.
            figures["wal_bytes_after_load"] = wal_bytes(exchange.database_url)
            figures.update(await request_reply_limits(exchange.nats_url))
            figures.update(await protocol_floor(exchange, arguments))
        # The exchange has stopped: check what it left in its database file.
        problems = await ledger_problems(exchange.database_url)
        figures["database_bytes_per_deal"] = database_bytes(exchange.database_url) / max(
            1, figures["deals"]
        )
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    figures["auth"] = auth
    figures.update(signed_reply_figures(figures))
    figures["ed25519_sign_per_s"], figures["ed25519_verify_per_s"] = sign_and_verify_rates()
    deals_per_s = figures["deals_per_s" if arguments.rate is None else "achieved_rate_per_s"]
    round_trips_per_s = deals_per_s * ROUND_TRIPS_PER_DEAL
    figures["ratio"] = round_trips_per_s / figures["signed_roundtrips_per_s"]
    figures["ratio_vs_unsigned_request_reply"] = (
        round_trips_per_s / figures["raw_request_reply_per_s_64_in_flight"]
    )
    floor_rate = "floor_deals_per_s" if arguments.rate is None else "floor_achieved_rate_per_s"
    figures["ratio_vs_floor"] = deals_per_s / figures[floor_rate]
    # The stand-in's CPU is what the protocol's messages cost a stateless server:
    # beyond it is the exchange's own work (state, ledger, outbox, timers).
    stand_in_ms = figures["floor_cpu_ms_per_deal_stand_in"]
    figures["cpu_ms_per_deal_exchange_above_stand_in"] = (
        figures["cpu_ms_per_deal_exchange"] - stand_in_ms
    )
    figures["cpu_exchange_vs_stand_in"] = figures["cpu_ms_per_deal_exchange"] / stand_in_ms
    return figures


async def protocol_floor(
    exchange: RunningExchange, arguments: argparse.Namespace
) -> dict[str, float]:
    """The same deals' messages with nothing behind them (bench/protocol_floor.py), same load."""
    if arguments.rate is None:
        return await floor_closed_loop(
            exchange.nats_url,
            {"nats_server": nats_server_pid(exchange.pid or os.getpid())},
            exchange.exchange_keys,
            in_flight=arguments.concurrency,
        )
    return await floor_open_loop(
        exchange.nats_url,
        exchange.exchange_keys,
        rate_per_s=arguments.rate,
        seconds=arguments.duration,
        nats_server_pids={"nats_server": nats_server_pid(exchange.pid or os.getpid())},
    )


def summarize(arguments: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric figure over the runs, and the key ones per run."""
    summary: dict[str, Any] = {
        "mode": "closed_loop" if arguments.rate is None else "open_loop",
        "exchange": "in_process" if arguments.in_process else "own_process",
        "group_commit": not arguments.no_group_commit,
        "runs_count": len(runs),
        **median_figures(runs),
    }
    if arguments.rate is not None:
        summary["target"] = f"p99 <= {TARGET_P99_MS} ms at {TARGET_RATE_PER_S:.0f} deals/s"
        summary["target_met"] = (
            arguments.rate >= TARGET_RATE_PER_S
            and summary["p99_ms"] <= TARGET_P99_MS
            and summary["deals_failed"] == 0
        )
    summary["signed_replies_note"] = SIGNED_REPLIES_NOTE
    summary["runs"] = [{name: run[name] for name in KEY_FIGURES if name in run} for run in runs]
    return summary


def median_figures(runs: list[dict[str, Any]], /) -> dict[str, Any]:
    """The median of each numeric figure over the runs; a flag holds if it held in all."""
    figures: dict[str, Any] = {}
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        if isinstance(first, bool):
            figures[name] = all(values)
        elif isinstance(first, int | float):
            figures[name] = statistics.median(values)
    return figures


def compare_auth(auth_on: dict[str, Any], auth_off: dict[str, Any]) -> dict[str, Any]:
    """The compared figures' medians with auth on and off, and on / off."""
    return {
        name: {
            "auth_on": auth_on[name],
            "auth_off": auth_off[name],
            "ratio_on_over_off": auth_on[name] / auth_off[name] if auth_off[name] else math.nan,
        }
        for name in AUTH_COMPARED_FIGURES
        if name in auth_on and name in auth_off
    }


def print_text(summary: dict[str, Any]) -> None:
    for name, value in summary.items():
        if name in ("runs", "auth_comparison", "auth_off_runs"):
            continue
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<48} {shown}")
    print_runs(summary["runs"])
    if "auth_comparison" in summary:
        print(f"\n{'auth on vs off (medians)':<48} {'on':>12} {'off':>12} {'on/off':>8}")
        for name, compared in summary["auth_comparison"].items():
            on, off, ratio = compared.values()
            print(f"{name:<48} {on:>12,.3f} {off:>12,.3f} {ratio:>8.3f}")
        print("auth off:")
        print_runs(summary["auth_off_runs"])


def print_runs(runs: list[dict[str, Any]]) -> None:
    print("per run:")
    for index, run in enumerate(runs, start=1):
        shown = "  ".join(
            f"{name} {value:,.3f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in run.items()
        )
        print(f"  {index}: {shown}")


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    runs_without_auth: list[dict[str, Any]] = []
    for index in range(arguments.runs):
        # Which goes first alternates, so that neither always meets a warmer machine.
        order = (True, False) if index % 2 == 0 else (False, True)
        for auth in order if arguments.compare_auth else (True,):
            figures = await measure_once(arguments, auth=auth)
            (runs if auth else runs_without_auth).append(figures)
    summary = summarize(arguments, runs)
    if runs_without_auth:
        without_auth = summarize(arguments, runs_without_auth)
        summary["ledger_balanced"] = summary["ledger_balanced"] and without_auth["ledger_balanced"]
        summary["auth_comparison"] = compare_auth(summary, without_auth)
        summary["auth_off_runs"] = without_auth["runs"]
    return summary


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, help="closed loop: deals in all (default 300)")
    parser.add_argument("--concurrency", type=int, help="closed loop: buyers (default 16)")
    parser.add_argument("--rate", type=float, help="open loop: deals started per second")
    parser.add_argument("--duration", type=float, help="open loop: seconds of starting deals")
    parser.add_argument("--buyers-max", type=int, default=BUYERS_MAX_DEFAULT, help="open loop")
    parser.add_argument("--runs", type=int, default=3, help="fresh exchange each run; medians")
    parser.add_argument("--in-process", action="store_true", help="exchange in this process")
    parser.add_argument(
        "--no-group-commit",
        action="store_true",
        help="the exchange applies each contract step alone (the before figure)",
    )
    parser.add_argument(
        "--compare-auth",
        action="store_true",
        help="each run also against an exchange with NATS auth off; figures side by side",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if (arguments.rate is None) != (arguments.duration is None):
        return "--rate and --duration go together (open loop)"
    if arguments.rate is not None:
        if arguments.deals is not None or arguments.concurrency is not None:
            return "--deals and --concurrency are for the closed loop, not with --rate"
        if not (0 < arguments.rate <= 10_000 and 0 < arguments.duration <= 3_600):
            return "--rate 0..10,000 per second and --duration 0..3,600 s"
    arguments.deals = 300 if arguments.deals is None else arguments.deals
    arguments.concurrency = 16 if arguments.concurrency is None else arguments.concurrency
    if not (1 <= arguments.deals <= 1_000_000 and 1 <= arguments.concurrency <= 1_000):
        return "--deals 1..1,000,000 and --concurrency 1..1,000"
    if not (1 <= arguments.runs <= RUNS_MAX and 1 <= arguments.buyers_max <= BUYERS_MAX_LIMIT):
        return f"--runs 1..{RUNS_MAX} and --buyers-max 1..{BUYERS_MAX_LIMIT:,}"
    return arguments


def main() -> int:
    return run_benchmark(
        parse_arguments, main_async, print_text, passed=lambda summary: summary["ledger_balanced"]
    )


if __name__ == "__main__":
    raise SystemExit(main())
