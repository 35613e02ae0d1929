"""``agentx cluster``: the production topology on one machine, for development, demos and tests.

N NATS nodes forming a cluster (JetStream replicated across them, the
auth callout on every node), M exchange workers each in an OS process of
its own (``agentx worker``), and the human portal, all on loopback and on
one PostgreSQL database. ``agentx up`` stays the one-command default; this
is the same product as an operator runs it on several machines. The data
directory holds::

    nats/node-1/ ... node-N/    each NATS node's config, log and JetStream store
    workers/worker-1.log ...    each worker's output, a fresh file per run
    exchange.seed, operator.seed, portal.seed   the keys, as ``agentx up`` keeps them
    exchange.json               every NATS URL (comma-separated) and the exchange id

The database is migrated once, here, before any worker starts, so no two
workers race to migrate it.

Every process started here is a child of this one, started in a session
of its own so that a Ctrl-C in the terminal reaches only us; we then stop
them in order (workers first, draining their requests while NATS is still
up; then the portal; then the nodes), each by the process id we started,
and the kernel kills them if we die (PR_SET_PDEATHSIG). A worker that
exits, or a node, ends the whole cluster: half a topology is not what the
operator asked for. The portal runs in this process, as in ``agentx up``.

With a ``base_port`` every port is fixed by one layout (the nodes' from
:func:`broker.nats_cluster.node_ports`, then one metrics port per worker),
so each part can also run on its own: that is how Docker Compose runs this
same topology, one container per part (exchange/bootstrap/cluster_parts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent_client.exchange_address import ExchangeAddress, write_exchange_address
from broker import AccessPolicy
from broker.cluster_secrets import ClusterSecrets
from broker.limits import CLUSTER_NODES_MAX
from broker.nats_cluster import NODE_PORTS_SPAN, NatsCluster, NatsClusterConfig, node_ports
from broker.nats_process import die_with_parent_hook
from exchange.bootstrap.components import WebPortal, embedded_portal_factory
from exchange.bootstrap.stack import (
    ADDRESS_FILE_NAME,
    EXCHANGE_SEED_FILE_NAME,
    load_or_create_keys,
)
from exchange.bootstrap.worker import migrate_database
from exchange.errors import ErrorCode, ExchangeError, ProcessFailed

__all__ = ["ClusterConfig", "ExchangeCluster", "RunningProcess"]

log = logging.getLogger(__name__)

WORKERS_MAX = 16
# Workers start together; on two cores each needs a few seconds to import
# its stack, connect and set up its streams, so a minute is ample.
WORKER_READY_TIMEOUT_S = 60.0
# A worker drains its requests in flight on SIGTERM; past this it is killed.
WORKER_STOP_TIMEOUT_S = 15.0
# SIGKILL cannot be ignored: this only covers a process stuck in the kernel.
WORKER_KILL_WAIT_S = 5.0
# How often a running cluster looks for a process that exited, and how
# often a starting worker's log is read for its "serving" line.
WATCH_INTERVAL_S = 0.5
READY_POLL_INTERVAL_S = 0.1
# What `agentx worker` prints once it serves, and right after it, given
# --metrics-port, where its metrics are (exchange/entrypoints/cli.py).
SERVING_MARKER = b" serving "
METRICS_MARKER = b"metrics: "
# Bytes of a worker's log read for its last line (in an error message).
LOG_TAIL_BYTES_MAX = 4096

assert 0 < READY_POLL_INTERVAL_S < WATCH_INTERVAL_S < WORKER_READY_TIMEOUT_S
assert 0 < WORKER_KILL_WAIT_S <= WORKER_STOP_TIMEOUT_S
# With a base port B, worker i serves its metrics on B+NODE_PORTS_SPAN+i-1.
PORT_BLOCK_SIZE = NODE_PORTS_SPAN + WORKERS_MAX


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterConfig:
    data_dir: Path
    # PostgreSQL: several worker processes write one ledger.
    database_url: str
    nodes: int = 3
    workers: int = 3
    # The portal's HTTP port (0: any free port); None runs no portal.
    portal_port: int | None = 8000
    # Emails that become operators when they sign up to the portal.
    operator_emails: frozenset[str] = frozenset()
    worker_ready_timeout_s: float = WORKER_READY_TIMEOUT_S
    # None: free ports; else the fixed layout from this port (the module's note).
    base_port: int | None = None

    def __post_init__(self) -> None:
        if not self.database_url.startswith("postgresql"):
            raise ValueError("the cluster's database is PostgreSQL (a postgresql:// URL)")
        if not 1 <= self.nodes <= CLUSTER_NODES_MAX:
            raise ValueError(f"nodes must be 1 to {CLUSTER_NODES_MAX}")
        if not 1 <= self.workers <= WORKERS_MAX:
            raise ValueError(f"workers must be 1 to {WORKERS_MAX}")
        if self.portal_port is not None and not 0 <= self.portal_port <= 65_535:
            raise ValueError("portal_port must be 0 (any free port) to 65535")
        if self.base_port is not None and not 0 < self.base_port <= 65_535 - PORT_BLOCK_SIZE:
            raise ValueError(f"base_port must be 1 to {65_535 - PORT_BLOCK_SIZE}")

    def worker_metrics_port(self, index: int, /) -> int:
        """Worker ``index``'s (1-based) metrics port; 0 (any free port) without a base port."""
        assert 1 <= index <= self.workers
        return 0 if self.base_port is None else self.base_port + NODE_PORTS_SPAN + index - 1

    def nats_config(self) -> NatsClusterConfig:
        """The NATS nodes of this topology (their ports: ``node_ports`` of it)."""
        return NatsClusterConfig(
            data_dir=self.data_dir.absolute() / "nats", nodes=self.nodes, base_port=self.base_port
        )


