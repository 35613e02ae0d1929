"""Benchmark: NATS connections accepted per second through the auth callout, beside raw limits.

Each connection is a whole nats-py connect with an agent key and a close,
as ``agent_client.transport.connect_nats`` makes it: the server sends a
nonce, the client signs it with its key, the server forwards the CONNECT
to the auth callout (broker/auth_callout.py), which verifies the server's
request and the nonce signature, picks the role's permissions and answers
with a user JWT and a response, each signed (two ed25519 verifications and
two signatures per connection), and the server admits the client. Measured
one connector at a time and with ``--connectors`` N at once, for
``--seconds`` each: connections per second (connect and close) and connect
latency p50/p99.

Beside them, in the same run: the same connects and closes against a
nats-server without auth (the raw connect limit; the client still presents
its key, which that server ignores), and ed25519 sign and verify rates in
this process, from which ``callout_crypto_limit_per_s`` is the most
connections per second the callout's signatures alone would allow on one
core. The server runs in a child process that started it with
``EmbeddedNatsServer`` (which runs the callout in that same process, as
``agentx up`` does); ``cpu_ms_per_connection_callout`` is that process's CPU
over a measurement divided by the connections made, beside nats-server's
and this process's (the connectors'). ``--runs K`` repeats everything on
fresh servers and reports medians. Prints text, or one JSON object with
--json.

    python bench/auth.py [--connectors 16] [--seconds 3] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing.synchronize
import os
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark_main import run_benchmark
from deals import sign_and_verify_rates
from exchange_process import child_process, cpu_s, nats_server_pid, percentiles

from agent_client import AgentKeys
from agent_client.transport import connect_nats
from broker import AccessPolicy, EmbeddedNatsServer, NatsServerConfig

# The child process writes its server's URL here, in the run's directory.
URL_FILE_NAME = "nats-url"
CONNECTIONS_MAX = 100_000
CONNECTORS_DEFAULT = 16
CONNECTORS_MAX = 256
SECONDS_DEFAULT = 3.0
RUNS_MAX = 20
# The callout's ed25519 work per connection (verify the server's request and
# the client's nonce signature; sign the user JWT and the response).
CALLOUT_VERIFIES_PER_CONNECTION = 2
CALLOUT_SIGNATURES_PER_CONNECTION = 2
KEY_FIGURES = (
    "auth_sequential_connections_per_s",
    "auth_concurrent_connections_per_s",
    "no_auth_concurrent_connections_per_s",
    "auth_concurrent_p99_ms",
)

assert 1 <= CONNECTORS_DEFAULT <= CONNECTORS_MAX


# --- the server's process --------------------------------------------------------


def run_server(run_dir: str, auth: bool, ready: multiprocessing.synchronize.Event) -> None:
    asyncio.run(serve(Path(run_dir), auth, ready))


async def serve(run_dir: Path, auth: bool, ready: multiprocessing.synchronize.Event) -> None:
    """nats-server (and with ``auth`` its callout, in this process) until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # Nobody connects as the exchange here: every connector is an agent.
    access = AccessPolicy(exchange_ids=frozenset({AgentKeys.generate().agent_id}))
    config = NatsServerConfig(data_dir=run_dir / "nats")
    async with EmbeddedNatsServer(config, access=access if auth else None) as server:
        (run_dir / URL_FILE_NAME).write_text(server.url)
        ready.set()
        await stop.wait()


@dataclass(frozen=True, slots=True)
class ServerProcess:
    url: str
    # The process hosting the callout (with auth), and its nats-server.
    host_pid: int
    nats_server_pid: int


@contextlib.asynccontextmanager
async def server_process(run_dir: Path, /, *, auth: bool) -> AsyncIterator[ServerProcess]:
    async with child_process(run_server, str(run_dir), auth, name="nats-server host") as pid:
        yield ServerProcess(
            url=(run_dir / URL_FILE_NAME).read_text(),
            host_pid=pid,
            nats_server_pid=nats_server_pid(pid),
        )


