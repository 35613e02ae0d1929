"""Benchmark: what a durable notice consumer per agent costs nats-server, beside core subscriptions.

Until 2026-12-07 every agent had a durable JetStream push consumer on the
notice stream (``notice_consumer_config``, created by
``ensure_notice_consumer``, both now in ``bench/jetstream_notices.py``),
kept until it had been unused for 8 days; the alternative, which the
exchange now uses (live notices), is one plain core-NATS subscription per
online agent. Each run starts three fresh nats-servers
(``EmbeddedNatsServer``, JetStream on, each store in a temporary directory,
loopback, a free port), each with the notice stream: ``durable`` gets the
consumers, ``core`` the plain subscriptions, ``raw`` nothing more. It reads
each server's resident memory from ``/proc/<pid>/status`` (VmRSS) and its CPU
from ``/proc/<pid>/stat`` (user and system clock ticks), and measures:

1. durable consumers: ``durable``'s memory and JetStream store on disk (bytes
   of the files, and bytes the file system allocated) with no consumer (the
   raw figures), then after creating consumers up to each ``--agents`` count
   (1,000, 5,000, 10,000 by default, each count adding to the last), with
   exactly the production config for fresh agent ids, ``--concurrency``
   creations at a time. Per consumer: memory and disk from the raw figure
   to N; per creation step: consumers created per second and the server's
   CPU per consumer;
2. core subscriptions: the same counts of plain subscriptions on
   ``subjects.notifications(agent id)`` on ``core``, memory per subscription;
3. idle CPU over ``--idle-s`` windows, with the largest count in place: one
   window for all three servers (consumers with nobody subscribed to their
   deliver subjects, the offline agents; the core subscriptions; raw), then
   one for ``durable`` and ``raw`` after one queue subscription per consumer
   on its deliver subject (the online case). Each is given as ms of CPU per
   second per 1,000 consumers or subscriptions, less ``raw``'s CPU in the
   same window. A window only sees periodic work that recurs within it;
4. graceful stop: ``raw`` then gets ``--stop-consumers`` consumers and is
   stopped with SIGTERM, timed (nats-server writes each consumer's state as
   it stops). The two large servers are killed instead (their store is
   thrown away), so that a run stays short.

Subscriptions are spread over as few connections as the server's
per-connection limit allows, opened before the "before" reading: every
online agent has a connection in both designs, so it is counted against
neither.

Medians over ``--runs`` runs; then the figures are extrapolated linearly to
1,000,000 registered agents (one durable consumer each; 100,000 of them
online) and to 100,000 core subscriptions, and the notice stream's
``max_consumers`` is compared with 1,000,000.

Authentication is off: the auth callout works once per connection, and
neither a consumer nor a subscription carries any auth state, so the figures
per consumer and per subscription do not depend on it. RSS is the
Go runtime's whole footprint, garbage not yet collected included; that is
what a host must provide.

    python bench/notice_consumers.py                         # 2 to 3 minutes
    python bench/notice_consumers.py --agents 200 --idle-s 1 --runs 1 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark_main import run_benchmark
from exchange_process import cpu_ms_per_s, cpu_s, memory_kib
from jetstream_notices import (
    NOTICE_CONSUMERS_MAX,
    NOTICE_STREAM,
    ensure_notice_consumer,
    ensure_notice_stream,
    notice_consumer_name,
    notice_stream_config,
)
from nats.aio.client import Client
from nats.aio.msg import Msg

from agent_client import AgentKeys, subjects
from agent_client.transport import connect_nats
from broker import EmbeddedNatsServer, NatsServerConfig
from broker.limits import SUBSCRIPTIONS_PER_CONNECTION_MAX

AGENTS_DEFAULT = (1_000, 5_000, 10_000)
# The stream refuses consumers beyond its max_consumers.
AGENTS_MAX = NOTICE_CONSUMERS_MAX
IDLE_S_DEFAULT = 10.0
IDLE_S_MAX = 600.0
RUNS_DEFAULT = 3
RUNS_MAX = 20
CONCURRENCY_DEFAULT = 64
CONCURRENCY_MAX = 1_000
STOP_CONSUMERS_DEFAULT = 200
STOP_CONSUMERS_MAX = 5_000
REGISTERED_AGENTS_TARGET = 1_000_000
ONLINE_AGENTS_TARGET = 100_000
# A listener makes no request, so it needs no reply subscription; a few
# spare places all the same, under the server's max_subscriptions.
SUBSCRIPTIONS_SPARE = 10
SUBSCRIPTIONS_PER_LISTENER = SUBSCRIPTIONS_PER_CONNECTION_MAX - SUBSCRIPTIONS_SPARE
FLUSH_TIMEOUT_S = 30
SETTLE_S = 1.0
# The large servers are killed after this (their store is thrown away); a
# graceful stop of 10,000 consumers takes minutes, measured on its own.
KILL_AFTER_S = 1.0
GRACEFUL_STOP_WAIT_S = 300.0
# Each consumer keeps a few files in the store; a bound on the walk.
STORE_FILES_PER_CONSUMER_MAX = 10
STORE_FILES_SPARE = 1_000
BYTES_PER_KIB = 1024
BYTES_PER_MB = 1_000_000
BYTES_PER_GB = 1_000_000_000

assert ONLINE_AGENTS_TARGET <= REGISTERED_AGENTS_TARGET
assert 0 < SUBSCRIPTIONS_PER_LISTENER < SUBSCRIPTIONS_PER_CONNECTION_MAX
assert 0 < KILL_AFTER_S < GRACEFUL_STOP_WAIT_S


@dataclass(frozen=True, slots=True)
class BenchServer:
    """A fresh nats-server with the notice stream, and one client for its JetStream API."""

    server: EmbeddedNatsServer
    client: Client
    pid: int


@contextlib.asynccontextmanager
async def bench_server(data_dir: Path, /, *, stop_wait_s: float) -> AsyncIterator[BenchServer]:
    config = NatsServerConfig(data_dir=data_dir, shutdown_timeout_s=stop_wait_s)
    async with EmbeddedNatsServer(config) as server:
        client = await connect_nats(server.url, AgentKeys.generate(), name="bench-notice-setup")
        try:
            await ensure_notice_stream(client.jetstream())
            assert server.process_id is not None
            yield BenchServer(server, client, server.process_id)
        finally:
            await client.close()


def rss_bytes(pid: int, /) -> int:
    return memory_kib(pid)["VmRSS"] * BYTES_PER_KIB


def store_bytes(data_dir: Path, /, *, files_max: int) -> tuple[int, int]:
    """Bytes of the JetStream store's files, and bytes the file system allocated for them."""
    size_bytes = allocated_bytes = files = 0
    for directory, _, names in os.walk(data_dir / "jetstream"):
        for name in names:
            files += 1
            if files > files_max:
                raise RuntimeError(f"more than {files_max:,} files in the store")
            status = os.stat(os.path.join(directory, name))
            size_bytes += status.st_size
            allocated_bytes += status.st_blocks * 512
    return size_bytes, allocated_bytes


