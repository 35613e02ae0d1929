"""docker-compose.yml: the production topology under Docker Compose, for real.

What this proves:

- the committed docker-compose.yml is exactly what ``agentx cluster
  --print-compose`` generates from the topology ``agentx cluster`` runs, so
  the two cannot drift (no Docker needed);
- on a Docker engine here (started as root when it is not running; the test
  skips, saying why, when it cannot be), the project's image builds from
  Debian packages and host-built wheels (docker/build-image.sh), and the
  compose stack generated for free loopback ports and a fresh PostgreSQL
  database comes up healthy: the init step, three NATS nodes, three workers,
  the portal, all on the host's network;
- agents on the host, outside the containers, spread over the three nodes
  with the URL list and keys the init step wrote, complete deals; every
  worker container served some of them; the ledger invariants hold;
- ``docker compose down -v`` removes every container and volume it made.

Every wait is bounded; all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_client import Agent, AgentKeys, AgentOptions
from agent_client.exchange_address import read_exchange_address
from broker.nats_cluster import NODE_PORTS_SPAN
from exchange import check_exchange_invariants
from exchange.bootstrap.cluster import PORT_BLOCK_SIZE
from tests.cluster.test_cluster import DEAL_TIMEOUT_S, _deal, _fund, _requests_served
from tests.exchange.echo_shop import PRICE, open_echo_shop
from tests.fixtures_database import POSTGRES_URL_VARIABLE, _fresh_postgres_database
from wallet import open_database

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "agentx:latest"
NODES = 3
WORKERS = 3
DEALS_PER_BUYER = 2
# Bounds. Starting dockerd takes seconds; the base image about two minutes
# the first time (debootstrap), the project image about one; the stack is
# healthy in ~15 s; down drains the workers.
DOCKERD_START_TIMEOUT_S = 60
IMAGE_BUILD_TIMEOUT_S = 900
COMPOSE_UP_TIMEOUT_S = 300
COMPOSE_DOWN_TIMEOUT_S = 120
HEALTHY_TIMEOUT_S = 120
HEALTH_POLL_INTERVAL_S = 1.0
DOCKER_COMMAND_TIMEOUT_S = 60
# Where a base port is looked for: a block of PORT_BLOCK_SIZE free ports.
PORT_RANGE = (20_000, 40_000)
PORT_ATTEMPTS_MAX = 50


def _run(
    command: list[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd, check=False
    )


def test_the_committed_compose_file_is_what_agentx_cluster_generates():
    generated = _run(
        [sys.executable, "-m", "exchange.entrypoints.cli", "cluster", "--print-compose"],
        timeout_s=DOCKER_COMMAND_TIMEOUT_S,
    )
    assert generated.returncode == 0, generated.stderr
    committed = (REPO_ROOT / "docker-compose.yml").read_text()
    assert committed == generated.stdout, (
        "docker-compose.yml drifted from the topology: run "
        "`agentx cluster --print-compose > docker-compose.yml`"
    )


def _docker_answers() -> str:
    """Empty when the engine answers; else what ``docker info`` said."""
    if shutil.which("docker") is None:
        return "no docker command (apt-get install docker.io)"
    try:
        info = _run(["docker", "info"], timeout_s=DOCKER_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "docker info did not answer"
    return "" if info.returncode == 0 else (info.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine that answers: the one running, or a dockerd started here
    (as root) and stopped afterwards; skips with the reason otherwise."""
    problem = _docker_answers()
    if not problem:
        yield
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        pytest.skip(f"no Docker engine ({problem}) and none can be started here (root, dockerd)")
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [dockerd], stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        for _ in range(DOCKERD_START_TIMEOUT_S):
            if process.poll() is not None or not (problem := _docker_answers()):
                break
            time.sleep(1)
        if problem:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            pytest.skip(f"dockerd did not start ({problem}): {' | '.join(tail)}")
        yield
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=DOCKER_COMMAND_TIMEOUT_S)
        if process.poll() is None:
            process.kill()
            process.wait()


def _compose_command() -> list[str]:
    """Debian's docker-compose (v1), or the compose plugin of a newer docker."""
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    if _run(["docker", "compose", "version"], timeout_s=DOCKER_COMMAND_TIMEOUT_S).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed")


@pytest.fixture(scope="module")
def project_image(docker_engine: None) -> str:
    built = _run(["docker/build-image.sh", IMAGE], timeout_s=IMAGE_BUILD_TIMEOUT_S)
    assert built.returncode == 0, built.stdout + built.stderr
    return IMAGE


def _free_base_port() -> int:
    """A base port whose whole block (nodes, routes, monitors, workers) is free on
    loopback right now; another process may take one before the stack binds it."""
    for _ in range(PORT_ATTEMPTS_MAX):
        base = random.randrange(*PORT_RANGE, 100)
        if all(_is_free(port) for port in range(base, base + PORT_BLOCK_SIZE + 1)):
            return base
    raise AssertionError(f"no block of {PORT_BLOCK_SIZE} free ports in {PORT_RANGE}")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    async with _fresh_postgres_database(admin_url) as url:
        yield url


