"""Benchmark: metered sessions' signed receipts and settled claims per second, beside their limits.

A metered session (agent_client/metering.py) costs one signed cumulative
``UsageReceipt`` per call: the buyer signs it and publishes it to the
provider's direct subject, the provider verifies it and keeps the latest,
and claims against the latest, whenever it likes, at the exchange. Target
(the issue "Metered calls"): at least TARGET_RECEIPTS_PER_S receipts per
second end to end on two cores. Everything runs on loopback, NATS auth on,
the exchange in its own process (``agentx up``, bench/exchange_process.py).
In the same run it measures:

* raw limits, in this process: ed25519 signatures and verifications per
  second (pynacl, ``deals.sign_and_verify_rates``, as the other benchmarks),
  the CPU cost of encoding and sealing one receipt (``seal``) and of opening
  and verifying one (``open_envelope_struct`` + ``verify_evidence``);
* receipts per second in this process, no NATS: the buyer's whole step
  (``MeteredSession``'s receipt step, publishing into a list) and the
  provider's whole step (``MeteredDesk.on_message`` on each receipt's bytes,
  which verifies it and keeps the latest);
* end to end over NATS: ``--sessions`` buyers, in a second process (so that
  signing and verifying each have a core), each sign ``--receipts``
  cumulative receipts and publish them to their provider's direct subject;
  the providers (Agents in this process) verify each and keep the latest.
  ``receipts_per_s_end_to_end`` is the receipts the providers verified
  (counted where ``MeteredDesk`` calls ``verify_evidence``), per second from
  the buyers' start to the last verification. Before it, each session makes
  one call whose units the buyer does not receipt, so that every receipt is
  for units delivered and newer than the last (the provider keeps each);
* calls per second through ``MeteredSession.call`` (``--calls`` per session,
  the sessions in parallel): a signed call, a signed reply, and a signed
  receipt, which the provider verifies when it is published and again when
  the next call carries it;
* claims settled by the exchange: each session's provider claims
  ``--claims`` increasing receipts one after another, all sessions at once;
  each claim is a signed request, a verified receipt, a ledger chain
  (capture, hold the rest, pay net and fee), a signed reply and two signed
  notices. Claims per second and their latency p50/p99. The receipts were
  signed beforehand with the buyers' keys, so the timed part is the
  exchange's work.

Each figure comes with its ratio to the raw limit it stands on:
``receipts_signed_ratio_to_ed25519`` (in-process signing over ed25519
signs/s), ``receipts_verified_ratio_to_ed25519`` (in-process verifying over
verifies/s), ``receipts_end_to_end_ratio_to_ed25519`` (over the slower of
one sign and one verify, each on its own core) and
``..._ratio_to_in_process`` (over the slower of the two in-process steps),
``calls_ratio_to_ed25519`` (over the call's busier side: the buyer signs the
call and the receipt and verifies the reply; the provider verifies the call
and the receipt twice and signs the reply) and ``claims_ratio_to_ed25519``
(over the exchange's share: it verifies the request and the receipt and
signs the reply and two notices). ``cpu_us_per_*`` is the CPU time each
process (providers here, buyers, exchange, nats-server) spent in a phase,
per receipt, call or claim: on two cores it shows what runs out first.

At the end each provider closes its session with its latest receipt; every
session must have captured exactly what its last receipt owes and released
the rest (``sessions_settled_exactly``), and the exchange invariants are
checked on its database once it has stopped (``ledger_balanced``); the
benchmark exits 1 if either fails. ``--runs K`` repeats everything with a
fresh exchange and reports medians and the key figures per run. Prints
text, or one JSON object with ``--json``.

    python bench/metered.py [--sessions 16] [--receipts 2000] [--calls 100]
                            [--claims 25] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import queue
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec
from benchmark_main import run_benchmark
from deals import call_cpu_us, sign_and_verify_rates
from exchange_process import (
    RunningExchange,
    child_process,
    cpu_s,
    ledger_problems,
    nats_server_pid,
    percentiles,
    running_exchange,
)

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, limits, metering, subjects
from agent_client.metering import MeteredDesk, MeteredSession, price_of_units
from agent_client.protocol import (
    ClaimUsage,
    Envelope,
    Header,
    MeteredCall,
    MeteredCallReply,
    MeteredReply,
    MeteredState,
    MeteredView,
    Reply,
    UsageReceipt,
    json_encoder,
)
from agent_client.replies import expect_reply, open_reply
from agent_client.signing import (
    Clock,
    ReplayGuard,
    SystemClock,
    make_header,
    open_envelope,
    open_envelope_struct,
    seal,
    verify_evidence,
)
from agent_client.transport import IncomingMessage, NatsConnection

CAPABILITY = "bench.metered"
# One millicredit a unit: 1,000 millicredits per thousand units.
UNIT_PRICE_MILLICREDITS = 1_000
UNITS_PER_PRICE = 1000
SESSION_S = 3_600
RECEIPT_LIFETIME_S = SESSION_S
CALL_TIMEOUT_S = 30.0
# Each phase must end within this (a lost message would otherwise hang the run).
PHASE_TIMEOUT_S = 120.0
# A buyer lets its connection write, and the other sessions sign, this often.
RECEIPTS_BETWEEN_YIELDS = 32
# In this process: receipts signed, then verified, for the two step rates.
IN_PROCESS_RECEIPTS = 5_000
TARGET_RECEIPTS_PER_S = 5_000.0
SESSIONS_DEFAULT, SESSIONS_MAX = 16, 64
RECEIPTS_DEFAULT, RECEIPTS_MAX = 2_000, 100_000
CALLS_DEFAULT, CALLS_MAX = 100, 10_000
CLAIMS_DEFAULT = 25
RUNS_MAX = 20
AGENT_OPTIONS = AgentOptions(close_grace_s=0.2)
# ed25519 work of one call on each side, and of one claim at the exchange.
CALL_BUYER_SIGNS, CALL_BUYER_VERIFIES = 2, 1
CALL_PROVIDER_SIGNS, CALL_PROVIDER_VERIFIES = 1, 3
CLAIM_EXCHANGE_SIGNS, CLAIM_EXCHANGE_VERIFIES = 3, 2
KEY_FIGURES = (
    "receipts_per_s_end_to_end",
    "receipts_signed_per_s_in_process",
    "receipts_verified_per_s_in_process",
    "calls_per_s",
    "claims_per_s",
    "claim_p99_ms",
    "ed25519_verify_per_s",
)

assert RECEIPTS_MAX + CALLS_MAX <= limits.METERED_UNITS_MAX
assert RECEIPT_LIFETIME_S <= limits.METERED_RECEIPT_LIFETIME_MAX_S
assert SESSION_S <= limits.METERED_SESSION_MAX_S


def ceiling_millicredits(arguments: argparse.Namespace, /) -> int:
    """Twice what a session's units cost, so that no claim or call meets the ceiling."""
    return 2 * unit_cost(arguments.receipts + arguments.calls)