async def idle_cpu_ms_per_s(pids: dict[str, int], /, *, idle_s: float) -> dict[str, float]:
    """The CPU each process used per second of wall time while we sleep ``idle_s``.

    The processes share the window: a server that is idle barely takes the
    CPU from another. The window opens SETTLE_S after the call, so that the
    servers first finish what the last change set off (consumers noticing
    interest).
    """
    await asyncio.sleep(SETTLE_S)
    return await cpu_ms_per_s(pids, window_s=idle_s)


async def create_consumers(
    bench: BenchServer, agent_ids: Sequence[str], *, concurrency: int
) -> None:
    """Each agent's notice consumer, as the exchange creates it, ``concurrency`` at a time."""
    js = bench.client.jetstream()
    pending = iter(agent_ids)

    async def creator() -> None:
        # The creators share one iterator: each agent id is taken once.
        for agent_id in pending:
            await ensure_notice_consumer(js, agent_id)

    await asyncio.gather(*(creator() for _ in range(min(concurrency, len(agent_ids)))))


async def ignore(message: Msg) -> None:
    """Nothing is published during the benchmark; a listener only has to exist."""


@contextlib.asynccontextmanager
async def listeners(url: str, subscriptions: int, /) -> AsyncIterator[list[Client]]:
    """As few connections as ``subscriptions`` subscriptions need under the server's limit."""
    clients: list[Client] = []
    try:
        for _ in range(math.ceil(subscriptions / SUBSCRIPTIONS_PER_LISTENER)):
            clients.append(await connect_nats(url, AgentKeys.generate(), name="bench-listener"))
        yield clients
    finally:
        for client in clients:
            await client.close()


