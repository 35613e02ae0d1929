"""``agentx cluster``: the production topology, started for real on loopback.

What this proves, with real processes only (nats-server nodes, ``agentx
worker`` processes, PostgreSQL from AGENTX_TEST_POSTGRES_URL, a fresh
database per test; skipped with that reason when it is not set):

- three nodes form one JetStream cluster with the auth callout on every
  node: an agent connected to any single node is admitted, and a message
  crosses the routes (no PostgreSQL needed for this one);
- a node that cannot start (its port taken) fails the whole start and
  leaves no node running;
- through the composition API: agents spread over the three nodes complete
  deals, every worker process serves some of the requests (nats-server
  prefers a queue member on the requester's node, and there are agents on
  every node), the exchange's streams have three replicas, the ledger
  invariants hold, and a worker that dies is reported as the cluster's
  failure;
- through the real CLI: it prints the URLs and every process id, a deal
  completes through the URL list it wrote, and SIGINT ends it with exit 0
  and none of the processes it started left behind;
- the CLI's one-line answers without a database, and its ``--help``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, subjects
from agent_client.transport import connect_nats
from broker import AccessPolicy, ClusterMembership, NatsServerConfig, NatsServerExited
from broker import nats_cluster as nats_cluster_module
from broker.errors import NatsServerConfigInvalid
from broker.nats_cluster import NatsCluster, NatsClusterConfig
from broker.nats_process import _render_config_file
from broker.streams import GOODS_STREAM, RESULT_STREAM
from exchange import check_exchange_invariants
from exchange.bootstrap.cluster import ClusterConfig, ExchangeCluster
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop
from tests.fixtures_database import POSTGRES_URL_VARIABLE, _fresh_postgres_database
from wallet import open_database

# The slow ones start whole clusters; the CLI's usage checks are quick.
slow = pytest.mark.cluster
on_postgres = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounds: a cluster with workers starts in ~10 s on two cores; a deal takes
# well under a second; stopping waits at most the workers' drain.
START_TIMEOUT_S = 120
DEAL_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
DEALS_PER_BUYER = 2


def _process_exists(process_id: int) -> bool:
    """True while ``process_id`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{process_id}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _descendants(process_id: int) -> set[int]:
    """Every process whose chain of parents leads to ``process_id``, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {process_id}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    async with _fresh_postgres_database(admin_url) as url:
        yield url


@slow
async def test_three_nodes_form_one_cluster_with_the_callout_on_every_node(tmp_path):
    exchange_keys = AgentKeys.generate()
    access = AccessPolicy(exchange_ids=frozenset({exchange_keys.agent_id}))
    config = NatsClusterConfig(data_dir=tmp_path, nodes=3)
    async with NatsCluster(config, access=access) as cluster:
        assert len(cluster.urls) == 3 and len(set(cluster.process_ids)) == 3
        process_ids = cluster.process_ids
        # An agent key on each single node: that node's callout admits it.
        clients = [
            await connect_nats(url, AgentKeys.generate(), name="probe") for url in cluster.urls
        ]
        try:
            # Routes: what an agent on node-1 publishes reaches one on node-3
            # (RFQ subjects are open to every agent).
            received: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
            subject = subjects.rfq("test.ping")

            async def take(message: Msg) -> None:
                if not received.done():
                    received.set_result(message)

            await clients[2].subscribe(subject, cb=take)
            await clients[2].flush()
            for _ in range(50):  # the interest crosses the route shortly after
                await clients[0].publish(subject, b"over the route")
                await asyncio.sleep(0.05)
                if received.done():
                    break
            assert (await asyncio.wait_for(received, 5)).data == b"over the route"
            # Anonymous clients are still refused, on any node.
            with pytest.raises((nats.errors.Error, OSError)):
                await nats.connect(
                    cluster.urls[1],
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )
        finally:
            for client in clients:
                await client.close()
    assert not any(_process_exists(process_id) for process_id in process_ids)


@slow
async def test_a_node_that_cannot_start_stops_the_whole_cluster(tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real_free_ports = nats_cluster_module._free_ports

    def one_taken(host: str, *, count: int) -> list[int]:
        ports = real_free_ports(host, count=count)
        return [taken.getsockname()[1], *ports[1:]]  # node-1's client port

    monkeypatch.setattr(nats_cluster_module, "_free_ports", one_taken)
    cluster = NatsCluster(NatsClusterConfig(data_dir=tmp_path, nodes=3, forming_timeout_s=10))
    try:
        with pytest.raises(NatsServerExited, match="exited with code"):
            await cluster.start()
    finally:
        taken.close()
    assert cluster.process_ids and not any(map(_process_exists, cluster.process_ids))


async def _fund(operator: Agent, agents: list[Agent], amount_millicredits: int) -> None:
    for agent in agents:
        await OperatorClient(operator).mint(agent.agent_id, amount_millicredits, reason="test")


async def _deal(buyer: Agent) -> str:
    """One whole deal with the echo shop: quote, hire, delivery, release."""
    contract = await buyer.hire(await echo_quote(buyer), {"from": buyer.agent_id})
    delivery = await contract.wait_delivery(timeout_s=DEAL_TIMEOUT_S)
    view = await contract.accept_delivery(delivery)
    return str(view.state)


async def _requests_served(metrics_url: str) -> float:
    """The requests one worker answered, from its Prometheus metrics."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(metrics_url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("agentx_requests_total{")
    )


async def _assert_streams_have_three_replicas(cluster: ExchangeCluster) -> None:
    client = await connect_nats(cluster.nats_url, cluster.exchange_keys, name="replica-check")
    try:
        js = client.jetstream(timeout=5)
        for stream in (RESULT_STREAM, GOODS_STREAM):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and info.cluster.leader
            assert len(info.cluster.replicas or []) == 2  # besides the leader
    finally:
        await client.close()


@slow
@on_postgres
async def test_deals_settle_across_nodes_and_worker_processes(tmp_path, postgres_url):
    config = ClusterConfig(
        data_dir=tmp_path, database_url=postgres_url, nodes=3, workers=3, portal_port=0
    )
    async with asyncio.timeout(START_TIMEOUT_S + DEAL_TIMEOUT_S + STOP_TIMEOUT_S):
        async with ExchangeCluster(config) as cluster:
            urls = cluster.nats.urls
            options = AgentOptions(close_grace_s=0.2, exchange_id=cluster.exchange_keys.agent_id)
            provider = await Agent.connect(cluster.nats_url, AgentKeys.generate(), options=options)
            operator = await Agent.connect(urls[0], cluster.operator_keys, options=options)
            # Two buyers on each node, each knowing that one node only.
            buyers = [
                await Agent.connect(urls[index % 3], AgentKeys.generate(), options=options)
                for index in range(6)
            ]
            try:
                await open_echo_shop(provider)
                await _fund(operator, buyers, DEALS_PER_BUYER * PRICE)
                states = await asyncio.gather(
                    *(_deal(buyer) for buyer in buyers for _ in range(DEALS_PER_BUYER))
                )
                assert states == ["released"] * len(buyers) * DEALS_PER_BUYER
            finally:
                for agent in (provider, operator, *buyers):
                    await agent.close()
            served = [await _requests_served(w.metrics_url or "") for w in cluster.workers]
            assert all(count > 0 for count in served), served
            await _assert_streams_have_three_replicas(cluster)
            engine = open_database(postgres_url)
            try:
                await check_exchange_invariants(engine)
            finally:
                await engine.dispose()
            # A worker that dies is the cluster's failure, named in one line.
            victim = cluster.workers[1]
            os.kill(victim.process_id, signal.SIGKILL)
            failure = await asyncio.wait_for(cluster.wait_for_failure(), 10)
            assert failure.name == "worker-2" and "exited with -9" in str(failure)
            process_ids = [process.process_id for process in cluster.processes()]
    # The portal ran in this process; every other one is gone.
    assert not any(_process_exists(pid) for pid in process_ids if pid != os.getpid())


async def _read_until_running(process: asyncio.subprocess.Process) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("running;"):
        line = await process.stdout.readline()
        assert line, f"agentx cluster ended early: {lines}"
        lines.append(line.decode().rstrip())
    return lines


@slow
@on_postgres
async def test_the_cli_serves_deals_and_leaves_nothing_behind_on_ctrl_c(tmp_path, postgres_url):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.entrypoints.cli", "cluster",
        "--database-url", postgres_url, "--data-dir", str(tmp_path),
        "--nodes", "3", "--workers", "2", "--portal-port", "0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        lines = await asyncio.wait_for(_read_until_running(process), START_TIMEOUT_S)
        [urls_line] = [line for line in lines if line.startswith("NATS URLs:")]
        assert urls_line.count("nats://127.0.0.1:") == 3
        table = [re.match(r"(nats node-\d|worker-\d|portal)\s+(\d+)\s", line) for line in lines]
        printed = {match.group(1): int(match.group(2)) for match in table if match}
        assert len(printed) == 3 + 2 + 1 and printed["portal"] == process.pid
        started = _descendants(process.pid)  # the portal's localstripe too
        assert set(printed.values()) - {process.pid} <= started
        address = json.loads((tmp_path / "exchange.json").read_text())
        assert address["nats_url"] == urls_line.split()[-1]
        operator_keys = AgentKeys.load(tmp_path / "operator.seed")
        options = AgentOptions(close_grace_s=0.2, exchange_id=address["exchange_id"])
        async with (
            await Agent.connect(address["nats_url"], AgentKeys.generate(), options=options) as shop,
            await Agent.connect(
                address["nats_url"], AgentKeys.generate(), options=options
            ) as buyer,
            await Agent.connect(address["nats_url"], operator_keys, options=options) as operator,
        ):
            await open_echo_shop(shop)
            await _fund(operator, [buyer], PRICE)
            assert await asyncio.wait_for(_deal(buyer), DEAL_TIMEOUT_S) == "released"
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert not any(_process_exists(pid) for pid in started | set(printed.values()))


def _run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.entrypoints.cli", *arguments],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env,
    )  # fmt: skip


def test_the_cli_says_in_one_line_that_it_needs_a_database(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "AGENTX_DATABASE_URL"}
    result = _run_cli("cluster", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--database-url" in result.stderr and "AGENTX_DATABASE_URL" in result.stderr
    sqlite = _run_cli("cluster", "--database-url", "sqlite:///x.db", env=env)
    assert sqlite.returncode == 2 and "PostgreSQL" in sqlite.stderr
    unreachable = _run_cli(
        "cluster", "--database-url", "postgresql://nobody@127.0.0.1:1/none",
        "--data-dir", str(tmp_path), env=env,
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert unreachable.stderr.strip().count("\n") == 0, unreachable.stderr


def test_the_cli_help_shows_the_defaults():
    result = _run_cli("cluster", "--help", env=dict(os.environ))
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for default in ("(default: 3)", "(default: 8000)", "AGENTX_DATABASE_URL", "1..5", "1..16"):
        assert default in text


def _membership(**changes: object) -> ClusterMembership:
    values: dict[str, object] = {
        "server_name": "node-1",
        "cluster_name": "agentx",
        "cluster_port": 16_222,
        "route_ports": (16_223, 16_224),
        "route_user": "agentx-route",
        "route_password": "0123abcd",
    }
    return ClusterMembership(**{**values, **changes})  # type: ignore[arg-type]


def test_a_node_config_names_the_node_and_routes_to_the_others_with_a_password(tmp_path):
    config = NatsServerConfig(data_dir=tmp_path, port=14_222, cluster=_membership())
    text = _render_config_file(config, data_dir=tmp_path)
    assert 'server_name: "node-1"' in text and 'listen: "127.0.0.1:16222"' in text
    assert '"nats-route://agentx-route:0123abcd@127.0.0.1:16223"' in text
    assert '"nats-route://agentx-route:0123abcd@127.0.0.1:16224"' in text
    assert "0123abcd" not in repr(config)  # the password stays out of logs
    # A lone server's config is what it always was: no cluster block.
    assert "cluster {" not in _render_config_file(
        NatsServerConfig(data_dir=tmp_path), data_dir=tmp_path
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"cluster_port": 0},  # routes need the port before the node starts
        {"route_ports": (16_222,)},  # a route to itself
        {"server_name": "node 1"},
        {"route_password": "a:b@c"},
    ],
)
def test_a_node_config_refuses_what_would_break_the_routes(tmp_path, changes):
    with pytest.raises(NatsServerConfigInvalid):
        NatsServerConfig(data_dir=tmp_path, cluster=_membership(**changes))
