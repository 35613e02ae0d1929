"""Timers and the outbox relay act once per contract however many workers run.

What it proves, and how:

* The lease itself (exchange/adapters/timer_lease_store.py), on SQLite and
  PostgreSQL: the first worker takes a job's lease, renews it while another
  is refused, loses it to another only once it has expired, hands it over at
  once by releasing it; and of many workers trying at the same instant, each
  on its own connection, exactly one wins, on a job never run before (the
  INSERT race) and on an expired lease (the UPDATE race).
* ``TimerLeases.run_if_leader`` runs a pass only on the lease holder.
* The relay backs off while JetStream refuses notices (1, 2, 4 ... 30 s, a
  fake clock stands in for the minute) with one log line per change of
  delay, not one per notice per pass, and publishes again once it can.
* Three real workers, each in its own OS process, on one PostgreSQL
  database and the session's nats-server, with fast sweepers racing: every
  contract whose delivery deadline passed is refunded exactly once (one
  refund event per contract, one refund notice per party on the stream, the
  buyers whole again, the ledger invariants), one worker did every sweep
  pass (one holder of the lease throughout, taken once), and the relay left
  no notice unpublished.
* Killing the holder of the sweep's lease with SIGKILL mid-work: another
  worker takes the lease, no earlier than the dead one's lease expired, and
  refunds the contracts still due, each once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, QuoteRequest, subjects
from agent_client.protocol import ContractUpdatedNotice
from escrow import Escrow
from exchange import check_exchange_invariants, migrate_database
from exchange.adapters import timer_lease_store
from exchange.adapters.exchange_tables import contract_events, contracts
from exchange.limits import TIMER_LEASE_TTL_INTERVALS
from exchange.use_cases import ExchangeContext
from exchange.use_cases import exchange_context as context_module
from exchange.use_cases.exchange_context import OutboxNotice
from exchange.use_cases.relay_backoff import RelayBackoff
from exchange.use_cases.timer_leases import TimerLease, TimerLeases
from tests.exchange.notice_tap import NoticeTap, settled, start_tap, wait_outbox_empty
from wallet import SqlLedger, open_database, run_transaction

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB = "contracts.sweep"
TTL_MS = 1_000
T0_MS = 1_000_000


class MovableClock:
    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


async def acquire(engine: AsyncEngine, holder: str, now_ms: int, job: str = JOB) -> bool:
    async def work(connection: AsyncConnection) -> bool:
        return await timer_lease_store.try_acquire(
            connection, job, holder=holder, now_ms=now_ms, ttl_ms=TTL_MS
        )

    return await run_transaction(engine, work)


async def lease_of(engine: AsyncEngine, job: str = JOB) -> TimerLease:
    async with engine.connect() as connection:
        leases = {lease.job: lease for lease in await timer_lease_store.lease_rows(connection)}
    return leases[job]


@pytest_asyncio.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate_database(database_url)
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


# --- the lease ------------------------------------------------------------------------


async def test_a_lease_is_taken_renewed_by_its_holder_and_refused_to_others(engine):
    assert await acquire(engine, "a", T0_MS)
    assert not await acquire(engine, "b", T0_MS + 1)
    assert await acquire(engine, "a", T0_MS + 500)  # a renewal
    # Past the first lease's end, but within the renewed one: still a's.
    assert not await acquire(engine, "b", T0_MS + TTL_MS + 100)
    assert await lease_of(engine) == TimerLease(JOB, "a", T0_MS, T0_MS + 500 + TTL_MS)


async def test_an_expired_lease_is_taken_over_by_another_worker(engine):
    assert await acquire(engine, "a", T0_MS)
    assert await acquire(engine, "b", T0_MS + TTL_MS + 1)
    assert await lease_of(engine) == TimerLease(
        JOB, "b", T0_MS + TTL_MS + 1, T0_MS + 2 * TTL_MS + 1
    )
    # The old holder wakes up late: the job is no longer its own.
    assert not await acquire(engine, "a", T0_MS + TTL_MS + 2)


async def test_a_released_lease_is_free_at_once_and_only_its_holder_releases_it(engine):
    assert await acquire(engine, "a", T0_MS)

    async def release(holder: str) -> bool:
        async def work(connection: AsyncConnection) -> bool:
            return await timer_lease_store.release(
                connection, JOB, holder=holder, now_ms=T0_MS + 10
            )

        return await run_transaction(engine, work)

    assert not await release("b")
    assert not await acquire(engine, "b", T0_MS + 10)
    assert await release("a")
    assert await acquire(engine, "b", T0_MS + 10)
    assert (await lease_of(engine)).holder == "b"


async def test_leases_of_different_jobs_are_independent(engine):
    assert await acquire(engine, "a", T0_MS, job="contracts.sweep")
    assert await acquire(engine, "b", T0_MS, job="outbox.relay")
    assert not await acquire(engine, "a", T0_MS, job="outbox.relay")


RACERS = 8


@pytest.mark.parametrize("lease_before", ["never-taken", "expired"])
async def test_of_many_workers_racing_for_a_lease_exactly_one_wins(engine, lease_before):
    if lease_before == "expired":
        assert await acquire(engine, "old", T0_MS - 2 * TTL_MS)
    results = await asyncio.gather(*(acquire(engine, f"racer-{n}", T0_MS) for n in range(RACERS)))
    assert results.count(True) == 1
    winner = f"racer-{results.index(True)}"
    assert await lease_of(engine) == TimerLease(JOB, winner, T0_MS, T0_MS + TTL_MS)


async def test_only_the_lease_holder_runs_a_pass(bare_context):
    clock = MovableClock()
    context = bare_context(clock)
    first = TimerLeases(context, holder="first", ttl_s=1)
    second = TimerLeases(context, holder="second", ttl_s=1)
    passes: list[str] = []

    def counting(name: str) -> Callable[[], Awaitable[int]]:
        async def run_pass() -> int:
            passes.append(name)
            return 1

        return run_pass

    assert await first.run_if_leader(JOB, counting("first")) == 1
    assert await second.run_if_leader(JOB, counting("second")) == 0
    clock.now += 2_000  # the first worker stalled past its lease
    assert await second.run_if_leader(JOB, counting("second")) == 1
    assert await first.run_if_leader(JOB, counting("first")) == 0
    await second.release_all()
    assert await first.run_if_leader(JOB, counting("first")) == 1
    assert passes == ["first", "second", "first"]


async def test_a_holder_renews_its_lease_only_once_half_of_it_has_run(bare_context):
    clock = MovableClock()
    context = bare_context(clock)
    holder = TimerLeases(context, holder="holder", ttl_s=1)
    other = TimerLeases(context, holder="other", ttl_s=1)

    async def run_pass() -> int:
        return 1

    assert await holder.run_if_leader(JOB, run_pass) == 1
    taken = await lease_of(context.engine)
    assert taken == TimerLease(JOB, "holder", T0_MS, T0_MS + 1_000)
    clock.now += 400  # less than half the lease: no renewal, the pass still runs
    assert await holder.run_if_leader(JOB, run_pass) == 1
    assert await lease_of(context.engine) == taken
    assert await other.run_if_leader(JOB, run_pass) == 0
    clock.now += 200  # more than half: this pass renews it
    assert await holder.run_if_leader(JOB, run_pass) == 1
    assert await lease_of(context.engine) == TimerLease(JOB, "holder", T0_MS, T0_MS + 1_600)
    # Past the first lease's end, within the renewed one: still the holder's.
    clock.now += 500
    assert await other.run_if_leader(JOB, run_pass) == 0


# --- the relay's backoff ---------------------------------------------------------------


class RefusingPublisher:
    """The connection as the relay sees it while it cannot send, then back."""

    def __init__(self) -> None:
        self.available = False
        self.attempts: list[str] = []

    async def publish_notices(self, notices: Sequence[OutboxNotice]) -> list[Exception | None]:
        self.attempts.extend(notice.notice_id for notice in notices)
        if not self.available:
            return [ConnectionError("the connection is closed (test)")] * len(notices)
        return [None] * len(notices)


BareContext = Callable[..., ExchangeContext]


@pytest_asyncio.fixture
async def bare_context(engine: AsyncEngine) -> AsyncIterator[BareContext]:
    """Makes contexts on ``engine`` with no worker around them; closes them after the test
    (on SQLite each keeps the writer's connection)."""
    made: list[ExchangeContext] = []

    def make(clock: MovableClock, publisher: RefusingPublisher | None = None) -> ExchangeContext:
        ledger = SqlLedger(engine)
        context = ExchangeContext(
            engine,
            ledger,
            Escrow(ledger),
            publisher or RefusingPublisher(),
            keys=AgentKeys.generate(),
            clock=clock,
            operator_ids=frozenset(),
        )
        made.append(context)
        return context

    yield make
    for context in made:
        await context.close()


def test_the_relay_backoff_doubles_to_its_cap_and_resets_after_a_success():
    backoff = RelayBackoff(delay_min_ms=1_000, delay_max_ms=30_000)
    assert backoff.ready(0)
    delays, changes = [], []
    for _ in range(8):
        changes.append(backoff.failed(0))
        delays.append(backoff.delay_ms)
    assert delays == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    assert changes == [True] * 6 + [False] * 2
    assert not backoff.ready(29_999) and backoff.ready(30_000)
    backoff.retry_now()  # a publish after commit went through
    assert backoff.ready(0) and backoff.delay_ms == 30_000
    assert backoff.succeeded() and not backoff.succeeded()
    assert backoff.ready(0)


NOTICES = 20
RELAY_MINUTE_S = 60


async def test_the_relay_backs_off_while_sending_fails_and_logs_each_change_once(
    bare_context, caplog
):
    clock = MovableClock()
    publisher = RefusingPublisher()
    context = bare_context(clock, publisher)
    notices = [
        OutboxNotice(f"n{n}", f"U{n}", subjects.notifications(f"U{n}"), b"{}")
        for n in range(NOTICES)
    ]

    async def stage(connection: AsyncConnection) -> None:
        await context.stage(connection, notices)

    await context.run(stage)
    clock.now += context.notice_ack_wait_ms  # sent after commit, never acknowledged
    caplog.set_level(logging.INFO, logger=context_module.__name__)

    passes_publishing = 0
    for _ in range(RELAY_MINUTE_S):  # the worker's loop, once a second for a minute
        attempts_before = len(publisher.attempts)
        assert await context.relay_outbox() == 0
        passes_publishing += len(publisher.attempts) > attempts_before
        clock.now += 1_000
    # Delays of 1, 2, 4, 8, 16 and 30 s: six passes in a minute instead of sixty.
    assert passes_publishing == 6
    assert len(publisher.attempts) == 6 * NOTICES
    lines = relay_log_lines(caplog)
    assert len(lines) == 1 + 6, lines  # publishing stopped; each new delay
    assert "next try in 30 s" in lines[-1]

    publisher.available = True
    clock.now += 30_000
    assert await context.relay_outbox() == NOTICES
    assert await context.relay_outbox() == 0  # sent: due again only after the ack wait
    assert relay_log_lines(caplog)[len(lines) :] == [
        "notices are being sent again",
        "outbox relay: notices are being sent again",
    ]


def relay_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if record.name == context_module.__name__
    ]


