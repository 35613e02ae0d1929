"""Metered sessions survive an exchange worker killed with SIGKILL mid-work.

Each test runs the exchange worker in a child process
(``tests/exchange/metered_crash_child.py``), drives metered sessions through
it with real agents, and sends many money steps at once. Once the worker
has answered the first of them, or half of them (so at least one has
committed; in practice most others are still in flight, some committed but
unanswered), the test kills the child with SIGKILL: no reply, no cleanup
beyond what the database itself guarantees.

It then proves, on the database the crash left behind (before any worker
touches it again), that every step was all-or-nothing: the ledger
invariants hold (escrow pending equals open sessions' ceilings less their
captures; captures equal the sum of the claims), no answered step was lost,
and each session's capture is exactly what its claimed receipt owes. A
fresh worker on the same database then takes the same requests again, and
the final balances are checked to the millicredit:

* claims: every unit is captured once, whatever the kill interrupted;
  closing from the provider's side captures ``min(price of the units,
  ceiling)``, pays the provider that less the fee, and returns the rest of
  the ceiling to the buyer;
* opens: a session's hold and its row commit together or not at all, and a
  repeated open of a committed offer is answered ``quote_already_accepted``
  with that session's id.

Both databases (``database_url``), like the other crash test
(``test_group_commit_contracts.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent_client import (
    Agent,
    AgentKeys,
    AgentOptions,
    ExchangeError,
    MeteredSession,
    OperatorClient,
    ReceivedMeteredOffer,
)
from agent_client.protocol import (
    ClaimUsage,
    CloseMetered,
    Envelope,
    MeteredReply,
    MeteredState,
    MeteredView,
)
from agent_client.replies import expect_reply
from agent_client.signing import b64decode
from exchange import ExchangeConfig, ExchangeWorker, check_exchange_invariants, migrate_database
from exchange.adapters import metered_store
from exchange.domain.metered_rules import MeteredRow, metered_id_for_offer
from wallet import open_database

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPABILITY = "text.echo"
FUNDS = 10_000
FEE_RATE_BPS = 500
# Bounds on waiting for the child worker: to listen, to answer steps, to die.
CHILD_READY_TIMEOUT_S = 30
ANSWERS_TIMEOUT_S = 30
CHILD_EXIT_TIMEOUT_S = 30
# Requests to a dead worker fail within this; the test waits for all of them.
REQUEST_TIMEOUT_S = 3
AGENT_OPTIONS = AgentOptions(request_timeout_s=REQUEST_TIMEOUT_S, close_grace_s=0.2)


@dataclass
class CrashableExchange:
    """An exchange worker in a child process this test may kill, then one in-process."""

    nats_url: str
    database_url: str
    exchange_keys: AgentKeys
    operator_keys: AgentKeys
    child: asyncio.subprocess.Process
    child_log: Path
    worker: ExchangeWorker | None = None
    agents: list[Agent] = field(default_factory=list)

    async def agent(self, keys: AgentKeys | None = None) -> Agent:
        agent = await Agent.connect(
            self.nats_url, keys or AgentKeys.generate(), options=AGENT_OPTIONS
        )
        self.agents.append(agent)
        return agent

    async def funded_agent(self, amount_millicredits: int) -> Agent:
        agent = await self.agent()
        operator = await self.agent(self.operator_keys)
        await OperatorClient(operator).mint(
            agent.agent_id, amount_millicredits, reason="test grant"
        )
        return agent

    async def kill_child(self) -> None:
        """SIGKILL the child worker (this test started it, by its process id)."""
        os.kill(self.child.pid, signal.SIGKILL)
        exit_code = await asyncio.wait_for(self.child.wait(), CHILD_EXIT_TIMEOUT_S)
        assert exit_code == -signal.SIGKILL, self.child_log.read_text()

    async def check_crashed_database(self) -> None:
        """The invariants of the database as the crash left it, before a worker opens it."""
        engine = open_database(self.database_url)
        try:
            await check_exchange_invariants(engine)
        finally:
            await engine.dispose()

    async def sessions_in_database(self, contract_ids: list[str]) -> dict[str, MeteredRow | None]:
        engine = open_database(self.database_url)
        try:
            async with engine.connect() as connection:
                return {
                    contract_id: await metered_store.get_session(connection, contract_id)
                    for contract_id in contract_ids
                }
        finally:
            await engine.dispose()

    async def restart_in_process(self) -> ExchangeWorker:
        """A fresh worker on the same database and key, in this process."""
        assert self.worker is None and self.child.returncode is not None
        self.worker = ExchangeWorker(
            ExchangeConfig(
                nats_url=self.nats_url,
                database_url=self.database_url,
                keys=self.exchange_keys,
                operator_ids=frozenset({self.operator_keys.agent_id}),
            )
        )
        await self.worker.start()
        return self.worker


@pytest_asyncio.fixture
async def crashable(
    nats_url: str, database_url: str, exchange_keys: AgentKeys, tmp_path: Path
) -> AsyncIterator[CrashableExchange]:
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    seed_path = tmp_path / "exchange.seed"
    exchange_keys.save(seed_path)
    child_log = tmp_path / "child.log"
    # The child's logs go to a file: a pipe nobody reads could fill and stall it.
    with child_log.open("wb") as log_file:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.exchange.metered_crash_child",
            nats_url,
            database_url,
            str(seed_path),
            operator_keys.agent_id,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    running = CrashableExchange(
        nats_url, database_url, exchange_keys, operator_keys, child, child_log
    )
    try:
        assert child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), CHILD_READY_TIMEOUT_S)
        assert ready == b"ready\n", child_log.read_text()
        yield running
    finally:
        for agent in running.agents:
            await agent.close()
        if running.worker is not None:
            await running.worker.stop()
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
            await asyncio.wait_for(child.wait(), CHILD_EXIT_TIMEOUT_S)


async def killed_after_answers(
    crashable: CrashableExchange,
    steps: list[Callable[[], Awaitable[Any]]],
    *,
    answers: int,
) -> list[Any]:
    """Start every step at once, SIGKILL the worker once it has answered ``answers``
    of them (with a result or a typed refusal), and return each step's outcome: its
    result, or the exception it ended with (steps in flight time out)."""
    assert 1 <= answers <= len(steps)
    answered_enough = asyncio.Event()
    answered = 0

    def note_answer() -> None:
        nonlocal answered
        answered += 1
        if answered >= answers:
            answered_enough.set()

    async def counting_answers(step: Callable[[], Awaitable[Any]]) -> Any:
        try:
            outcome = await step()
        except ExchangeError:
            note_answer()
            raise
        note_answer()
        return outcome

    tasks = [asyncio.create_task(counting_answers(step)) for step in steps]
    try:
        await asyncio.wait_for(answered_enough.wait(), ANSWERS_TIMEOUT_S)
    finally:
        await crashable.kill_child()
        # Steps in flight fail within the request timeout; none is left running.
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


# When the kill lands: right after the worker's first answer (most steps are lost
# in flight), or once it has answered half of them (more sessions part-claimed).
KILL_MOMENTS = pytest.mark.parametrize("kill_moment", ["after-first-answer", "after-half"])


def answers_before_kill(kill_moment: str, steps: int) -> int:
    return 1 if kill_moment == "after-first-answer" else max(1, steps // 2)


def fee_of(captured_millicredits: int) -> int:
    return captured_millicredits * FEE_RATE_BPS // 10_000


# --- claims in flight -----------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """One session's price and size: what its calls consume and what it may capture."""

    unit_price_millicredits: int
    units_per_price: int
    units_per_call: int
    ceiling_millicredits: int
    calls: int

    def captured_for(self, units: int) -> int:
        owed = units * self.unit_price_millicredits // self.units_per_price
        return min(owed, self.ceiling_millicredits)


