"""``agentx up`` as an operator runs it: it copes when port 4222 is taken, and clients find it.

The test makes sure 127.0.0.1:4222 is taken (this machine's own NATS may
hold it already; otherwise the test holds it), starts ``agentx up`` without
``--port`` as a real process, and checks that it serves on a free port, says
so, and writes ``exchange.json``; then ``agentx mint`` finds the exchange
through that file alone (URL and pinned exchange id) and mints. The process
is stopped with SIGTERM and exits 0.
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

from agent_client import AgentKeys

DEFAULT_PORT = 4222
STARTUP_LINES_MAX = 50
PROCESS_TIMEOUT_S = 60


@contextlib.contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Hold ``port`` on loopback, unless someone else already does."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
        holder.listen()
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE, exc
    try:
        yield
    finally:
        holder.close()


def read_until_running(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    printed: dict[str, str] = {}
    for _ in range(STARTUP_LINES_MAX):
        line = process.stdout.readline()
        assert line, f"agentx up exited: {process.wait(PROCESS_TIMEOUT_S)}"
        if line.startswith("running"):
            return printed
        label, _, value = line.partition(":")
        printed[label.strip()] = value.strip()
    raise AssertionError(f"no running line in {printed}")


def test_agentx_up_serves_on_a_free_port_when_4222_is_taken_and_clients_find_it(tmp_path):
    data_dir = tmp_path / "agentx"
    with port_taken(DEFAULT_PORT):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exchange.entrypoints.cli",
                "up",
                "--no-portal",
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            printed = read_until_running(process)
            assert not printed["NATS"].endswith(f":{DEFAULT_PORT}")
            assert "4222 was taken" in printed["note"]
            address = json.loads((data_dir / "exchange.json").read_text())
            assert address["nats_url"] == printed["NATS"]
            assert address["exchange_id"] == AgentKeys.load(data_dir / "exchange.seed").agent_id
            recipient = AgentKeys.generate().agent_id
            minted = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "exchange.entrypoints.cli",
                    "mint",
                    recipient,
                    "3",
                    "--reason",
                    "t",
                    "--key",
                    str(data_dir / "operator.seed"),
                    "--address-file",
                    str(data_dir / "exchange.json"),
                ],
                capture_output=True,
                text=True,
                timeout=PROCESS_TIMEOUT_S,
            )
            assert minted.returncode == 0, minted.stderr
            assert f"minted 3 credits to {recipient}" in minted.stdout
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(PROCESS_TIMEOUT_S) == 0