async def subscribe(
    clients: Sequence[Client], wanted: Sequence[tuple[str, str]], /, *, first_index: int
) -> None:
    """One subscription per (subject, queue group); the i-th goes to listener i // per listener."""
    for index, (subject, queue) in enumerate(wanted, start=first_index):
        await clients[index // SUBSCRIPTIONS_PER_LISTENER].subscribe(
            subject, queue=queue, cb=ignore
        )
    for client in clients:
        await client.flush(timeout=FLUSH_TIMEOUT_S)


async def consumer_count(bench: BenchServer, /) -> int:
    return (await bench.client.jetstream().stream_info(NOTICE_STREAM)).state.consumer_count


async def consumer_memory_steps(
    bench: BenchServer, agent_ids: Sequence[str], arguments: argparse.Namespace
) -> dict[str, float]:
    """Memory, disk and creation cost at each count, consumers added to the last count's."""
    files_max = STORE_FILES_PER_CONSUMER_MAX * len(agent_ids) + STORE_FILES_SPARE
    raw_rss = rss_bytes(bench.pid)
    raw_size, raw_allocated = store_bytes(bench.server.data_dir, files_max=files_max)
    figures: dict[str, float] = {"raw_rss_bytes": raw_rss, "raw_store_bytes": raw_size}
    mismatches = 0
    created = 0
    for count in arguments.agents:
        step = agent_ids[created:count]
        cpu_started_s, started = cpu_s(bench.pid), time.perf_counter()
        await create_consumers(bench, step, concurrency=arguments.concurrency)
        elapsed_s = time.perf_counter() - started
        server_cpu_s = cpu_s(bench.pid) - cpu_started_s
        created = count
        mismatches += await consumer_count(bench) != count
        size, allocated = store_bytes(bench.server.data_dir, files_max=files_max)
        figures |= {
            f"consumers_{count}_rss_bytes": rss_bytes(bench.pid),
            f"consumers_{count}_rss_bytes_each": (rss_bytes(bench.pid) - raw_rss) / count,
            f"consumers_{count}_store_bytes_each": (size - raw_size) / count,
            f"consumers_{count}_store_allocated_bytes_each": (allocated - raw_allocated) / count,
            f"consumers_{count}_step_created_per_s": len(step) / elapsed_s,
            f"consumers_{count}_step_server_cpu_ms_each": server_cpu_s * 1000 / len(step),
        }
    figures["consumer_count_mismatches"] = mismatches
    return figures


async def core_memory_steps(
    bench: BenchServer,
    clients: Sequence[Client],
    agent_ids: Sequence[str],
    arguments: argparse.Namespace,
) -> dict[str, float]:
    """Memory per plain subscription on the notification subjects, at each count."""
    figures: dict[str, float] = {"core_raw_rss_bytes": rss_bytes(bench.pid)}
    subscribed = 0
    for count in arguments.agents:
        step = [(subjects.notifications(agent_id), "") for agent_id in agent_ids[subscribed:count]]
        await subscribe(clients, step, first_index=subscribed)
        subscribed = count
        figures[f"core_{count}_rss_bytes_each"] = (
            rss_bytes(bench.pid) - figures["core_raw_rss_bytes"]
        ) / count
    return figures