SESSION_TERMS = [
    Terms(100, 1, 1, 1_000, 6),
    # The ceiling caps the capture: 5 calls owe 500 against 450.
    Terms(100, 1, 1, 450, 5),
    # Per thousand units, rounded down on the cumulative count: 1,800 units cost 12.
    Terms(7, 1000, 300, 1_000, 6),
    Terms(100, 1, 3, 2_000, 6),
]


@dataclass
class ClaimedSession:
    terms: Terms
    provider: Agent
    buyer: Agent
    session: MeteredSession
    # The buyer's receipts, one per call, for ever more units.
    receipts: list[Envelope]
    receipt_units: list[int]


async def echo(task: Any) -> Any:
    return {"echo": task}


async def session_with_receipts(crashable: CrashableExchange, terms: Terms) -> ClaimedSession:
    provider = await crashable.agent()
    await provider.serve_metered(
        CAPABILITY,
        echo,
        unit_price_millicredits=terms.unit_price_millicredits,
        units_per_price=terms.units_per_price,
        units_of=lambda _input, _output: terms.units_per_call,
    )
    buyer = await crashable.funded_agent(FUNDS)
    offer = await buyer.metered_offer(provider.agent_id, CAPABILITY)
    session = await buyer.open_metered(offer, ceiling_millicredits=terms.ceiling_millicredits)
    receipts: list[Envelope] = []
    receipt_units: list[int] = []
    for call in range(terms.calls):
        await session.call(call)
        assert session.receipt is not None
        receipts.append(session.receipt)
        receipt_units.append(session.units_received)
    assert receipt_units == [terms.units_per_call * (n + 1) for n in range(terms.calls)]
    return ClaimedSession(terms, provider, buyer, session, receipts, receipt_units)


