"""The parts of the topology a container runs alone, without Docker.

What this proves: with a base port every part knows every port (the nodes',
each worker's metrics port, the URL list) before anything runs; the nodes'
shared secrets survive the file the init step writes (0600), and a damaged
file is one clear error; ``--only`` names a real part and needs the fixed
layout, answered in one line with the usage exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.cluster_secrets import ClusterSecrets
from broker.errors import NatsServerConfigInvalid
from broker.nats_cluster import NodePorts, node_ports
from exchange.bootstrap.cluster import ClusterConfig, ExchangeCluster
from exchange.bootstrap.cluster_parts import PartKind, all_parts, parse_part

REPO_ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = "postgresql://nobody@127.0.0.1:1/unused"


def test_a_base_port_fixes_every_port_and_the_url_list(tmp_path):
    config = ClusterConfig(data_dir=tmp_path, database_url=DATABASE_URL, base_port=4222)
    assert node_ports(config.nats_config()) == [
        NodePorts(4222, 4232, 4242),
        NodePorts(4223, 4233, 4243),
        NodePorts(4224, 4234, 4244),
    ]
    assert [config.worker_metrics_port(index) for index in (1, 2, 3)] == [4252, 4253, 4254]
    cluster = ExchangeCluster(config)
    assert cluster.nats_url == "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
    arguments = cluster.worker_arguments(2)
    assert arguments[arguments.index("--metrics-port") + 1] == "4253"
    assert arguments[arguments.index("--nats-url") + 1] == cluster.nats_url
    assert arguments[arguments.index("--operator") + 1] == cluster.operator_keys.agent_id


def test_the_parts_are_init_the_nodes_the_workers_and_the_portal(tmp_path):
    config = ClusterConfig(data_dir=tmp_path, database_url=DATABASE_URL, nodes=3, workers=2)
    names = [part.name for part in all_parts(config)]
    assert names == ["init", "node-1", "node-2", "node-3", "worker-1", "worker-2", "portal"]
    assert parse_part("worker-2", config).kind is PartKind.WORKER
    with pytest.raises(ValueError, match="no part 'worker-3'"):
        parse_part("worker-3", config)


def test_the_shared_secrets_come_back_from_their_file(tmp_path):
    path = tmp_path / "cluster-secrets.json"
    written = ClusterSecrets.load_or_create(path)
    read = ClusterSecrets.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read.route_password == written.route_password
    for name in ("issuer", "service_user", "system_user"):
        assert (
            getattr(read.callout_keys, name).public_key
            == getattr(written.callout_keys, name).public_key
        )
    path.write_text('{"route_password": "x"}')
    with pytest.raises(NatsServerConfigInvalid, match="cluster_secrets"):
        ClusterSecrets.load(path)


def test_only_needs_the_fixed_port_layout(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exchange.entrypoints.cli", "cluster", "--only", "node-1",
         "--database-url", DATABASE_URL, "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--base-port" in result.stderr