async def idle_figures(
    servers: dict[str, BenchServer], agent_ids: Sequence[str], *, idle_s: float
) -> dict[str, float]:
    """Idle CPU: consumers offline beside the core subscriptions, then consumers online.

    Each figure per 1,000 is less the raw server's CPU in the same window.
    """
    thousands = len(agent_ids) / 1000
    durable, raw = servers["durable"], servers["raw"]
    first = await idle_cpu_ms_per_s(
        {name: server.pid for name, server in servers.items()}, idle_s=idle_s
    )
    figures = {
        "offline_idle_cpu_ms_per_s_per_1000": (first["durable"] - first["raw"]) / thousands,
        "core_idle_cpu_ms_per_s_per_1000": (first["core"] - first["raw"]) / thousands,
    }
    deliver_subscriptions = [
        (subjects.notice_deliver_subject(agent_id), notice_consumer_name(agent_id))
        for agent_id in agent_ids
    ]
    async with listeners(durable.server.url, len(agent_ids)) as clients:
        before = rss_bytes(durable.pid)
        await subscribe(clients, deliver_subscriptions, first_index=0)
        figures["online_subscription_rss_bytes_each"] = (rss_bytes(durable.pid) - before) / len(
            agent_ids
        )
        second = await idle_cpu_ms_per_s({"durable": durable.pid, "raw": raw.pid}, idle_s=idle_s)
    figures["online_idle_cpu_ms_per_s_per_1000"] = (second["durable"] - second["raw"]) / thousands
    figures["raw_idle_cpu_ms_per_s"] = (first["raw"] + second["raw"]) / 2
    return figures


async def graceful_stop(
    bench: BenchServer, agent_ids: Sequence[str], arguments: argparse.Namespace
) -> dict[str, float]:
    """How long nats-server takes to stop on SIGTERM, per consumer it holds."""
    await create_consumers(bench, agent_ids, concurrency=arguments.concurrency)
    await bench.client.close()
    started = time.perf_counter()
    await bench.server.stop()
    stop_s = time.perf_counter() - started
    return {
        "graceful_stop_s": stop_s,
        "graceful_stop_ms_each": stop_s * 1000 / len(agent_ids),
        # 0: it was killed after GRACEFUL_STOP_WAIT_S, the figure is a floor.
        "graceful_stop_completed": float(bench.server.exit_code == 0),
    }


async def measure_run(arguments: argparse.Namespace) -> dict[str, float]:
    """One run: three fresh servers in one temporary directory, removed at the end.

    ``durable`` gets the consumers, ``core`` the plain subscriptions, and
    ``raw`` only the stream (the idle reference) until its stop is timed.
    """
    agent_ids = [AgentKeys.generate().agent_id for _ in range(arguments.agents[-1])]
    with tempfile.TemporaryDirectory(prefix="agentx-bench-notice-consumers-") as run_dir:
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                name: await stack.enter_async_context(
                    bench_server(Path(run_dir) / name, stop_wait_s=stop_wait_s)
                )
                for name, stop_wait_s in (
                    ("durable", KILL_AFTER_S),
                    ("core", KILL_AFTER_S),
                    ("raw", GRACEFUL_STOP_WAIT_S),
                )
            }
            core_clients = await stack.enter_async_context(
                listeners(servers["core"].server.url, len(agent_ids))
            )
            figures = await consumer_memory_steps(servers["durable"], agent_ids, arguments)
            figures |= await core_memory_steps(servers["core"], core_clients, agent_ids, arguments)
            figures |= await idle_figures(servers, agent_ids, idle_s=arguments.idle_s)
            figures |= await graceful_stop(
                servers["raw"], agent_ids[: arguments.stop_consumers], arguments
            )
    return figures