async def claim(provider: Agent, receipt: Envelope) -> MeteredView:
    reply = await provider._request(
        ClaimUsage, lambda header: ClaimUsage(header=header, receipt=receipt)
    )
    return expect_reply(reply, MeteredReply).metered


def claiming(provider: Agent, receipt: Envelope) -> Callable[[], Awaitable[MeteredView]]:
    return lambda: claim(provider, receipt)


def claim_plan(sessions: list[ClaimedSession]) -> list[tuple[ClaimedSession, Envelope]]:
    """Every receipt of every session, ever higher, every other one twice, the sessions
    interleaved: what providers send when they claim often and retry."""
    rounds = max(len(claimed.receipts) for claimed in sessions)
    return [
        (claimed, claimed.receipts[n])
        for n in range(rounds)
        for claimed in sessions
        if n < len(claimed.receipts)
        for _ in range(1 + n % 2)
    ]


def check_session_after_crash(
    claimed: ClaimedSession, row: MeteredRow | None, acknowledged_units: int
) -> None:
    """A session as the crash left it: a claim is there whole (capture, fee and units)
    or absent, and no claim the worker answered is lost."""
    assert row is not None
    assert row.state is MeteredState.OPEN
    assert row.claimed_units in {0, *claimed.receipt_units}
    assert row.claimed_units >= acknowledged_units
    captured = claimed.terms.captured_for(row.claimed_units)
    assert (row.captured_millicredits, row.fee_millicredits) == (captured, fee_of(captured))
    assert row.net_millicredits == captured - fee_of(captured)


@KILL_MOMENTS
async def test_claims_in_flight_when_the_worker_is_killed_capture_each_unit_once(
    crashable: CrashableExchange, kill_moment: str
) -> None:
    sessions = [await session_with_receipts(crashable, terms) for terms in SESSION_TERMS]
    plan = claim_plan(sessions)
    contract_ids = [claimed.session.contract_id for claimed in sessions]

    first_tries = await killed_after_answers(
        crashable,
        [claiming(claimed.provider, receipt) for claimed, receipt in plan],
        answers=answers_before_kill(kill_moment, len(plan)),
    )
    acknowledged = {contract_id: 0 for contract_id in contract_ids}
    for outcome in first_tries:
        if isinstance(outcome, MeteredView):
            acknowledged[outcome.contract_id] = max(
                acknowledged[outcome.contract_id], outcome.claimed_units
            )
    assert any(acknowledged.values())  # at least one claim committed before the kill

    await crashable.check_crashed_database()
    rows = await crashable.sessions_in_database(contract_ids)
    for claimed in sessions:
        contract_id = claimed.session.contract_id
        check_session_after_crash(claimed, rows[contract_id], acknowledged[contract_id])

    worker = await crashable.restart_in_process()
    for claimed in sessions:
        row = rows[claimed.session.contract_id]
        assert row is not None
        # The ledger agrees with the session rows the crash left.
        balance = await claimed.buyer.balance()
        assert balance.held_millicredits == row.ceiling_millicredits - row.captured_millicredits
        earned = (await claimed.provider.balance()).available_millicredits
        assert earned == row.net_millicredits

    retries = await asyncio.gather(
        *(claim(claimed.provider, receipt) for claimed, receipt in plan),
        return_exceptions=True,
    )
    for (claimed, receipt), retry in zip(plan, retries, strict=True):
        if receipt is claimed.receipts[-1]:
            # The latest receipt always lands: it captures, or finds itself claimed.
            assert isinstance(retry, MeteredView), retry
            assert retry.claimed_units == claimed.receipt_units[-1]
        elif isinstance(retry, ExchangeError):
            assert retry.code == "invalid_state"  # a higher receipt was claimed first
        else:
            assert isinstance(retry, MeteredView), retry

    for claimed in sessions:
        await check_closed_by_provider(claimed)
    await check_exchange_invariants(worker.engine)


