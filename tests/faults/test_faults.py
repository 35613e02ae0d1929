"""Faults under load: the production topology broken on purpose while deals run.

What this proves, with real processes only (3 nats-server nodes with R3
streams, 3 ``agentx worker`` processes, PostgreSQL from
AGENTX_TEST_POSTGRES_URL with a fresh database per test; skipped with that
reason when it is not set). Each test starts ``ExchangeCluster``, runs the
same load (BUYERS buyers and PROVIDERS providers, every agent connected
with the whole URL list and retrying a lost answer REQUEST_TRIES times,
each buyer running deals back to back: RFQ, hire, wait for the delivery,
accept) and injects ONE fault while it runs:

- kill-node: SIGKILL of the NATS node that leads the result stream. Clients
  and workers on it reconnect to the other two; the R3 streams elect a new
  leader and keep serving; notices sent while an agent was reconnecting
  come again when it asks (``notices.subscribe`` after the reconnect).
- kill-worker: SIGKILL of one worker process. The other two keep serving;
  a step it was taking is either committed or asked again by the client
  (with the same outcome), and its timer lease passes to a survivor.
- drop-database: every connection to the test's database terminated
  (``pg_terminate_backend``), DATABASE_DROPS times. Workers answer
  ``unavailable`` for the steps caught by a drop, reconnect and serve on;
  the clients' retries absorb it. The PostgreSQL server is shared with
  other test runs on this machine and is not ours to restart, so only
  connection drops are tested, not a server restart.
- rolling-restart: each worker in turn stopped with SIGTERM (it drains its
  requests) and replaced by a new one started with ``--migrate``, the
  upgrade path. Concurrent upgrades queue on an advisory lock; a separate
  test races three upgrades of an empty database and proves that each
  migration is applied by exactly one of them.

After the load: wait (bounded) for contracts in flight to settle, then
check the ledger invariants (``check_exchange_invariants``: balanced
ledgers, escrow pending = the open contracts' prices, settled contracts
adding up), that credit was neither created nor lost (the issuance
account's debit = what the test minted = every other account's balance
plus escrow; buyers, providers and the fee account each hold exactly what
the contracts say), that no contract is left ``delivered`` by a lost
accept, that most deals were released, and that deals were still being
released in the load's last seconds (the cluster recovered). One line per test is printed
(run pytest with ``-s`` to see it) for the resolution note, e.g.
``fault=kill-node load=8 buyers x 2 providers for 30 s deals: released=...``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agent_client import (
    Agent,
    AgentClientError,
    AgentKeys,
    AgentOptions,
    OperatorClient,
    QuoteRequest,
)
from agent_client.transport import connect_nats
from broker.streams import RESULT_STREAM
from exchange import check_exchange_invariants
from exchange.bootstrap.cluster import ClusterConfig, ExchangeCluster, WorkerProcess
from tests.exchange.echo_shop import CAPABILITY, PRICE
from tests.fixtures_database import POSTGRES_URL_VARIABLE, _fresh_postgres_database
from wallet import open_database
from wallet.database import async_database_url

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

REPO_ROOT = Path(__file__).resolve().parents[2]

# The load. Each provider takes TASK_S per task, so deliveries are in flight
# when a fault strikes; a deal takes well under a second when all is well.
BUYERS = 8
PROVIDERS = 2
TASK_S = 0.05
# Clients give up on one try after REQUEST_TIMEOUT_S and try REQUEST_TRIES
# times in all (pauses 0.2, 0.4, 0.8, 1.6 s): about 14 s of cover, more
# than a NATS reconnect or a database reconnect takes.
REQUEST_TIMEOUT_S = 2.0
REQUEST_TRIES = 5
# A lost delivery is refunded by the sweeper at this deadline, so the
# wait for settlement after the load stays short.
DELIVERY_WITHIN_S = 15
# One deal, bounded: quotes, hire, delivery, accept with their retries.
DEAL_TIMEOUT_S = DELIVERY_WITHIN_S + 4 * REQUEST_TIMEOUT_S * REQUEST_TRIES
# Credits minted for each buyer: more than it can spend in one test.
DEALS_PER_BUYER_MAX = 2_000
# The load runs WARMUP_S before the fault, during it, and TAIL_S after it.
WARMUP_S = 8.0
TAIL_S = 20.0
# The figures count the first seconds after a fault's last step as "during" it.
RECOVERY_S = 5.0
# Deals must be released again in the load's last seconds: the cluster
# recovered (a JetStream election after a node's loss takes 4 to 9 s).
FINAL_WINDOW_S = 5.0
assert RECOVERY_S + FINAL_WINDOW_S < TAIL_S
DATABASE_DROPS = 8
DATABASE_DROP_INTERVAL_S = 1.5
# After the load: contracts still open are delivered or refunded by their
# deadline, and the sweeper runs every second.
SETTLE_TIMEOUT_S = DELIVERY_WITHIN_S + 10
SETTLE_POLL_S = 0.5
# The share of contracts opened that must end released. Measured on two
# busy cores: every fault here released all but a handful.
RELEASED_SHARE_MIN = 0.9
# A cluster starts in ~10 s on two cores; each test's whole run is bounded.
TEST_TIMEOUT_S = 180
assert DEAL_TIMEOUT_S < TEST_TIMEOUT_S and SETTLE_TIMEOUT_S > DELIVERY_WITHIN_S

PENDING_STATES = ("open", "delivered", "disputed")
SETTLED_STATES = ("released", "refunded", "resolved")
ISSUANCE_ACCOUNT_ID = "platform:issuance"
REVENUE_ACCOUNT_ID = "platform:revenue"
ESCROW_ACCOUNT_ID = "platform:escrow"
RELAY_JOB = "outbox.relay"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    async with _fresh_postgres_database(admin_url) as url:
        yield url


@dataclass
class Load:
    """What the buyers saw: each deal's outcome and when it ended (monotonic s)."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)
    minted_millicredits: int = 0
    started_at: float = 0.0
    # When the fault was injected (its first step) and when its last step returned.
    fault_at: float = 0.0
    fault_done_at: float = 0.0
    stopped_at: float = 0.0

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(outcome for _, outcome in self.outcomes)

    def released_between(self, start: float, end: float) -> int:
        return sum(
            1 for at, outcome in self.outcomes if start <= at < end and outcome == "released"
        )

    def rates(self) -> str:
        """Deals released per second before the fault, during it (and RECOVERY_S
        after its last step), and after that."""
        recovered_at = self.fault_done_at + RECOVERY_S
        phases = (
            (self.started_at, self.fault_at),
            (self.fault_at, recovered_at),
            (recovered_at, self.stopped_at),
        )
        per_s = [self.released_between(start, end) / (end - start) for start, end in phases]
        return "/".join(f"{rate:.0f}" for rate in per_s)

    def longest_stall_s(self) -> float:
        """The longest time without a deal released, from the start to the stop."""
        times = [self.started_at, *sorted(at for at, o in self.outcomes if o == "released")]
        times.append(self.stopped_at)
        return max(later - earlier for earlier, later in itertools.pairwise(times))