def extrapolate(
    medians: dict[str, float], agents_max: int, *, cpu_resolution_ms_per_s_per_1000: float
) -> dict[str, Any]:
    """Today's design at 1,000,000 registered agents (100,000 online) against core subscriptions.

    Per-item figures are those at the largest count. An idle CPU figure
    within its resolution (one clock tick per window, scaled the same way)
    is indistinguishable from nothing.
    """
    registered_thousands = REGISTERED_AGENTS_TARGET / 1000
    online_thousands = ONLINE_AGENTS_TARGET / 1000
    offline_thousands = registered_thousands - online_thousands
    max_consumers = notice_stream_config().max_consumers or 0
    consumer = f"consumers_{agents_max}_"
    return {
        "durable_rss_bytes": medians[consumer + "rss_bytes_each"] * REGISTERED_AGENTS_TARGET
        + medians["online_subscription_rss_bytes_each"] * ONLINE_AGENTS_TARGET,
        "durable_store_allocated_bytes": medians[consumer + "store_allocated_bytes_each"]
        * REGISTERED_AGENTS_TARGET,
        "durable_idle_cpu_ms_per_s": medians["offline_idle_cpu_ms_per_s_per_1000"]
        * offline_thousands
        + medians["online_idle_cpu_ms_per_s_per_1000"] * online_thousands,
        "durable_idle_cpu_resolution_ms_per_s": cpu_resolution_ms_per_s_per_1000
        * registered_thousands,
        "durable_create_all_s": REGISTERED_AGENTS_TARGET / medians[consumer + "step_created_per_s"],
        "durable_graceful_stop_s": medians["graceful_stop_ms_each"]
        * REGISTERED_AGENTS_TARGET
        / 1000,
        "core_rss_bytes": medians[f"core_{agents_max}_rss_bytes_each"] * ONLINE_AGENTS_TARGET,
        "core_idle_cpu_ms_per_s": medians["core_idle_cpu_ms_per_s_per_1000"] * online_thousands,
        "core_idle_cpu_resolution_ms_per_s": cpu_resolution_ms_per_s_per_1000 * online_thousands,
        "stream_max_consumers": max_consumers,
        # nats-server reads 0 and -1 as its default of 1,000 (bench/jetstream_notices.py).
        "stream_allows_registered_target": max_consumers >= REGISTERED_AGENTS_TARGET,
    }


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    # The large servers are killed on purpose; the wrapper's warning about it is noise here.
    logging.getLogger("broker.nats_process").setLevel(logging.ERROR)
    runs = [await measure_run(arguments) for _ in range(arguments.runs)]
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    cpu_resolution = 1000 / os.sysconf("SC_CLK_TCK") / arguments.idle_s
    cpu_resolution_per_1000 = cpu_resolution / (arguments.agents[-1] / 1000)
    return {
        "agents": arguments.agents,
        "idle_s": arguments.idle_s,
        "concurrency": arguments.concurrency,
        "stop_consumers": arguments.stop_consumers,
        "runs_count": len(runs),
        # One clock tick over the idle window: the CPU figures' resolution.
        "cpu_resolution_ms_per_s": cpu_resolution,
        "cpu_resolution_ms_per_s_per_1000": cpu_resolution_per_1000,
        "registered_agents_target": REGISTERED_AGENTS_TARGET,
        "online_agents_target": ONLINE_AGENTS_TARGET,
        "medians": medians,
        "extrapolated": extrapolate(
            medians, arguments.agents[-1], cpu_resolution_ms_per_s_per_1000=cpu_resolution_per_1000
        ),
        "consumer_count_mismatches": sum(run["consumer_count_mismatches"] for run in runs),
        "runs": runs,
    }


def print_text(summary: dict[str, Any]) -> None:
    medians = summary["medians"]
    print(
        f"nats-server, medians of {summary['runs_count']} runs; idle windows "
        f"{summary['idle_s']:g} s (CPU resolution {summary['cpu_resolution_ms_per_s']:.1f} ms/s)"
    )
    print(
        f"raw (stream, no consumer): RSS {medians['raw_rss_bytes'] / BYTES_PER_MB:.1f} MB, "
        f"store {medians['raw_store_bytes'] / BYTES_PER_KIB:.1f} KiB, "
        f"idle CPU {medians['raw_idle_cpu_ms_per_s']:.2f} ms/s"
    )
    print("      N  consumer RSS  store (alloc.)     created/s  server CPU  | core sub RSS")
    for count in summary["agents"]:
        prefix = f"consumers_{count}_"
        print(
            f"{count:>7,}  {medians[prefix + 'rss_bytes_each']:>9,.0f} B"
            f"  {medians[prefix + 'store_bytes_each']:>6,.0f}"
            f" ({medians[prefix + 'store_allocated_bytes_each']:,.0f}) B"
            f"  {medians[prefix + 'step_created_per_s']:>9,.0f}"
            f"  {medians[prefix + 'step_server_cpu_ms_each']:>6.2f} ms"
            f"  | {medians[f'core_{count}_rss_bytes_each']:>8,.0f} B"
        )
    print(
        f"idle CPU per 1,000 at N={summary['agents'][-1]:,}, above raw: "
        f"consumers offline {medians['offline_idle_cpu_ms_per_s_per_1000']:.3f} ms/s, "
        f"online {medians['online_idle_cpu_ms_per_s_per_1000']:.3f} ms/s, "
        f"core subscriptions {medians['core_idle_cpu_ms_per_s_per_1000']:.3f} ms/s "
        f"(resolution {summary['cpu_resolution_ms_per_s_per_1000']:.3f})"
    )
    print(
        f"deliver-subject subscription (online consumer): "
        f"{medians['online_subscription_rss_bytes_each']:,.0f} B each; graceful stop "
        f"{medians['graceful_stop_ms_each']:.2f} ms per consumer "
        f"({summary['stop_consumers']:,} consumers in {medians['graceful_stop_s']:.1f} s)"
    )
    print_extrapolation(summary)