async def check_closed_by_provider(claimed: ClaimedSession) -> None:
    """The provider closes with its latest receipt: the capture is what the receipts
    owe (capped by the ceiling), the provider is paid it less the fee, the buyer
    gets the rest of the ceiling back."""
    contract_id, latest = claimed.session.contract_id, claimed.receipts[-1]
    reply = await claimed.provider._request(
        CloseMetered,
        lambda header: CloseMetered(header=header, contract_id=contract_id, final_receipt=latest),
    )
    view = expect_reply(reply, MeteredReply).metered
    terms = claimed.terms
    captured = terms.captured_for(claimed.receipt_units[-1])
    assert view.state is MeteredState.CLOSED
    assert (view.claimed_units, view.captured_millicredits) == (
        claimed.receipt_units[-1],
        captured,
    )
    assert (view.fee_millicredits, view.net_millicredits) == (
        fee_of(captured),
        captured - fee_of(captured),
    )
    assert view.fee_millicredits + view.net_millicredits == view.captured_millicredits
    assert view.released_millicredits == terms.ceiling_millicredits - captured
    balance = await claimed.buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (FUNDS - captured, 0)
    earned = (await claimed.provider.balance()).available_millicredits
    assert earned == view.net_millicredits


# --- opens in flight ------------------------------------------------------------------

OPENING_BUYERS = 8
OPEN_CEILING = 1_000


@KILL_MOMENTS
async def test_a_session_opened_as_the_worker_is_killed_holds_all_or_nothing(
    crashable: CrashableExchange, kill_moment: str
) -> None:
    provider = await crashable.agent()
    await provider.serve_metered(
        CAPABILITY, echo, unit_price_millicredits=100, units_of=lambda _input, _output: 1
    )
    buyers = [await crashable.funded_agent(FUNDS) for _ in range(OPENING_BUYERS)]
    offers = [await buyer.metered_offer(provider.agent_id, CAPABILITY) for buyer in buyers]
    # The exchange names a session after its offer's signed bytes.
    contract_ids = [metered_id_for_offer(b64decode(offer.envelope.doc)) for offer in offers]

    def opening(
        buyer: Agent, offer: ReceivedMeteredOffer
    ) -> Callable[[], Awaitable[MeteredSession]]:
        return lambda: buyer.open_metered(offer, ceiling_millicredits=OPEN_CEILING)

    first_tries = await killed_after_answers(
        crashable,
        [opening(buyer, offer) for buyer, offer in zip(buyers, offers, strict=True)],
        answers=answers_before_kill(kill_moment, OPENING_BUYERS),
    )
    answered = {
        outcome.contract_id for outcome in first_tries if isinstance(outcome, MeteredSession)
    }
    assert answered  # at least one open committed before the kill
    assert answered <= set(contract_ids)

    await crashable.check_crashed_database()
    rows = await crashable.sessions_in_database(contract_ids)
    committed = {contract_id for contract_id, row in rows.items() if row is not None}
    assert answered <= committed  # no answered open is lost
    for buyer, contract_id in zip(buyers, contract_ids, strict=True):
        row = rows[contract_id]
        if row is not None:
            assert (row.buyer_id, row.state) == (buyer.agent_id, MeteredState.OPEN)
            assert (row.ceiling_millicredits, row.captured_millicredits) == (OPEN_CEILING, 0)

    worker = await crashable.restart_in_process()
    for buyer, contract_id in zip(buyers, contract_ids, strict=True):
        # The hold is there exactly when the session row is.
        held = OPEN_CEILING if contract_id in committed else 0
        balance = await buyer.balance()
        assert (balance.available_millicredits, balance.held_millicredits) == (
            FUNDS - held,
            held,
        )

    for buyer, offer, contract_id in zip(buyers, offers, contract_ids, strict=True):
        await check_open_retried(buyer, offer, contract_id, committed=contract_id in committed)
    await check_exchange_invariants(worker.engine)

    for contract_id in contract_ids:
        closed = await provider.close_metered(contract_id)
        assert (closed.state, closed.released_millicredits) == (MeteredState.CLOSED, OPEN_CEILING)
    for buyer in buyers:
        balance = await buyer.balance()
        assert (balance.available_millicredits, balance.held_millicredits) == (FUNDS, 0)
    await check_exchange_invariants(worker.engine)


async def check_open_retried(
    buyer: Agent, offer: ReceivedMeteredOffer, contract_id: str, *, committed: bool
) -> None:
    """Opening the same offer again: the committed session's id, or the session now."""
    try:
        session = await buyer.open_metered(offer, ceiling_millicredits=OPEN_CEILING)
    except ExchangeError as refused:
        assert committed, refused
        assert (refused.code, refused.contract_id) == ("quote_already_accepted", contract_id)
    else:
        assert not committed
        assert session.contract_id == contract_id
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (
        FUNDS - OPEN_CEILING,
        OPEN_CEILING,
    )