class RetryCounter(logging.Handler):
    """Counts the clients' "asking again" lines (agent_client/retries.py)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.retries = 0
        self.unavailable = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.retries += 1
        self.unavailable += "unavailable" in record.getMessage()


async def _slow_echo(task: Any) -> Any:
    await asyncio.sleep(TASK_S)
    return task


async def _deal(buyer: Agent, number: int) -> str:
    """One whole deal: RFQ, hire, wait for the delivery, accept. Its outcome."""
    request = QuoteRequest(
        CAPABILITY,
        "echo",
        budget_millicredits=PRICE,
        quotes_max=1,
        delivery_within_s=DELIVERY_WITHIN_S,
    )
    quotes = await buyer.request_quotes(request)
    if not quotes:
        return "no_quote"
    contract = await buyer.hire(quotes[0], {"deal": number})
    delivery = await contract.wait_delivery(timeout_s=DELIVERY_WITHIN_S + REQUEST_TIMEOUT_S)
    return str((await contract.accept_delivery(delivery)).state)


async def _buy_until(buyer: Agent, stop: asyncio.Event, load: Load) -> None:
    loop = asyncio.get_running_loop()
    number = 0
    while not stop.is_set() and number < DEALS_PER_BUYER_MAX:
        number += 1
        try:
            async with asyncio.timeout(DEAL_TIMEOUT_S):
                outcome = await _deal(buyer, number)
        except TimeoutError:
            outcome = "deal_timeout"
        except AgentClientError as exc:
            outcome = f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
        load.outcomes.append((loop.time(), outcome))
        if outcome == "no_quote":
            await asyncio.sleep(0.2)  # no provider reachable this instant


async def _run_under_load(cluster: ExchangeCluster, fault: Callable[[], Awaitable[None]]) -> Load:
    """Start the agents, run the load for WARMUP_S, the fault, then TAIL_S; stop the agents."""
    options = AgentOptions(
        close_grace_s=1.0,
        exchange_id=cluster.exchange_keys.agent_id,
        request_timeout_s=REQUEST_TIMEOUT_S,
        request_tries=REQUEST_TRIES,
    )
    url = cluster.nats_url
    load = Load()
    agents: list[Agent] = []
    try:
        operator = await Agent.connect(url, cluster.operator_keys, options=options)
        agents.append(operator)
        for _ in range(PROVIDERS):
            provider = await Agent.connect(url, AgentKeys.generate(), options=options)
            agents.append(provider)
            await provider.advertise(CAPABILITY, description="echo", price_millicredits=PRICE)
            await provider.serve(CAPABILITY, _slow_echo, pricing=PRICE)
        buyers = [
            await Agent.connect(url, AgentKeys.generate(), options=options) for _ in range(BUYERS)
        ]
        agents += buyers
        for buyer in buyers:
            amount = DEALS_PER_BUYER_MAX * PRICE
            await OperatorClient(operator).mint(buyer.agent_id, amount, reason="fault test")
            load.minted_millicredits += amount
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        load.started_at = loop.time()
        running = [asyncio.create_task(_buy_until(buyer, stop, load)) for buyer in buyers]
        try:
            await asyncio.sleep(WARMUP_S)
            load.fault_at = loop.time()
            await fault()
            load.fault_done_at = loop.time()
            await asyncio.sleep(TAIL_S)
        finally:
            stop.set()
            await asyncio.gather(*running)
        load.stopped_at = loop.time()
    finally:
        for agent in agents:
            await agent.close()
    return load


@dataclass(frozen=True)
class Settlement:
    states: dict[str, int]

    @property
    def contracts(self) -> int:
        return sum(self.states.values())

    def count(self, *states: str) -> int:
        return sum(self.states.get(state, 0) for state in states)


async def _contract_states(engine: AsyncEngine) -> Settlement:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT state, count(*) FROM exchange_contracts GROUP BY state")
        )
        return Settlement({state: count for state, count in rows})


async def _wait_until_settled(engine: AsyncEngine) -> Settlement:
    """Contracts still open get delivered or refunded by their deadline; wait for that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    settlement = await _contract_states(engine)
    while settlement.count("open") and loop.time() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
        settlement = await _contract_states(engine)
    return settlement