# --- the connectors (this process) -----------------------------------------------


async def connections(
    server: ServerProcess, /, *, connectors: int, seconds: float
) -> dict[str, float]:
    """``connectors`` tasks each connecting and closing, one after another, for ``seconds``."""
    keys = AgentKeys.generate()
    latencies_s: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connector() -> None:
        while time.perf_counter() < deadline and len(latencies_s) < CONNECTIONS_MAX:
            started = time.perf_counter()
            client = await connect_nats(server.url, keys, name="bench-auth")
            latencies_s.append(time.perf_counter() - started)
            await client.close()

    pids = {
        "callout": server.host_pid,
        "nats_server": server.nats_server_pid,
        "connectors": os.getpid(),
    }
    cpu_started_s = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await asyncio.gather(*(connector() for _ in range(connectors)))
    elapsed_s = time.perf_counter() - started
    made = len(latencies_s)
    latency = percentiles(latencies_s)
    return {
        "connections_per_s": made / elapsed_s,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        **{
            f"cpu_ms_per_connection_{name}": (cpu_s(pid) - cpu_started_s[name]) * 1000 / made
            for name, pid in pids.items()
        },
    }


async def measure_once(arguments: argparse.Namespace) -> dict[str, float]:
    """Both servers, fresh, each one connector at a time and then N at once."""
    figures: dict[str, float] = {}
    for auth in (True, False):
        prefix = "auth" if auth else "no_auth"
        with tempfile.TemporaryDirectory(prefix="agentx-bench-auth-") as run_dir:
            async with server_process(Path(run_dir), auth=auth) as server:
                for mode, connectors in (("sequential", 1), ("concurrent", arguments.connectors)):
                    measured = await connections(
                        server, connectors=connectors, seconds=arguments.seconds
                    )
                    figures.update(
                        {f"{prefix}_{mode}_{name}": value for name, value in measured.items()}
                    )
    sign_per_s, verify_per_s = sign_and_verify_rates()
    figures["ed25519_sign_per_s"] = sign_per_s
    figures["ed25519_verify_per_s"] = verify_per_s
    figures["callout_crypto_limit_per_s"] = 1 / (
        CALLOUT_SIGNATURES_PER_CONNECTION / sign_per_s
        + CALLOUT_VERIFIES_PER_CONNECTION / verify_per_s
    )
    for mode in ("sequential", "concurrent"):
        figures[f"ratio_{mode}_auth_over_no_auth"] = (
            figures[f"auth_{mode}_connections_per_s"] / figures[f"no_auth_{mode}_connections_per_s"]
        )
    return figures


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = [await measure_once(arguments) for _ in range(arguments.runs)]
    summary: dict[str, Any] = {
        "connectors": arguments.connectors,
        "seconds": arguments.seconds,
        "runs_count": len(runs),
    }
    summary.update({name: statistics.median(run[name] for run in runs) for name in runs[0]})
    summary["runs"] = [{name: run[name] for name in KEY_FIGURES} for run in runs]
    return summary


def print_text(summary: dict[str, Any]) -> None:
    for name, value in summary.items():
        if name != "runs":
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"{name:<52} {shown}")
    print("per run:")
    for index, run in enumerate(summary["runs"], start=1):
        print(f"  {index}: " + "  ".join(f"{name} {value:,.1f}" for name, value in run.items()))


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--connectors", type=int, default=CONNECTORS_DEFAULT, help="connecting at once"
    )
    parser.add_argument("--seconds", type=float, default=SECONDS_DEFAULT, help="per measurement")
    parser.add_argument("--runs", type=int, default=3, help="fresh servers each run; medians")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not 1 <= arguments.connectors <= CONNECTORS_MAX:
        return f"--connectors 1..{CONNECTORS_MAX}"
    if not (0 < arguments.seconds <= 600 and 1 <= arguments.runs <= RUNS_MAX):
        return f"--seconds 0..600 and --runs 1..{RUNS_MAX}"
    return arguments


def main() -> int:
    return run_benchmark(parse_arguments, main_async, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