def unit_cost(units: int, /) -> int:
    return price_of_units(
        units, unit_price_millicredits=UNIT_PRICE_MILLICREDITS, units_per_price=UNITS_PER_PRICE
    )


async def echo(task: Any) -> Any:
    return task


def units_in(input_value: Any, _output: Any) -> int:
    """A call consumes the units its input names (the benchmark's buyers say how many)."""
    return int(input_value["units"])


# --- signed documents, as the buyer's MeteredSession makes them ---------------------


def sealed_receipt(
    keys: AgentKeys, provider_id: str, contract_id: str, units: int, clock: Clock
) -> Envelope:
    """The buyer's signed word for ``units`` received in all, addressed to its provider."""
    header = make_header(
        keys,
        audience=provider_id,
        subject=subjects.metered(contract_id),
        lifetime_s=RECEIPT_LIFETIME_S,
        clock=clock,
    )
    return seal(UsageReceipt(header=header, contract_id=contract_id, units=units), keys)


def sealed_call(keys: AgentKeys, view: MeteredView, units: int, clock: Clock) -> tuple[str, bytes]:
    """A buyer's signed call consuming ``units``, and its provider's direct subject."""
    subject = subjects.negotiation(view.provider_id)
    header = make_header(
        keys, audience=view.provider_id, subject=subject, lifetime_s=CALL_TIMEOUT_S, clock=clock
    )
    call = MeteredCall(
        header=header,
        contract_id=view.contract_id,
        input=msgspec.Raw(json_encoder.encode({"units": units})),
    )
    return subject, json_encoder.encode(seal(call, keys))