# --- three worker processes on one PostgreSQL database -----------------------------------

WORKERS = 3
# Lease time to live: TIMER_LEASE_TTL_INTERVALS sweep intervals (2.5 s).
SWEEP_INTERVAL_S = 0.5
LEASE_TTL_MS = round(TIMER_LEASE_TTL_INTERVALS * SWEEP_INTERVAL_S * 1000)
CAPABILITY = "text.upper"
PRICE = 1_000
CHILD_READY_TIMEOUT_S = 30
CHILD_EXIT_TIMEOUT_S = 30
SETTLED_TIMEOUT_S = 60
POLL_S = 0.05
AGENT_OPTIONS = AgentOptions(request_timeout_s=5, close_grace_s=0.2)


async def never(task: object) -> object:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    instance_id: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text()


@dataclass
class WorkerCluster:
    """Three exchange workers in child processes on one database and NATS server."""

    nats_url: str
    database_url: str
    operator_keys: AgentKeys
    # The workers' key: it may read the notice stream.
    exchange_keys: AgentKeys
    engine: AsyncEngine
    workers: list[WorkerProcess] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    # What each agent made by :meth:`agent` is sent (tests/exchange/notice_tap.py).
    taps: dict[str, NoticeTap] = field(default_factory=dict)

    async def agent(self) -> Agent:
        keys = AgentKeys.generate()
        self.taps[keys.agent_id] = await start_tap(self.nats_url, keys)
        agent = await Agent.connect(self.nats_url, keys, options=AGENT_OPTIONS)
        self.agents.append(agent)
        return agent

    async def funded_agents(self, count: int, amount_millicredits: int) -> list[Agent]:
        operator = await Agent.connect(self.nats_url, self.operator_keys, options=AGENT_OPTIONS)
        self.agents.append(operator)
        agents = [await self.agent() for _ in range(count)]
        for agent in agents:
            await OperatorClient(operator).mint(
                agent.agent_id, amount_millicredits, reason="test grant"
            )
        return agents

    def worker_of(self, instance_id: str) -> WorkerProcess:
        (worker,) = [worker for worker in self.workers if worker.instance_id == instance_id]
        return worker

    async def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL a worker this test started, by its process id."""
        os.kill(worker.process.pid, signal.SIGKILL)
        await asyncio.wait_for(worker.process.wait(), CHILD_EXIT_TIMEOUT_S)

    async def leases(self) -> dict[str, TimerLease]:
        async with self.engine.connect() as connection:
            return {lease.job: lease for lease in await timer_lease_store.lease_rows(connection)}


async def start_worker(
    nats_url: str, database_url: str, seed_path: Path, operator_id: str, log_path: Path
) -> WorkerProcess:
    # Logs go to a file: a pipe nobody reads could fill and stall the child.
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.exchange.timer_worker_child",
            nats_url,
            database_url,
            str(seed_path),
            operator_id,
            str(SWEEP_INTERVAL_S),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    worker = WorkerProcess(process, "", log_path)
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), CHILD_READY_TIMEOUT_S)
    assert ready.startswith(b"ready "), worker.log_text()
    worker.instance_id = ready.decode().split()[1]
    return worker


async def stop_worker(worker: WorkerProcess) -> None:
    if worker.process.returncode is not None:
        return
    worker.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(worker.process.wait(), CHILD_EXIT_TIMEOUT_S)
    except TimeoutError:
        worker.process.kill()
        await worker.process.wait()


@pytest_asyncio.fixture
async def cluster(
    nats_url: str,
    database_url: str,
    exchange_keys: AgentKeys,
    tmp_path: Path,
) -> AsyncIterator[WorkerCluster]:
    if not database_url.startswith("postgresql"):
        pytest.skip("several worker processes share a PostgreSQL database")
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    seed_path = tmp_path / "exchange.seed"
    exchange_keys.save(seed_path)
    engine = open_database(database_url)
    running = WorkerCluster(nats_url, database_url, operator_keys, exchange_keys, engine)
    try:
        for number in range(WORKERS):
            running.workers.append(
                await start_worker(
                    nats_url,
                    database_url,
                    seed_path,
                    operator_keys.agent_id,
                    tmp_path / f"worker-{number}.log",
                )
            )
        yield running
    finally:
        for agent in running.agents:
            await agent.close()
        for tap in running.taps.values():
            await tap.client.close()
        await asyncio.gather(*(stop_worker(worker) for worker in running.workers))
        await engine.dispose()


@dataclass
class LeaseWatch:
    """Every holder seen of each job's lease, polled while the workers race."""

    holders: dict[str, list[TimerLease]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )

    async def run(self, cluster: WorkerCluster) -> None:
        known = {worker.instance_id for worker in cluster.workers}
        while True:
            for job, lease in (await cluster.leases()).items():
                assert lease.holder in known, lease
                seen = self.holders[job]
                if not seen or (seen[-1].holder, seen[-1].acquired_at_ms) != (
                    lease.holder,
                    lease.acquired_at_ms,
                ):
                    seen.append(lease)
            await asyncio.sleep(POLL_S)