@dataclass(frozen=True, slots=True)
class RunningProcess:
    """One process of the cluster, as the operator sees it."""

    name: str
    process_id: int
    # The URL it serves: a node's client URL, the portal's address; "" for a worker.
    url: str
    # A worker's or the portal's Prometheus endpoint; a node's HTTP monitor
    # (/varz, /jsz: what a NATS exporter reads).
    metrics_url: str | None = None


class WorkerProcess:
    """One ``agentx worker`` as an OS process, its output in a log file."""

    def __init__(self, name: str, arguments: list[str], log_path: Path) -> None:
        self.name = name
        self._arguments = arguments
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None
        self.metrics_url: str | None = None

    @property
    def process_id(self) -> int:
        assert self._process is not None, "the worker is not started"
        return self._process.pid

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self) -> None:
        assert self._process is None, "the worker is already started"
        with self.log_path.open("wb") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "exchange.entrypoints.cli",
                *self._arguments,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent_hook(os.getpid()),
            )

    async def wait_until_serving(self, *, timeout_s: float) -> None:
        """Return once the worker printed its "serving" line; ProcessFailed if it
        exits first or stays silent past ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not _says_serving(output := self.log_path.read_bytes()):
            if self.exit_code is not None:
                raise self.failure(f"exited with {self.exit_code} while starting")
            if loop.time() >= deadline:
                raise self.failure(f"was not serving within {timeout_s} s")
            await asyncio.sleep(READY_POLL_INTERVAL_S)
        self.metrics_url = _metrics_url_in(output)

    def failure(self, reason: str) -> ProcessFailed:
        last_line = _last_line(self.log_path)
        return ProcessFailed(
            name=self.name,
            process_id=None if self._process is None else self._process.pid,
            reason=f"{reason}: {last_line}" if last_line else reason,
            log_path=self.log_path,
        )

    async def stop(self) -> None:
        """SIGTERM, wait WORKER_STOP_TIMEOUT_S, then SIGKILL; only our own process."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        for signal_number, wait_s in (
            (signal.SIGTERM, WORKER_STOP_TIMEOUT_S),
            (signal.SIGKILL, WORKER_KILL_WAIT_S),
        ):
            # It may exit between the check and the signal; asyncio has not
            # reaped it before its returncode is set, so the pid is still ours.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal_number)
            try:
                await asyncio.wait_for(process.wait(), timeout=wait_s)
                return
            except TimeoutError:
                log.warning("%s (pid %d) outlived %s", self.name, process.pid, signal_number.name)
        raise ProcessFailed(name=self.name, process_id=process.pid, reason="survived SIGKILL")