# --- in this process: the raw limits and each side's step -------------------------


class Outbox:
    """Stands in for a NATS connection in this process: keeps what is published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, /, *, reply: str = "") -> None:
        self.published.append((subject, payload))


async def no_exchange(document_type: type[Any], build: Callable[[Any], Any]) -> Reply:
    raise AssertionError("the in-process probe makes no request to the exchange")


def probe_view(buyer: AgentKeys, provider: AgentKeys, clock: Clock) -> MeteredView:
    """An open session between ``buyer`` and ``provider``, as the exchange would describe it."""
    now_ms = clock.now_ms()
    return MeteredView(
        contract_id="m_" + "be" * 16,
        buyer_id=buyer.agent_id,
        provider_id=provider.agent_id,
        capability=CAPABILITY,
        unit_price_millicredits=UNIT_PRICE_MILLICREDITS,
        units_per_price=UNITS_PER_PRICE,
        ceiling_millicredits=2 * unit_cost(IN_PROCESS_RECEIPTS),
        state=MeteredState.OPEN,
        claimed_units=0,
        captured_millicredits=0,
        fee_millicredits=0,
        net_millicredits=0,
        released_millicredits=0,
        expires_at_ms=now_ms + SESSION_S * 1000,
        closes_at_ms=None,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )


def receipt_costs(view: MeteredView, buyer: AgentKeys, clock: Clock) -> dict[str, float]:
    """CPU µs to encode and seal one receipt, and to open and verify one."""
    envelope = sealed_receipt(buyer, view.provider_id, view.contract_id, 1, clock)
    document = open_envelope_struct(envelope).document

    def verified() -> object:
        return verify_evidence(
            open_envelope_struct(envelope),
            expected_type=UsageReceipt,
            audience=view.provider_id,
            issuer=view.buyer_id,
            expected_subject=subjects.metered(view.contract_id),
            clock=clock,
            lifetime_max_s=limits.METERED_RECEIPT_LIFETIME_MAX_S,
        )

    return {
        "receipt_bytes": len(json_encoder.encode(envelope)),
        "receipt_seal_us": call_cpu_us(lambda: json_encoder.encode(seal(document, buyer))),
        "receipt_open_verify_us": call_cpu_us(verified),
    }


async def buyer_steps(view: MeteredView, buyer: AgentKeys, clock: Clock) -> Outbox:
    """Sign IN_PROCESS_RECEIPTS cumulative receipts as a MeteredSession does; keep their bytes."""
    outbox = Outbox()
    session = MeteredSession(
        view,
        connection=cast(NatsConnection, outbox),
        keys=buyer,
        clock=clock,
        request=no_exchange,
    )
    for units in range(1, IN_PROCESS_RECEIPTS + 1):
        # The receipt step of MeteredSession.call alone: no public method signs
        # a receipt without making a call.
        await session._sign_receipt(units)
    assert len(outbox.published) == IN_PROCESS_RECEIPTS
    return outbox


async def provider_step(
    view: MeteredView, provider: AgentKeys, buyer: AgentKeys, receipts: list[bytes], clock: Clock
) -> float:
    """A MeteredDesk delivers units for one call, then takes each receipt as it arrives:
    the seconds the receipts took."""

    async def describe_session(document_type: type[Any], build: Callable[[Any], Any]) -> Reply:
        return MeteredReply(metered=view)

    desk = MeteredDesk(
        cast(NatsConnection, Outbox()),
        provider,
        clock=clock,
        request=describe_session,
        replay_guard=ReplayGuard(),
    )
    desk.add(
        CAPABILITY,
        echo,
        unit_price_millicredits=UNIT_PRICE_MILLICREDITS,
        units_per_price=UNITS_PER_PRICE,
        units_of=units_in,
        unpaid_units_max=len(receipts),
        offer_validity_s=60.0,
    )
    subject, call = sealed_call(buyer, view, len(receipts), clock)
    await desk.on_message(IncomingMessage(subject, call, "_INBOX.bench"), open_envelope(call))
    started = time.perf_counter()
    for receipt in receipts:
        # What ProviderDesk does with each message on the direct subject.
        await desk.on_message(IncomingMessage(subject, receipt, ""), open_envelope(receipt))
    elapsed_s = time.perf_counter() - started
    latest = desk.latest_receipt(view.contract_id)
    assert latest is not None
    kept = open_envelope_struct(latest).document
    assert isinstance(kept, UsageReceipt) and kept.units == len(receipts), kept
    return elapsed_s


async def in_process_figures() -> dict[str, float]:
    """The raw ed25519 rates, a receipt's seal and verify cost, and each side's step rate."""
    clock = SystemClock()
    buyer, provider = AgentKeys.generate(), AgentKeys.generate()
    view = probe_view(buyer, provider, clock)
    sign_per_s, verify_per_s = sign_and_verify_rates()
    figures = {"ed25519_sign_per_s": sign_per_s, "ed25519_verify_per_s": verify_per_s}
    figures.update(receipt_costs(view, buyer, clock))
    started = time.perf_counter()
    outbox = await buyer_steps(view, buyer, clock)
    figures["receipts_signed_per_s_in_process"] = IN_PROCESS_RECEIPTS / (
        time.perf_counter() - started
    )
    receipts = [payload for _, payload in outbox.published]
    verified_s = await provider_step(view, provider, buyer, receipts, clock)
    figures["receipts_verified_per_s_in_process"] = IN_PROCESS_RECEIPTS / verified_s
    return figures


# --- the buyers' process ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fleet:
    """What the buyers' process needs: where, who, and how much of each phase."""

    nats_url: str
    buyer_seeds: tuple[bytes, ...]
    provider_ids: tuple[str, ...]
    ceiling_millicredits: int
    receipts_per_session: int
    calls_per_session: int