async def hire_never_delivered(
    provider: Agent, buyers: list[Agent], *, per_buyer: int, delivery_within_s: int
) -> list[str]:
    """Contracts whose provider never delivers: each is due for a refund at its deadline."""

    async def hire(buyer: Agent) -> str:
        quotes = await buyer.request_quotes(
            QuoteRequest(
                CAPABILITY,
                "x",
                budget_millicredits=PRICE,
                delivery_within_s=delivery_within_s,
                quotes_max=1,
            )
        )
        assert quotes and quotes[0].provider_id == provider.agent_id
        return (await buyer.hire(quotes[0], {"text": "hi"})).contract_id

    return list(await asyncio.gather(*(hire(buyer) for buyer in buyers for _ in range(per_buyer))))


async def never_delivering_provider(cluster: WorkerCluster) -> Agent:
    provider = await cluster.agent()
    await provider.advertise(CAPABILITY, description="never delivers", price_millicredits=PRICE)
    await provider.serve(CAPABILITY, never, pricing=PRICE)
    return provider


async def wait_refunded(engine: AsyncEngine, contract_ids: list[str]) -> None:
    """Until every contract is refunded, read straight from the database: reading one
    through the exchange would apply its timer itself, and the sweepers are on trial."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLED_TIMEOUT_S
    while True:
        async with engine.connect() as connection:
            states = await contract_states(connection, contract_ids)
        if set(states.values()) == {"refunded"}:
            return
        assert loop.time() < deadline, collections.Counter(states.values())
        await asyncio.sleep(POLL_S)


async def contract_states(connection: AsyncConnection, contract_ids: list[str]) -> dict[str, str]:
    found = await connection.execute(
        sa.select(contracts.c.contract_id, contracts.c.state).where(
            contracts.c.contract_id.in_(contract_ids)
        )
    )
    return {str(contract_id): str(state) for contract_id, state in found}


async def check_refunded_once(
    cluster: WorkerCluster, contract_ids: list[str], parties: list[Agent]
) -> None:
    """One refund event per contract, one refund notice to each party, the invariants."""
    async with cluster.engine.connect() as connection:
        events = collections.Counter(
            str(contract_id)
            for (contract_id,) in await connection.execute(
                sa.select(contract_events.c.contract_id).where(
                    contract_events.c.to_state == "refunded"
                )
            )
        )
    assert events == collections.Counter(contract_ids)
    # Every notice acknowledged by its recipient, so every one sent.
    await wait_outbox_empty(cluster.engine, timeout_s=SETTLED_TIMEOUT_S)
    taps = [cluster.taps[party.agent_id] for party in parties]
    await settled(taps)
    refund_notices: collections.Counter[tuple[str, str]] = collections.Counter()
    for party, tap in zip(parties, taps, strict=True):
        for notice in tap.notices.values():
            if isinstance(notice, ContractUpdatedNotice) and notice.state == "refunded":
                refund_notices[(notice.contract_id, party.agent_id)] += 1
    # Two parties per contract, each told once.
    assert set(refund_notices.values()) == {1}
    assert collections.Counter(contract_id for contract_id, _ in refund_notices) == {
        contract_id: 2 for contract_id in contract_ids
    }
    await check_exchange_invariants(cluster.engine)


def lease_takings(cluster: WorkerCluster, job: str) -> list[str]:
    """The workers that logged taking ``job``'s lease, one entry per taking."""
    return [
        worker.instance_id
        for worker in cluster.workers
        for line in worker.log_text().splitlines()
        if line.endswith(f"took the timer lease {job}")
    ]


