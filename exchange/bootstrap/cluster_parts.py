"""One part of ``agentx cluster`` run on its own: how Docker Compose runs the topology.

``agentx cluster --only PART`` with the same options as the whole cluster
(and a ``--base-port``, so that every part knows every port) runs one of:

    init       once, first: the keys, the nodes' shared secrets, the database
               migrated, the address file; then it exits
    node-N     NATS node N with its auth callout, until SIGTERM
    worker-N   exchange worker N: ``agentx worker`` with exactly the arguments
               ``agentx cluster`` gives it (the process becomes that worker)
    portal     the human portal, until SIGTERM

Every part reads the keys from the data directory the init step filled, so
the keys are never in an image and every part but init may mount it
read-only. The compose file (exchange/bootstrap/compose_file.py) lists these
parts, so the two ways of running the topology share one description.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from agent_client.exchange_address import ExchangeAddress, write_exchange_address
from broker.cluster_secrets import ClusterSecrets
from exchange.bootstrap.cluster import ClusterConfig, ExchangeCluster
from exchange.bootstrap.worker import migrate_database
from exchange.errors import ProcessFailed

__all__ = ["ClusterPart", "PartKind", "all_parts", "parse_part", "run_part"]

# Inside the data directory: what the nodes share (broker/cluster_secrets.py).
SECRETS_FILE_NAME = "nats/cluster-secrets.json"
# How often a running node is checked for having exited.
NODE_WATCH_INTERVAL_S = 0.5


class PartKind(enum.Enum):
    INIT = "init"
    NODE = "node"
    WORKER = "worker"
    PORTAL = "portal"


@dataclass(frozen=True, slots=True)
class ClusterPart:
    kind: PartKind
    # 1-based for nodes and workers; 0 for init and the portal.
    index: int = 0

    @property
    def name(self) -> str:
        """As ``--only`` takes it and as the compose file names the service."""
        return f"{self.kind.value}-{self.index}" if self.index else self.kind.value


def all_parts(config: ClusterConfig, /) -> list[ClusterPart]:
    """Every part of the topology, in the order they start."""
    parts = [ClusterPart(PartKind.INIT)]
    parts += [ClusterPart(PartKind.NODE, index) for index in range(1, config.nodes + 1)]
    parts += [ClusterPart(PartKind.WORKER, index) for index in range(1, config.workers + 1)]
    if config.portal_port is not None:
        parts.append(ClusterPart(PartKind.PORTAL))
    return parts


def parse_part(text: str, config: ClusterConfig, /) -> ClusterPart:
    """The part named ``text``; ValueError if this topology has no such part."""
    for part in all_parts(config):
        if part.name == text:
            return part
    names = ", ".join(part.name for part in all_parts(config))
    raise ValueError(f"no part {text!r} in this topology (its parts: {names})")


async def run_part(
    config: ClusterConfig, part: ClusterPart, /, *, stop: asyncio.Event
) -> ProcessFailed | None:
    """Run ``part`` until ``stop`` is set (init: until done). A node that exits
    on its own is returned as a failure; start errors are raised."""
    assert config.base_port is not None, "a part run alone needs the fixed port layout"
    if part.kind is PartKind.INIT:
        await _initialise(ExchangeCluster(config), config)
        return None
    if part.kind is PartKind.WORKER:
        _become_worker(ExchangeCluster(config), part.index)
    if part.kind is PartKind.NODE:
        secrets = ClusterSecrets.load(config.data_dir / SECRETS_FILE_NAME)
        return await _run_node(ExchangeCluster(config, secrets=secrets), part.index, stop)
    cluster = ExchangeCluster(config)
    assert config.portal_port is not None
    try:
        await cluster.start_portal(config.portal_port)
        await stop.wait()
    finally:
        await cluster.stop()
    return None


async def _initialise(cluster: ExchangeCluster, config: ClusterConfig) -> None:
    """What every other part needs before it starts; safe to run again."""
    # ExchangeCluster() made the three keys; the nodes' secrets and their
    # directories (each node's volume is mounted on its own) come next.
    nats_dir = config.data_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ClusterSecrets.load_or_create(config.data_dir / SECRETS_FILE_NAME)
    for index in range(1, config.nodes + 1):
        (nats_dir / f"node-{index}").mkdir(exist_ok=True, mode=0o700)
    # Here, once, so that no two workers race to migrate.
    await migrate_database(config.database_url)
    write_exchange_address(
        cluster.address_path,
        ExchangeAddress(
            nats_url=cluster.nats_url,
            exchange_id=cluster.exchange_keys.agent_id,
            portal_id=None if config.portal_port is None else cluster.portal_keys.agent_id,
        ),
    )


def _become_worker(cluster: ExchangeCluster, index: int) -> NoReturn:
    """Replace this process with worker ``index``, run as ``agentx cluster`` runs it,
    so that the container's stop signal reaches the worker itself."""
    arguments = cluster.worker_arguments(index)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "exchange.entrypoints.cli", *arguments])


async def _run_node(
    cluster: ExchangeCluster, index: int, stop: asyncio.Event
) -> ProcessFailed | None:
    node = await cluster.nats.start_node(index)
    print(f"NATS node-{index} serving {node.url} (monitor {node.monitor_url})", flush=True)
    try:
        while not stop.is_set():
            if node.exit_code is not None:
                return ProcessFailed(
                    name=f"NATS node-{index}",
                    process_id=node.process_id,
                    reason=f"exited with {node.exit_code}",
                    log_path=Path(node.log_path),
                )
            try:
                await asyncio.wait_for(stop.wait(), timeout=NODE_WATCH_INTERVAL_S)
            except TimeoutError:
                continue
        return None
    finally:
        await cluster.nats.stop()