if TYPE_CHECKING:
    Reports = multiprocessing.queues.Queue[dict[str, Any]]
    Commands = multiprocessing.queues.Queue[str]
# The phases the buyers run when told, in this order.
BUYER_PHASES = ("receipts", "calls")


def run_buyers(
    fleet: Fleet, commands: Commands, reports: Reports, ready: multiprocessing.synchronize.Event
) -> None:
    asyncio.run(buyers(fleet, commands, reports, ready))


async def buyers(
    fleet: Fleet, commands: Commands, reports: Reports, ready: multiprocessing.synchronize.Event
) -> None:
    """Open a session per buyer, report their ids, run each phase when told, until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    agents: list[Agent] = []
    try:
        for seed in fleet.buyer_seeds:
            agents.append(
                await Agent.connect(
                    fleet.nats_url, AgentKeys.from_seed(seed), options=AGENT_OPTIONS
                )
            )
        sessions = await asyncio.gather(
            *(
                open_session(agent, AgentKeys.from_seed(seed), provider_id, fleet)
                for agent, seed, provider_id in zip(
                    agents, fleet.buyer_seeds, fleet.provider_ids, strict=True
                )
            )
        )
        reports.put({"contract_ids": [session.contract_id for session in sessions]})
        ready.set()
        for phase in BUYER_PHASES:
            command = await asyncio.to_thread(commands.get, True, PHASE_TIMEOUT_S)
            assert command == phase, (command, phase)
            if phase == "receipts":
                reports.put(await publish_receipts(sessions, fleet.receipts_per_session))
            else:
                reports.put(await make_calls(sessions, fleet.calls_per_session))
        # The providers' claims send these buyers notices until the end.
        await stop.wait()
    finally:
        for agent in agents:
            await agent.close()


async def open_session(
    agent: Agent, keys: AgentKeys, provider_id: str, fleet: Fleet
) -> MeteredSession:
    """Open a session with the provider, then one call for every unit the receipts will count."""
    offer = await agent.metered_offer(provider_id, CAPABILITY)
    session = await agent.open_metered(
        offer, ceiling_millicredits=fleet.ceiling_millicredits, session_s=SESSION_S
    )
    await call_without_receipt(session, keys, fleet.receipts_per_session)
    return session


async def call_without_receipt(session: MeteredSession, keys: AgentKeys, units: int) -> None:
    """A call as MeteredSession.call sends it, without the receipt after its answer.

    The receipts phase signs receipts for 1, 2, ... ``units`` units: each is
    for units the provider delivered, and newer than the last, so the
    provider verifies and keeps every one.
    """
    clock = SystemClock()
    subject, payload = sealed_call(keys, session.view, units, clock)
    # The session's own connection (the agent's), as MeteredSession.call uses it.
    answer = await session._connection.request(subject, payload, timeout_s=CALL_TIMEOUT_S)
    _, reply = open_reply(
        answer,
        signer_id=session.view.provider_id,
        audience=keys.agent_id,
        request_subject=subject,
        request_payload=payload,
        clock=clock,
    )
    assert expect_reply(reply, MeteredCallReply).units == units


async def publish_receipts(sessions: list[MeteredSession], count: int) -> dict[str, Any]:
    """Each session signs receipts for 1 to ``count`` units and publishes each to its provider."""

    async def sign_all(session: MeteredSession) -> None:
        for units in range(1, count + 1):
            # The receipt step of MeteredSession.call alone (signed, then
            # published on the provider's direct subject): no public method
            # signs a receipt without making a call.
            await session._sign_receipt(units)
            if units % RECEIPTS_BETWEEN_YIELDS == 0:
                await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(sign_all(session) for session in sessions))
    return {"receipts_published": count * len(sessions), "elapsed_s": time.perf_counter() - started}


async def make_calls(sessions: list[MeteredSession], count: int) -> dict[str, Any]:
    """Each session makes ``count`` calls of one unit, one after another; all sessions at once."""
    latencies_s: list[float] = []

    async def call_all(session: MeteredSession) -> None:
        for _ in range(count):
            started = time.perf_counter()
            output = await session.call({"units": 1}, timeout_s=CALL_TIMEOUT_S)
            latencies_s.append(time.perf_counter() - started)
            assert output == {"units": 1}, output

    started = time.perf_counter()
    await asyncio.gather(*(call_all(session) for session in sessions))
    return {"latencies_s": latencies_s, "elapsed_s": time.perf_counter() - started}


# --- the providers (this process) and the phases -----------------------------------------


@dataclass(frozen=True, slots=True)
class Market:
    providers: list[Agent]
    buyer_keys: list[AgentKeys]


@contextlib.asynccontextmanager
async def market(exchange: RunningExchange, arguments: argparse.Namespace) -> AsyncIterator[Market]:
    """A provider per session selling CAPABILITY metered, and a funded key per buyer."""
    url = exchange.nats_url
    operator = await Agent.connect(url, exchange.operator_keys, options=AGENT_OPTIONS)
    providers: list[Agent] = []
    try:
        for _ in range(arguments.sessions):
            provider = await Agent.connect(url, AgentKeys.generate(), options=AGENT_OPTIONS)
            providers.append(provider)
            await provider.serve_metered(
                CAPABILITY,
                echo,
                unit_price_millicredits=UNIT_PRICE_MILLICREDITS,
                units_per_price=UNITS_PER_PRICE,
                units_of=units_in,
            )
        buyer_keys = [AgentKeys.generate() for _ in range(arguments.sessions)]
        minting = OperatorClient(operator)
        for keys in buyer_keys:
            await minting.mint(keys.agent_id, ceiling_millicredits(arguments), reason="bench")
        yield Market(providers, buyer_keys)
    finally:
        for agent in (*providers, operator):
            await agent.close()


class ReceiptCounter:
    """Counts the usage receipts the providers in this process verify.

    ``MeteredDesk`` checks every receipt with ``verify_evidence`` as
    ``agent_client.metering`` imported it; while ``counting``, that name is
    wrapped (in this process only) to count the receipts it accepts and to
    note when the ``expected``-th was.
    """

    def __init__(self, expected: int, /) -> None:
        self.expected = expected
        self.count = 0
        self.all_verified = asyncio.Event()
        self.last_verified_at = 0.0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        original = metering.verify_evidence  # type: ignore[attr-defined]

        def verify(opened: Any, /, **checks: Any) -> Any:
            verified = original(opened, **checks)
            if checks["expected_type"] is UsageReceipt:
                self.count += 1
                if self.count == self.expected:
                    self.last_verified_at = time.perf_counter()
                    self.all_verified.set()
            return verified

        metering.verify_evidence = verify  # type: ignore[attr-defined]
        try:
            yield
        finally:
            metering.verify_evidence = original  # type: ignore[attr-defined]


class CpuMeter:
    """CPU time each process spent over a phase, per receipt, call or claim, in µs."""

    def __init__(self, pids: dict[str, int], /) -> None:
        self._pids = pids
        self._started_s: dict[str, float] = {}

    def start(self) -> None:
        self._started_s = {name: cpu_s(pid) for name, pid in self._pids.items()}

    def per(self, count: int, what: str, /) -> dict[str, float]:
        assert self._started_s, "start() first"
        return {
            f"cpu_us_per_{what}_{name}": (cpu_s(pid) - self._started_s[name]) * 1e6 / max(1, count)
            for name, pid in self._pids.items()
        }


async def next_report(reports: Reports) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(reports.get, True, PHASE_TIMEOUT_S)
    except queue.Empty:
        raise RuntimeError("the buyers' process did not report in time") from None


async def receipts_phase(
    commands: Commands, reports: Reports, meter: CpuMeter, /, *, expected: int
) -> dict[str, float]:
    """The buyers sign and publish; receipts verified by the providers per second."""
    counter = ReceiptCounter(expected)
    with counter.counting():
        meter.start()
        started = time.perf_counter()
        commands.put("receipts")
        try:
            await asyncio.wait_for(counter.all_verified.wait(), PHASE_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"providers verified {counter.count} of {expected}") from None
        cpu = meter.per(expected, "receipt")
    published = await next_report(reports)
    return {
        "receipts": expected,
        "receipts_per_s_end_to_end": expected / (counter.last_verified_at - started),
        "receipts_published_per_s": published["receipts_published"] / published["elapsed_s"],
        **cpu,
    }


async def calls_phase(commands: Commands, reports: Reports, meter: CpuMeter, /) -> dict[str, float]:
    meter.start()
    commands.put("calls")
    report = await next_report(reports)
    latencies_s: list[float] = report["latencies_s"]
    latency = percentiles(latencies_s)
    return {
        "calls": len(latencies_s),
        "calls_per_s": len(latencies_s) / report["elapsed_s"],
        "call_p50_ms": latency["p50_ms"],
        "call_p99_ms": latency["p99_ms"],
        **meter.per(len(latencies_s), "call"),
    }


def claim_receipts(
    bench_market: Market, contract_ids: list[str], arguments: argparse.Namespace
) -> list[list[tuple[int, Envelope]]]:
    """Each session's claims: ``--claims`` receipts of evenly increasing units, signed now
    with its buyer's key (as its MeteredSession would sign them)."""
    clock = SystemClock()
    step_units = arguments.receipts // arguments.claims
    return [
        [
            (units, sealed_receipt(keys, provider.agent_id, contract_id, units, clock))
            for units in range(step_units, step_units * arguments.claims + 1, step_units)
        ]
        for keys, provider, contract_id in zip(
            bench_market.buyer_keys, bench_market.providers, contract_ids, strict=True
        )
    ]