async def _assert_no_credit_created_or_lost(engine: AsyncEngine, minted_millicredits: int) -> None:
    """Issuance = minted = every other account's balance; each party holds what
    its contracts say it should."""
    async with engine.connect() as connection:
        accounts = {
            row.id: row.credits_posted
            + row.credits_pending
            - row.debits_posted
            - row.debits_pending
            for row in await connection.execute(text("SELECT * FROM ledger_accounts"))
        }
        settled = (
            await connection.execute(
                text(
                    "SELECT coalesce(sum(price_millicredits - refunded_millicredits), 0) AS paid,"
                    " coalesce(sum(net_millicredits), 0) AS net,"
                    " coalesce(sum(fee_millicredits), 0) AS fee"
                    " FROM exchange_contracts WHERE state IN ('released', 'refunded', 'resolved')"
                )
            )
        ).one()
        held = (
            await connection.execute(
                text(
                    "SELECT coalesce(sum(price_millicredits), 0) FROM exchange_contracts"
                    " WHERE state IN ('open', 'delivered', 'disputed')"
                )
            )
        ).scalar_one()
        buyers = {
            row.buyer_id
            for row in await connection.execute(
                text("SELECT DISTINCT buyer_id FROM exchange_contracts")
            )
        }
        providers = {
            row.provider_id
            for row in await connection.execute(
                text("SELECT DISTINCT provider_id FROM exchange_contracts")
            )
        }
    issued = -accounts.pop(ISSUANCE_ACCOUNT_ID)
    assert issued == minted_millicredits
    assert sum(accounts.values()) == minted_millicredits
    assert accounts[ESCROW_ACCOUNT_ID] == held
    assert accounts[REVENUE_ACCOUNT_ID] == settled.fee
    assert sum(accounts[f"agent:{agent_id}"] for agent_id in providers) == settled.net
    buyers_hold = sum(accounts[f"agent:{agent_id}"] for agent_id in buyers)
    assert buyers_hold == minted_millicredits - settled.paid - held