class ComposeStack:
    """One generated compose project in a directory of its own."""

    def __init__(self, directory: Path, database_url: str) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.base_port = _free_base_port()
        # The portal takes the port right after the block.
        self.portal_port = self.base_port + PORT_BLOCK_SIZE
        self.project = f"agentxtest{uuid.uuid4().hex[:10]}"
        self.command = [*_compose_command(), "--project-name", self.project]
        self.env = dict(os.environ, AGENTX_DATABASE_URL=database_url)
        self.env["AGENTX_DATA_DIR"] = str(self.data_dir)

    def write_compose_file(self) -> None:
        generated = _run(
            [sys.executable, "-m", "exchange.entrypoints.cli", "cluster", "--print-compose",
             "--base-port", str(self.base_port), "--portal-port", str(self.portal_port),
             "--nodes", str(NODES), "--workers", str(WORKERS)],
            timeout_s=DOCKER_COMMAND_TIMEOUT_S,
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        (self.directory / "docker-compose.yml").write_text(generated.stdout)

    def compose(self, *arguments: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return _run(
            [*self.command, *arguments], timeout_s=timeout_s, env=self.env, cwd=self.directory
        )

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "30", timeout_s=60).stdout

    def down(self) -> None:
        """Containers and volumes gone; then anything of the project left is removed."""
        self.compose("down", "--volumes", "--timeout", "30", timeout_s=COMPOSE_DOWN_TIMEOUT_S)
        label = f"label=com.docker.compose.project={self.project}"
        left = _run(["docker", "ps", "-aq", "--filter", label], timeout_s=60).stdout.split()
        if left:
            _run(["docker", "rm", "-f", *left], timeout_s=60)

    def health(self) -> dict[str, str]:
        """Each running container's health, by name (the init step has none)."""
        fields = "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
        inspected = _run(
            ["docker", "inspect", "--format", fields, *self.containers()], timeout_s=60
        )
        pairs = (line.split() for line in inspected.stdout.splitlines())
        return {name.lstrip("/"): status for name, status in pairs if status != "none"}

    async def wait_until_healthy(self, *, timeout_s: float) -> dict[str, str]:
        """Every container's health once none is still starting, or at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while "starting" in (health := await asyncio.to_thread(self.health)).values():
            if loop.time() >= deadline:
                break
            await asyncio.sleep(HEALTH_POLL_INTERVAL_S)
        return health

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return _run(["docker", "ps", "-aq", "--filter", label], timeout_s=60).stdout.split()


@pytest.mark.docker
@pytest.mark.postgres
async def test_the_compose_stack_serves_deals_from_outside_its_containers(
    project_image, postgres_url, tmp_path
):
    stack = ComposeStack(tmp_path, postgres_url)
    stack.write_compose_file()
    try:
        # `up -d` returns once the conditions others depend on hold (the nodes
        # and the first worker healthy); the rest are waited for here.
        up = await asyncio.to_thread(stack.compose, "up", "-d", timeout_s=COMPOSE_UP_TIMEOUT_S)
        assert up.returncode == 0, up.stderr + stack.logs()
        health = await stack.wait_until_healthy(timeout_s=HEALTHY_TIMEOUT_S)
        assert sorted(health.values()) == ["healthy"] * (NODES + WORKERS + 1), (
            f"{health}\n{stack.logs()}"
        )
        await asyncio.wait_for(_trade(stack), DEAL_TIMEOUT_S * 3)
        engine = open_database(postgres_url)
        try:
            await check_exchange_invariants(engine)
        finally:
            await engine.dispose()
    finally:
        await asyncio.to_thread(stack.down)
    assert stack.containers() == []


async def _trade(stack: ComposeStack) -> None:
    """Deals by agents on this host, two buyers on each node, through the URL
    list and keys the init step wrote; every worker container serves some."""
    address = read_exchange_address(stack.data_dir / "exchange.json")
    urls = address.nats_url.split(",")
    assert urls == [f"nats://127.0.0.1:{stack.base_port + index}" for index in range(NODES)]
    options = AgentOptions(close_grace_s=0.2, exchange_id=address.exchange_id)
    operator_keys = AgentKeys.load(stack.data_dir / "operator.seed")
    provider = await Agent.connect(address.nats_url, AgentKeys.generate(), options=options)
    operator = await Agent.connect(address.nats_url, operator_keys, options=options)
    buyers = [
        await Agent.connect(urls[index % NODES], AgentKeys.generate(), options=options)
        for index in range(2 * NODES)
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
    # Worker i's metrics port in the layout (ClusterConfig.worker_metrics_port).
    metrics_base = stack.base_port + NODE_PORTS_SPAN
    served = [
        await _requests_served(f"http://127.0.0.1:{metrics_base + index}/metrics")
        for index in range(WORKERS)
    ]
    assert all(count > 0 for count in served), served