def claim_of(receipt: Envelope, /) -> Callable[[Header], ClaimUsage]:
    return lambda header: ClaimUsage(header=header, receipt=receipt)


async def claims_phase(
    bench_market: Market, contract_ids: list[str], meter: CpuMeter, arguments: argparse.Namespace
) -> dict[str, float]:
    """Every provider claims its receipts one after another, all at once: claims per second."""
    claims = claim_receipts(bench_market, contract_ids, arguments)
    latencies_s: list[float] = []

    async def claim_all(provider: Agent, receipts: list[tuple[int, Envelope]]) -> None:
        for units, receipt in receipts:
            started = time.perf_counter()
            # Agent.claim_usage claims the one receipt its desk holds; these name
            # each receipt, through the same signed request path it takes.
            reply = await provider._request(ClaimUsage, claim_of(receipt))
            latencies_s.append(time.perf_counter() - started)
            view = expect_reply(reply, MeteredReply).metered
            assert (view.claimed_units, view.captured_millicredits) == (units, unit_cost(units))

    meter.start()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            claim_all(provider, receipts)
            for provider, receipts in zip(bench_market.providers, claims, strict=True)
        )
    )
    elapsed_s = time.perf_counter() - started
    latency = percentiles(latencies_s)
    return {
        "claims": len(latencies_s),
        "claims_per_s": len(latencies_s) / elapsed_s,
        "claim_p50_ms": latency["p50_ms"],
        "claim_p99_ms": latency["p99_ms"],
        **meter.per(len(latencies_s), "claim"),
    }