# What an operator's dashboard would show, summed over the running workers:
# (metric, a label it must carry or "", the name printed).
WATCHED_METRICS = (
    ("agentx_requests_total", 'code="unavailable"', "unavailable_answers"),
    ("agentx_ledger_errors_total", "", "ledger_errors"),
    ("agentx_background_failures_total", "", "background_failures"),
    ("agentx_nats_reconnects_total", "", "nats_reconnects"),
)


async def _worker_metrics(cluster: ExchangeCluster) -> dict[str, int]:
    """WATCHED_METRICS summed over the workers still running (a killed one's are gone)."""
    totals = {name: 0 for _, _, name in WATCHED_METRICS}
    async with httpx.AsyncClient(timeout=5) as client:
        for worker in cluster.workers:
            if worker.exit_code is not None or worker.metrics_url is None:
                continue
            for line in (await client.get(worker.metrics_url)).text.splitlines():
                sample, _, value = line.rpartition(" ")
                for metric, label, name in WATCHED_METRICS:
                    if sample.split("{")[0] == metric and label in sample:
                        totals[name] += int(float(value))
    return totals


async def _check_after_load(
    cluster: ExchangeCluster, load: Load, *, fault: str, extra: str = ""
) -> None:
    metrics = await _worker_metrics(cluster)
    engine = open_database(cluster.config.database_url)
    try:
        settlement = await _wait_until_settled(engine)
        await check_exchange_invariants(engine)
        await _assert_no_credit_created_or_lost(engine, load.minted_millicredits)
    finally:
        await engine.dispose()
    seconds = round(load.stopped_at - load.started_at)
    failures = {outcome: n for outcome, n in load.counts().items() if outcome != "released"}
    print(
        f"\nfault={fault} load={BUYERS} buyers x {PROVIDERS} providers for {seconds} s"
        f" deals: released={settlement.count('released')}"
        f" refunded={settlement.count('refunded')} resolved={settlement.count('resolved')}"
        f" pending={settlement.count(*PENDING_STATES)} invariants=ok credit=conserved"
        f" buyer_errors={failures or 'none'} released_per_s(before/during/after)={load.rates()}"
        f" longest_stall_s={load.longest_stall_s():.1f} worker_metrics={metrics}{extra}"
    )
    assert load.released_between(load.stopped_at - FINAL_WINDOW_S, load.stopped_at) > 0
    # A lost accept is asked again or read back by the client: none is left
    # waiting for its review window (24 h).
    assert settlement.count("delivered", "disputed") == 0, settlement.states
    assert settlement.count("released") >= RELEASED_SHARE_MIN * settlement.contracts, (
        settlement.states
    )