BUYERS = 5
CONTRACTS_PER_BUYER = 8
GRANT = PRICE * CONTRACTS_PER_BUYER


@pytest.mark.postgres
async def test_three_racing_workers_refund_each_missed_deadline_once(cluster):
    provider = await never_delivering_provider(cluster)
    buyers = await cluster.funded_agents(BUYERS, GRANT)
    watch = LeaseWatch()
    watching = asyncio.create_task(watch.run(cluster))
    try:
        contract_ids = await hire_never_delivered(
            provider, buyers, per_buyer=CONTRACTS_PER_BUYER, delivery_within_s=3
        )
        await wait_refunded(cluster.engine, contract_ids)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)

    await check_refunded_once(cluster, contract_ids, [provider, *buyers])
    for buyer in buyers:
        balance = await buyer.balance()
        assert (balance.available_millicredits, balance.held_millicredits) == (GRANT, 0)
    # One worker did every sweep pass: it took the lease once and kept it.
    (sweeper,) = {lease.holder for lease in watch.holders[JOB]}
    assert lease_takings(cluster, JOB) == [sweeper]
    assert len(watch.holders[JOB]) == 1
    # Every job ran on exactly one worker at a time: one holder each, never handed over.
    for job in ("metered.sweep", "goods.sweep", "subscriptions.sweep", "outbox.relay"):
        assert len(lease_takings(cluster, job)) == 1, job