def settled_exactly(view: MeteredView, /, *, units: int, ceiling: int) -> bool:
    """Closed, having captured what ``units`` cost (up to the ceiling) and released the rest."""
    return (
        view.state is MeteredState.CLOSED
        and view.claimed_units == units
        and view.captured_millicredits == min(unit_cost(units), ceiling)
        and view.captured_millicredits + view.released_millicredits == ceiling
        and view.fee_millicredits + view.net_millicredits == view.captured_millicredits
    )


async def close_sessions(
    bench_market: Market, contract_ids: list[str], arguments: argparse.Namespace
) -> dict[str, bool]:
    """Each provider closes its session with its latest receipt (that of the last call)."""
    views = await asyncio.gather(
        *(
            provider.close_metered(contract_id)
            for provider, contract_id in zip(bench_market.providers, contract_ids, strict=True)
        )
    )
    units, ceiling = arguments.receipts + arguments.calls, ceiling_millicredits(arguments)
    wrong = [view for view in views if not settled_exactly(view, units=units, ceiling=ceiling)]
    for view in wrong:
        print(f"a session did not settle as its receipts say: {view}", file=sys.stderr)
    return {"sessions_settled_exactly": not wrong}


async def over_nats(exchange: RunningExchange, arguments: argparse.Namespace) -> dict[str, Any]:
    """The buyers' process opens the sessions; then receipts, calls, claims and the closes."""
    assert exchange.pid is not None
    async with market(exchange, arguments) as bench_market:
        fleet = Fleet(
            nats_url=exchange.nats_url,
            buyer_seeds=tuple(keys.seed_text() for keys in bench_market.buyer_keys),
            provider_ids=tuple(provider.agent_id for provider in bench_market.providers),
            ceiling_millicredits=ceiling_millicredits(arguments),
            receipts_per_session=arguments.receipts,
            calls_per_session=arguments.calls,
        )
        context = multiprocessing.get_context("spawn")
        commands: Commands = context.Queue()
        reports: Reports = context.Queue()
        async with child_process(run_buyers, fleet, commands, reports, name="buyers") as pid:
            contract_ids: list[str] = (await next_report(reports))["contract_ids"]
            meter = CpuMeter(
                {
                    "providers": os.getpid(),
                    "buyers": pid,
                    "exchange": exchange.pid,
                    "nats_server": nats_server_pid(exchange.pid),
                }
            )
            expected = arguments.sessions * arguments.receipts
            figures: dict[str, Any] = await receipts_phase(
                commands, reports, meter, expected=expected
            )
            figures.update(await calls_phase(commands, reports, meter))
            figures.update(await claims_phase(bench_market, contract_ids, meter, arguments))
            figures.update(await close_sessions(bench_market, contract_ids, arguments))
    return figures