@pytest.fixture
def retry_counter() -> Iterator[RetryCounter]:
    counter = RetryCounter()
    logger = logging.getLogger("agent_client.retries")
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(level)


def _cluster_config(tmp_path: Path, postgres_url: str) -> ClusterConfig:
    return ClusterConfig(
        data_dir=tmp_path, database_url=postgres_url, nodes=3, workers=3, portal_port=None
    )


async def _result_stream_leader(cluster: ExchangeCluster) -> str:
    client = await connect_nats(cluster.nats_url, cluster.exchange_keys, name="fault-test")
    try:
        info = await client.jetstream(timeout=5).stream_info(RESULT_STREAM)
        assert info.cluster is not None and info.cluster.leader
        return info.cluster.leader
    finally:
        await client.close()


async def test_deals_go_on_when_the_result_streams_leader_node_is_killed(
    tmp_path, postgres_url, retry_counter
):
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        ExchangeCluster(_cluster_config(tmp_path, postgres_url)) as cluster,
    ):
        leader = await _result_stream_leader(cluster)
        [victim] = [node for node in cluster.nats.nodes if node.config.data_dir.name == leader]
        assert victim.process_id is not None

        async def kill_node() -> None:
            assert victim.process_id is not None
            os.kill(victim.process_id, signal.SIGKILL)

        load = await _run_under_load(cluster, kill_node)
        assert victim.exit_code == -signal.SIGKILL
        new_leader = await _result_stream_leader(cluster)
        assert new_leader != leader
        await _check_after_load(
            cluster,
            load,
            fault="kill-node",
            extra=(
                f" killed={leader} new_leader={new_leader} client_retries={retry_counter.retries}"
            ),
        )


async def _lease_holder_process_id(cluster: ExchangeCluster, job: str) -> int:
    """The process id of the worker holding ``job``'s timer lease (host/pid/random)."""
    engine = open_database(cluster.config.database_url)
    try:
        async with engine.connect() as connection:
            holder = (
                await connection.execute(
                    text("SELECT holder FROM exchange_timer_leases WHERE job = :job"),
                    {"job": job},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    return int(holder.split("/")[1])


async def test_the_other_workers_serve_when_one_worker_is_killed(
    tmp_path, postgres_url, retry_counter
):
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        ExchangeCluster(_cluster_config(tmp_path, postgres_url)) as cluster,
    ):
        killed: list[WorkerProcess] = []

        async def kill_worker() -> None:
            # The worst one to lose: the one relaying every notice, besides
            # answering its share of requests (the lease is taken once the
            # relay first runs, so it is looked up under load).
            relay_holder = await _lease_holder_process_id(cluster, RELAY_JOB)
            killed.extend(w for w in cluster.workers if w.process_id == relay_holder)
            os.kill(killed[0].process_id, signal.SIGKILL)

        load = await _run_under_load(cluster, kill_worker)
        [victim] = killed
        assert victim.exit_code == -signal.SIGKILL
        survivors = [worker for worker in cluster.workers if worker is not victim]
        assert all(worker.exit_code is None for worker in survivors)
        # Its lease expired and a survivor relays now.
        new_holder = await _lease_holder_process_id(cluster, RELAY_JOB)
        assert new_holder in {worker.process_id for worker in survivors}
        await _check_after_load(
            cluster,
            load,
            fault="kill-worker",
            extra=(
                f" killed={victim.name} (the {RELAY_JOB} lease holder)"
                f" client_retries={retry_counter.retries}"
            ),
        )


async def _terminate_connections(admin_url: str, database: str) -> int:
    """Terminate every connection to ``database`` (not ours: this one is to the admin db)."""
    engine = create_async_engine(
        async_database_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": database},
            )
            return sum(1 for (terminated,) in rows if terminated)
    finally:
        await engine.dispose()


async def test_workers_recover_when_database_connections_are_dropped(
    tmp_path, postgres_url, retry_counter
):
    database = make_url(postgres_url).database
    assert database is not None and database.startswith("agentx_test_")
    admin_url = os.environ[POSTGRES_URL_VARIABLE]
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        ExchangeCluster(_cluster_config(tmp_path, postgres_url)) as cluster,
    ):
        terminated: list[int] = []

        async def drop_connections() -> None:
            for drop in range(DATABASE_DROPS):
                if drop:
                    await asyncio.sleep(DATABASE_DROP_INTERVAL_S)
                terminated.append(await _terminate_connections(admin_url, database))

        load = await _run_under_load(cluster, drop_connections)
        assert all(worker.exit_code is None for worker in cluster.workers)
        assert all(count > 0 for count in terminated), terminated
        await _check_after_load(
            cluster,
            load,
            fault="drop-database",
            extra=(f" connections_terminated={terminated} client_retries={retry_counter.retries}"),
        )


