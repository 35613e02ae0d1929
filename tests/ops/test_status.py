"""``agentx status`` against a real worker, and against a port where nothing listens.

The worker runs in this test's event loop (the exchange fixture); the command
runs through ``main()`` in a thread, as a user would run it, since it starts
its own event loop and installs no signal handlers. With the exchange's key
it shows the node, the worker with its request counts, the streams and the
database; with an operator's key, what that key may see plus a note; with
no server, one line and exit status 1.
"""

from __future__ import annotations

import asyncio
import socket

from exchange.entrypoints.cli import main


def run_agentx(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_status_shows_the_node_worker_streams_and_database(
    exchange, exchange_keys, database_url, tmp_path, capsys
):
    key_path = tmp_path / "exchange.seed"
    exchange_keys.save(key_path)
    await exchange.funded_agent(1_000)  # a request for the counts
    status, out, err = await asyncio.to_thread(
        run_agentx,
        capsys,
        "status",
        "--url",
        exchange.nats_url,
        "--key",
        str(key_path),
        "--database-url",
        database_url,
    )
    assert status == 0, (out, err)
    assert "NATS nodes" in out and " up " in out
    worker_rows = [line for line in out.splitlines() if line.strip().startswith("agentx-exchange")]
    assert len(worker_rows) == 1
    assert worker_rows[0].split()[4] != "-"  # request counts, from $SRV.STATS
    assert "AGENTX_RESULTS" in out and "AGENTX_GOODS" in out
    assert "answers" in out  # the database


async def test_status_with_an_operators_key_says_what_it_cannot_see(exchange, tmp_path, capsys):
    key_path = tmp_path / "operator.seed"
    exchange.operator_keys.save(key_path)
    status, out, err = await asyncio.to_thread(
        run_agentx, capsys, "status", "--url", exchange.nats_url, "--key", str(key_path)
    )
    assert status == 0, (out, err)
    assert "agentx-exchange" in out
    assert "note: request counts ($SRV.STATS) need the exchange's key" in out
    assert "note: streams not shown" in out


def test_status_against_a_port_where_nothing_listens_fails_in_one_line(tmp_path, capsys):
    from agent_client import AgentKeys

    key_path = tmp_path / "operator.seed"
    AgentKeys.generate().save(key_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, out, err = run_agentx(
        capsys, "status", "--url", f"nats://127.0.0.1:{port}", "--key", str(key_path)
    )
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("agentx status: nothing answers at")
