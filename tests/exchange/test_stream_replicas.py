"""Stream replicas follow the configuration, and a stream that cannot be set up stops
a worker from starting, with one clear error (here: R3 asked of a single server).

The 3-node cluster itself, where R3 succeeds, is started by ``agentx cluster``'s tests.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agent_client import AgentKeys
from broker.errors import StreamSetupFailed
from broker.streams import goods_stream_config, result_stream_config
from exchange import ExchangeConfig, ExchangeWorker, migrate_database

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT_S = 60


def test_every_stream_takes_the_replicas_asked_for():
    for config_of in (result_stream_config, goods_stream_config):
        assert config_of().num_replicas == 1
        assert config_of(replicas=3).num_replicas == 3


def test_a_worker_refuses_replicas_out_of_range():
    with pytest.raises(ValueError, match="stream_replicas"):
        ExchangeConfig(
            nats_url="nats://127.0.0.1:1",
            database_url="sqlite+aiosqlite:///unused.db",
            keys=AgentKeys.generate(),
            operator_ids=frozenset(),
            stream_replicas=7,
        )


async def test_r3_on_a_single_server_stops_the_worker_with_a_clear_error(
    nats_url, database_url, exchange_keys
):
    await migrate_database(database_url)
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=exchange_keys,
            operator_ids=frozenset(),
            stream_replicas=3,
        )
    )
    with pytest.raises(StreamSetupFailed) as failed:
        await asyncio.wait_for(worker.start(), 30)
    assert failed.value.stream == "AGENTX_RESULTS" and failed.value.replicas == 3
    assert "(R3)" in str(failed.value)
    # Nothing was left running: the worker is stopped and can be dropped.
    assert worker._client is None and worker._engine is None


async def test_agentx_worker_says_so_in_one_line_and_exits_1(
    nats_url, database_url, exchange_keys, tmp_path
):
    seed = tmp_path / "exchange.seed"
    exchange_keys.save(seed)
    arguments = [
        "worker",
        "--nats-url",
        nats_url,
        "--database-url",
        database_url,
        "--key",
        str(seed),
        "--migrate",
        "--stream-replicas",
        "3",
    ]
    # A real process, as an operator runs it (it installs signal handlers).
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exchange.entrypoints.cli",
        *arguments,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_S)
    assert process.returncode == 1
    error = stderr.decode().strip()
    assert error.startswith("agentx: could not set up the JetStream stream AGENTX_RESULTS (R3)")
    assert "\n" not in error and "Traceback" not in error