EARLY_CONTRACTS = 6
LATE_CONTRACTS = 10


@pytest.mark.postgres
async def test_when_the_sweeping_worker_is_killed_another_takes_over_and_finishes(cluster):
    provider = await never_delivering_provider(cluster)
    (early_buyer, late_buyer) = await cluster.funded_agents(2, PRICE * LATE_CONTRACTS)
    early, late = await asyncio.gather(
        hire_never_delivered(
            provider, [early_buyer], per_buyer=EARLY_CONTRACTS, delivery_within_s=1
        ),
        hire_never_delivered(provider, [late_buyer], per_buyer=LATE_CONTRACTS, delivery_within_s=6),
    )
    # Kill the sweeper once it has started refunding: mid-work.
    await wait_any_refunded(cluster.engine, early)
    doomed = cluster.worker_of((await cluster.leases())[JOB].holder)
    await cluster.kill(doomed)
    # Read after the kill: the dead worker renews no more, and nobody else may
    # take the lease for a time to live.
    doomed_lease = (await cluster.leases())[JOB]
    assert doomed_lease.holder == doomed.instance_id

    await wait_refunded(cluster.engine, early + late)
    successor = (await cluster.leases())[JOB]
    assert successor.holder != doomed.instance_id
    # It waited for the dead worker's lease to run out before taking the job.
    assert successor.acquired_at_ms > doomed_lease.expires_at_ms
    assert lease_takings(cluster, JOB).count(successor.holder) == 1
    await check_refunded_once(cluster, early + late, [provider, early_buyer, late_buyer])
    for buyer, hired in ((early_buyer, EARLY_CONTRACTS), (late_buyer, LATE_CONTRACTS)):
        balance = await buyer.balance()
        assert balance.held_millicredits == 0
        assert balance.available_millicredits == PRICE * LATE_CONTRACTS, hired


async def wait_any_refunded(engine: AsyncEngine, contract_ids: list[str]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLED_TIMEOUT_S
    while True:
        async with engine.connect() as connection:
            states = await contract_states(connection, contract_ids)
        if "refunded" in states.values():
            return
        assert loop.time() < deadline, collections.Counter(states.values())
        await asyncio.sleep(POLL_S / 5)