# --- runs, ratios, output ----------------------------------------------------------------


def ratios(figures: dict[str, Any], /) -> dict[str, float]:
    """Each figure over the ed25519 work it stands on (see the module's docstring)."""
    sign_per_s, verify_per_s = figures["ed25519_sign_per_s"], figures["ed25519_verify_per_s"]
    signed_per_s = figures["receipts_signed_per_s_in_process"]
    verified_per_s = figures["receipts_verified_per_s_in_process"]
    end_to_end_per_s = figures["receipts_per_s_end_to_end"]
    # Buyer and provider each on a core: the slower of one sign and one verify.
    receipt_limit_per_s = min(sign_per_s, verify_per_s)
    call_limit_per_s = 1 / max(
        CALL_BUYER_SIGNS / sign_per_s + CALL_BUYER_VERIFIES / verify_per_s,
        CALL_PROVIDER_SIGNS / sign_per_s + CALL_PROVIDER_VERIFIES / verify_per_s,
    )
    claim_limit_per_s = 1 / (
        CLAIM_EXCHANGE_SIGNS / sign_per_s + CLAIM_EXCHANGE_VERIFIES / verify_per_s
    )
    return {
        "receipts_signed_ratio_to_ed25519": signed_per_s / sign_per_s,
        "receipts_verified_ratio_to_ed25519": verified_per_s / verify_per_s,
        "receipt_ed25519_limit_per_s": receipt_limit_per_s,
        "receipts_end_to_end_ratio_to_ed25519": end_to_end_per_s / receipt_limit_per_s,
        "receipts_end_to_end_ratio_to_in_process": end_to_end_per_s
        / min(signed_per_s, verified_per_s),
        "call_ed25519_limit_per_s": call_limit_per_s,
        "calls_ratio_to_ed25519": figures["calls_per_s"] / call_limit_per_s,
        "claim_ed25519_limit_per_s": claim_limit_per_s,
        "claims_ratio_to_ed25519": figures["claims_per_s"] / claim_limit_per_s,
    }