def print_extrapolation(summary: dict[str, Any]) -> None:
    extrapolated = summary["extrapolated"]
    registered, online = summary["registered_agents_target"], summary["online_agents_target"]
    print(f"extrapolated linearly: {registered:,} registered agents, {online:,} online")
    print(
        f"  durable consumers: RSS {extrapolated['durable_rss_bytes'] / BYTES_PER_GB:,.1f} GB, "
        f"store {extrapolated['durable_store_allocated_bytes'] / BYTES_PER_GB:,.1f} GB, "
        f"idle CPU {extrapolated['durable_idle_cpu_ms_per_s']:,.1f} "
        f"(± {extrapolated['durable_idle_cpu_resolution_ms_per_s']:,.0f}) ms/s, "
        f"creating all {extrapolated['durable_create_all_s'] / 60:,.0f} min, "
        f"graceful stop {extrapolated['durable_graceful_stop_s'] / 60:,.0f} min"
    )
    print(
        f"  core subscriptions: RSS {extrapolated['core_rss_bytes'] / BYTES_PER_GB:,.2f} GB, "
        f"idle CPU {extrapolated['core_idle_cpu_ms_per_s']:,.1f} "
        f"(± {extrapolated['core_idle_cpu_resolution_ms_per_s']:,.0f}) ms/s"
    )
    allows = "allows" if extrapolated["stream_allows_registered_target"] else "does NOT allow"
    print(
        f"  the notice stream's max_consumers ({extrapolated['stream_max_consumers']:,}) "
        f"{allows} {registered:,} consumers"
    )
    if summary["consumer_count_mismatches"]:
        print(f"  consumer count mismatches: {summary['consumer_count_mismatches']}")


def agent_counts(text: str, /) -> tuple[int, ...]:
    """``1000,5000,10000``: ascending, each within the stream's consumer limit."""
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError("ascending, distinct counts separated by commas")
    if not (counts[0] >= 1 and counts[-1] <= AGENTS_MAX):
        raise argparse.ArgumentTypeError(f"each count 1..{AGENTS_MAX:,}")
    return counts


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agents",
        type=agent_counts,
        default=AGENTS_DEFAULT,
        help="consumer and subscription counts, ascending (default 1000,5000,10000)",
    )
    parser.add_argument("--idle-s", type=float, default=IDLE_S_DEFAULT, help="each idle window")
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="fresh servers; medians")
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY_DEFAULT, help="consumer creations at once"
    )
    parser.add_argument(
        "--stop-consumers",
        type=int,
        default=STOP_CONSUMERS_DEFAULT,
        help="consumers on the server whose graceful stop is timed",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not (0 < arguments.idle_s <= IDLE_S_MAX and 1 <= arguments.runs <= RUNS_MAX):
        return f"--idle-s 0..{IDLE_S_MAX:g} and --runs 1..{RUNS_MAX}"
    if not 1 <= arguments.concurrency <= CONCURRENCY_MAX:
        return f"--concurrency 1..{CONCURRENCY_MAX:,}"
    if not 1 <= arguments.stop_consumers <= min(STOP_CONSUMERS_MAX, arguments.agents[-1]):
        return f"--stop-consumers 1..{STOP_CONSUMERS_MAX:,}, at most the largest --agents count"
    return arguments


def main() -> int:
    return run_benchmark(
        parse_arguments,
        main_async,
        print_text,
        passed=lambda summary: summary["consumer_count_mismatches"] == 0,
    )


if __name__ == "__main__":
    raise SystemExit(main())