def _says_serving(output: bytes) -> bool:
    # The metrics line follows the serving line at once (both flushed).
    return SERVING_MARKER in output and METRICS_MARKER in output


def _metrics_url_in(output: bytes) -> str:
    """The URL on the worker's line ``metrics: http://127.0.0.1:PORT/metrics (...)``."""
    for line in output.decode("utf-8", "replace").splitlines():
        if line.startswith(METRICS_MARKER.decode()):
            return line.split()[1]
    raise AssertionError("called once the metrics line is there")


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as log_file:
            log_file.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES_MAX))
            lines = log_file.read(LOG_TAIL_BYTES_MAX).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


class ExchangeCluster:
    """The whole local production topology, started once and stopped once."""

    def __init__(self, config: ClusterConfig, /, *, secrets: ClusterSecrets | None = None) -> None:
        self.config = config
        self.data_dir = config.data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.exchange_keys = load_or_create_keys(self.data_dir / EXCHANGE_SEED_FILE_NAME)
        self.operator_keys = load_or_create_keys(self.data_dir / "operator.seed")
        self.portal_keys = load_or_create_keys(self.data_dir / "portal.seed")
        access = AccessPolicy(
            exchange_ids=frozenset({self.exchange_keys.agent_id}),
            portal_ids=frozenset({self.portal_keys.agent_id}),
        )
        self.nats = NatsCluster(config.nats_config(), access=access, secrets=secrets)
        self.workers: list[WorkerProcess] = []
        self.portal: WebPortal | None = None

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated: what clients and workers connect with."""
        if self.config.base_port is None:
            return self.nats.url
        # Fixed ports: known before (and apart from) any node running here.
        host = self.nats.config.host
        return ",".join(
            f"nats://{host}:{ports.client_port}" for ports in node_ports(self.nats.config)
        )

    @property
    def address_path(self) -> Path:
        return self.data_dir / ADDRESS_FILE_NAME

    @property
    def _portal_id(self) -> str | None:
        return None if self.config.portal_port is None else self.portal_keys.agent_id

    async def start(self) -> None:
        """Migrate, start the nodes, the workers, the portal; ProcessFailed or a
        BrokerError if any part fails, with everything started stopped again."""
        await migrate_database(self.config.database_url)
        try:
            await self.nats.start()
            await self._start_workers()
            if self.config.portal_port is not None:
                await self.start_portal(self.config.portal_port)
            write_exchange_address(
                self.address_path,
                ExchangeAddress(
                    nats_url=self.nats_url,
                    exchange_id=self.exchange_keys.agent_id,
                    portal_id=self._portal_id,
                ),
            )
        except BaseException:
            await self.stop()
            raise

    async def _start_workers(self) -> None:
        logs = self.data_dir / "workers"
        logs.mkdir(exist_ok=True, mode=0o700)
        timeout_s = self.config.worker_ready_timeout_s
        for index in range(1, self.config.workers + 1):
            name = f"worker-{index}"
            worker = WorkerProcess(name, self.worker_arguments(index), logs / f"{name}.log")
            # Listed before it starts, so that stop() finds it whatever happens.
            self.workers.append(worker)
            await worker.start()
            if index == 1:
                # The first worker creates the replicated streams alone. Workers
                # racing to create them on a fresh cluster were measured to fail:
                # the losers' update of a stream whose replicas had not yet
                # elected a leader went unanswered (a 5 s timeout, fatal).
                await worker.wait_until_serving(timeout_s=timeout_s)
        await asyncio.gather(
            *(worker.wait_until_serving(timeout_s=timeout_s) for worker in self.workers[1:])
        )

    def worker_arguments(self, index: int, /) -> list[str]:
        """The ``agentx`` arguments that run worker ``index`` (1-based)."""
        arguments = [
            "worker",
            "--nats-url",
            self.nats_url,
            "--database-url",
            self.config.database_url,
            "--key",
            str(self.data_dir / EXCHANGE_SEED_FILE_NAME),
            "--operator",
            self.operator_keys.agent_id,
            # One replica per node: R3 on three nodes.
            "--stream-replicas",
            str(self.config.nodes),
            "--metrics-port",
            str(self.config.worker_metrics_port(index)),
        ]
        if self._portal_id is not None:
            arguments += ["--portal-id", self._portal_id]
        return arguments

    async def replace_worker(self, index: int, /, *, migrate: bool = False) -> WorkerProcess:
        """Stop ``workers[index]`` (SIGTERM: it drains its requests) and start a
        new one in its place: the upgrade path, one worker at a time.

        ``migrate`` has the new worker upgrade the schema before it serves;
        any number may, since concurrent upgrades queue on one lock
        (wallet/migrations/env.py). ProcessFailed if it does not serve.
        """
        old = self.workers[index]
        await old.stop()
        restarts = sum(1 for _ in old.log_path.parent.glob(f"{old.name}.*.log"))
        log_path = old.log_path.with_name(f"{old.name}.{restarts + 1}.log")
        arguments = self.worker_arguments(index + 1) + (["--migrate"] if migrate else [])
        worker = WorkerProcess(old.name, arguments, log_path)
        # In the list before it starts, so that stop() finds it whatever happens.
        self.workers[index] = worker
        await worker.start()
        await worker.wait_until_serving(timeout_s=self.config.worker_ready_timeout_s)
        return worker

    async def start_portal(self, port: int, /) -> None:
        """The portal, in this process; with the nodes here, their callout evicts
        the agents it blocks."""
        # Loaded here: only a cluster with a portal loads the web stack.
        make_portal = embedded_portal_factory()
        if make_portal is None:
            raise ExchangeError(ErrorCode.UNAVAILABLE, "no human portal is installed here")
        self.portal = make_portal(
            database_url=self.config.database_url,
            nats_url=self.nats_url,
            operator_keys=self.operator_keys,
            portal_keys=self.portal_keys,
            evictor=self.nats.callout,
            port=port,
            operator_emails=self.config.operator_emails,
        )
        await self.portal.start()

    def processes(self) -> list[RunningProcess]:
        """Every process of the cluster: the nodes, the workers, this one (the portal)."""
        running = [
            RunningProcess(
                f"nats {node.config.data_dir.name}", process_id, node.url, node.monitor_url
            )
            for node, process_id in zip(self.nats.nodes, self.nats.process_ids, strict=True)
        ]
        running += [
            RunningProcess(worker.name, worker.process_id, "", worker.metrics_url)
            for worker in self.workers
        ]
        if self.portal is not None:
            # The portal serves its metrics beside its pages (portal_metrics.py).
            portal_metrics_url = f"{self.portal.url}/metrics"
            running.append(
                RunningProcess("portal", os.getpid(), self.portal.url, portal_metrics_url)
            )
        return running

    async def wait_for_failure(self) -> ProcessFailed:
        """Return (not raise) the first failure: a worker or a node that exited."""
        while True:
            for worker in self.workers:
                if worker.exit_code is not None:
                    return worker.failure(f"exited with {worker.exit_code}")
            for node in self.nats.exited_nodes():
                return ProcessFailed(
                    name=f"NATS {node.config.data_dir.name}",
                    process_id=node.process_id,
                    reason=f"exited with {node.exit_code}",
                    log_path=node.log_path,
                )
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def stop(self) -> None:
        """Workers (all at once), then the portal, then the nodes. Safe to call twice."""
        outcomes = await asyncio.gather(
            *(worker.stop() for worker in self.workers), return_exceptions=True
        )
        self.workers.clear()
        try:
            if self.portal is not None:
                portal, self.portal = self.portal, None
                await portal.stop()
        finally:
            await self.nats.stop()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def __aenter__(self) -> ExchangeCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