async def _schema_heads(database_url: str) -> set[str]:
    engine = open_database(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return {version for (version,) in rows}
    finally:
        await engine.dispose()


async def test_a_rolling_restart_of_every_worker_keeps_deals_going(
    tmp_path, postgres_url, retry_counter
):
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        ExchangeCluster(_cluster_config(tmp_path, postgres_url)) as cluster,
    ):
        heads = await _schema_heads(postgres_url)
        old_process_ids = [worker.process_id for worker in cluster.workers]
        restart_s: list[float] = []

        async def restart_each_worker() -> None:
            loop = asyncio.get_running_loop()
            for index in range(len(cluster.workers)):
                started = loop.time()
                # Every replacement may migrate: upgrades queue on one lock,
                # and this database is at its heads already (see the test below).
                await cluster.replace_worker(index, migrate=True)
                restart_s.append(round(loop.time() - started, 1))

        load = await _run_under_load(cluster, restart_each_worker)
        new_process_ids = [worker.process_id for worker in cluster.workers]
        assert not set(old_process_ids) & set(new_process_ids)
        assert all(worker.exit_code is None for worker in cluster.workers)
        assert await _schema_heads(postgres_url) == heads
        await _check_after_load(
            cluster,
            load,
            fault="rolling-restart",
            extra=f" restart_s={restart_s} client_retries={retry_counter.retries}",
        )


_MIGRATE_CHILD = """
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
from exchange.bootstrap.worker import migrate_database
asyncio.run(migrate_database(sys.argv[1]))
"""


async def test_workers_migrating_at_once_apply_each_migration_once(postgres_url):
    """Three processes upgrade one empty database at once, as three workers
    started with ``--migrate`` would: each migration runs in exactly one."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _MIGRATE_CHILD,
            postgres_url,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        for _ in range(3)
    ]
    try:
        outputs = await asyncio.wait_for(
            asyncio.gather(*(process.communicate() for process in processes)), 120
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    texts = [stdout.decode() for stdout, _ in outputs]
    assert [process.returncode for process in processes] == [0, 0, 0], texts
    applied = [
        line.split("Running upgrade", 1)[1].strip()
        for output in texts
        for line in output.splitlines()
        if "Running upgrade" in line
    ]
    assert applied, texts
    assert len(applied) == len(set(applied)), applied
    # One process applied them all: the others waited on the lock, then found nothing to do.
    assert sum(1 for output in texts if "Running upgrade" in output) == 1, texts
    assert await _schema_heads(postgres_url)