async def measure_once(arguments: argparse.Namespace) -> dict[str, Any]:
    """The in-process figures, then a fresh exchange for the figures over NATS."""
    figures: dict[str, Any] = await in_process_figures()
    with tempfile.TemporaryDirectory(prefix="agentx-bench-metered-") as data_dir:
        async with running_exchange(Path(data_dir)) as exchange:
            assert exchange.auth, "the benchmark runs with NATS auth on, as agentx up does"
            figures.update(await over_nats(exchange, arguments))
        # The exchange has stopped: check what it left in its database file.
        problems = await ledger_problems(exchange.database_url)
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    figures.update(ratios(figures))
    return figures


def summarize(arguments: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric figure over the runs, and the key ones per run."""
    summary: dict[str, Any] = {
        "sessions": arguments.sessions,
        "receipts_per_session": arguments.receipts,
        "calls_per_session": arguments.calls,
        "claims_per_session": arguments.claims,
        "cores": os.cpu_count(),
        "runs_count": len(runs),
    }
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        if isinstance(first, bool):
            summary[name] = all(values)
        elif isinstance(first, int | float):
            summary[name] = statistics.median(values)
    summary["target"] = f">= {TARGET_RECEIPTS_PER_S:,.0f} receipts/s end to end"
    summary["target_met"] = summary["receipts_per_s_end_to_end"] >= TARGET_RECEIPTS_PER_S
    summary["runs"] = [{name: run[name] for name in KEY_FIGURES} for run in runs]
    return summary


def print_text(summary: dict[str, Any]) -> None:
    for name, value in summary.items():
        if name != "runs":
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"{name:<48} {shown}")
    print("per run:")
    for index, run in enumerate(summary["runs"], start=1):
        print(f"  {index}: " + "  ".join(f"{name} {value:,.1f}" for name, value in run.items()))


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = [await measure_once(arguments) for _ in range(arguments.runs)]
    return summarize(arguments, runs)


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS_DEFAULT, help="in parallel")
    parser.add_argument("--receipts", type=int, default=RECEIPTS_DEFAULT, help="per session")
    parser.add_argument("--calls", type=int, default=CALLS_DEFAULT, help="per session")
    parser.add_argument("--claims", type=int, default=CLAIMS_DEFAULT, help="per session")
    parser.add_argument("--runs", type=int, default=3, help="fresh exchange each run; medians")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not 1 <= arguments.sessions <= SESSIONS_MAX:
        return f"--sessions 1..{SESSIONS_MAX}"
    # Every claim's receipt is within the receipts phase's units, so the close's
    # final receipt (after the calls) is above the last claim.
    if not 1 <= arguments.claims <= arguments.receipts <= RECEIPTS_MAX:
        return f"1 <= --claims <= --receipts <= {RECEIPTS_MAX:,}"
    if not (1 <= arguments.calls <= CALLS_MAX and 1 <= arguments.runs <= RUNS_MAX):
        return f"--calls 1..{CALLS_MAX:,} and --runs 1..{RUNS_MAX}"
    return arguments


def main() -> int:
    return run_benchmark(
        parse_arguments,
        main_async,
        print_text,
        passed=lambda summary: summary["ledger_balanced"] and summary["sessions_settled_exactly"],
    )


if __name__ == "__main__":
    raise SystemExit(main())
