"""Benchmark: what an idle exchange spends, beside the least a process that wakes each tick can.

``agentx up`` runs with no load, in its own process on a fresh data
directory. After SETTLE_S, its CPU (user and system, all threads;
nats-server is its child and reported apart) is read over ``--windows``
windows of ``--window-s`` seconds each.

The raw limit, measured in the same windows: a bare Python process, connected
to the same nats-server as a signed agent, whose asyncio loop wakes once per
sweep interval and does nothing else. The exchange's background jobs (timer
sweeps, the outbox relay, the fee table) cannot cost less than that.

Each run ends by checking the exchange invariants on its SQLite file; the
benchmark exits 1 if they fail. Prints text, or one JSON object with --json.

    python bench/idle.py                       # 1 run, 3 windows of 20 s
    python bench/idle.py --runs 3 --window-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing.synchronize
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmark_main import run_benchmark
from exchange_process import (
    child_process,
    cpu_ms_per_s,
    ledger_problems,
    nats_server_pid,
    running_exchange,
)

from agent_client import AgentKeys
from agent_client.transport import connect_nats
from exchange.limits import SWEEP_INTERVAL_S

SETTLE_S = 10.0  # start-up work (migrations, stream checks) is over by then
WINDOWS_MAX = 100
WINDOW_S_MAX = 600.0
RUNS_MAX = 20
LIMIT_TICKS_MAX = int((SETTLE_S + WINDOWS_MAX * WINDOW_S_MAX) / SWEEP_INTERVAL_S) + 1


def parse_arguments() -> argparse.Namespace | str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="fresh exchange each run; medians")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    bounds = {"runs": RUNS_MAX, "windows": WINDOWS_MAX, "window_s": WINDOW_S_MAX}
    for name, most in bounds.items():
        if not 1 <= getattr(arguments, name) <= most:
            return f"--{name.replace('_', '-')} must be 1..{most:g}"
    return arguments


def wake_each_tick(nats_url: str, seed: bytes, ready: multiprocessing.synchronize.Event) -> None:
    """The raw limit's process: one NATS connection, a timer each sweep interval."""

    async def idle() -> None:
        client = await connect_nats(nats_url, AgentKeys.from_seed(seed), name="idle-limit")
        ready.set()
        try:
            for _ in range(LIMIT_TICKS_MAX):  # the parent stops it long before
                await asyncio.sleep(SWEEP_INTERVAL_S)
        finally:
            await client.close()

    asyncio.run(idle())


async def one_run(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentx-idle-") as data_dir:
        async with running_exchange(Path(data_dir)) as exchange:
            assert exchange.pid is not None
            seed = AgentKeys.generate().seed_text()
            async with child_process(
                wake_each_tick, exchange.nats_url, seed, name="idle process"
            ) as limit_pid:
                pids = {
                    "exchange": exchange.pid,
                    "nats_server": nats_server_pid(exchange.pid),
                    "limit": limit_pid,
                }
                await asyncio.sleep(SETTLE_S)
                windows = [
                    await cpu_ms_per_s(pids, window_s=arguments.window_s)
                    for _ in range(arguments.windows)
                ]
        problems = await ledger_problems(exchange.database_url)
    figures = {name: statistics.median(w[name] for w in windows) for name in pids}
    return {
        "exchange_idle_cpu_ms_per_s": figures["exchange"],
        "nats_server_idle_cpu_ms_per_s": figures["nats_server"],
        "limit_idle_cpu_ms_per_s": figures["limit"],
        "exchange_windows": [round(w["exchange"], 2) for w in windows],
        "limit_windows": [round(w["limit"], 2) for w in windows],
        "ledger_problems": problems,
    }


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = [await one_run(arguments) for _ in range(arguments.runs)]
    exchange = statistics.median(run["exchange_idle_cpu_ms_per_s"] for run in runs)
    limit = statistics.median(run["limit_idle_cpu_ms_per_s"] for run in runs)
    return {
        "runs_count": len(runs),
        "window_s": arguments.window_s,
        "windows": arguments.windows,
        "sweep_interval_s": SWEEP_INTERVAL_S,
        "exchange_idle_cpu_ms_per_s": exchange,
        "nats_server_idle_cpu_ms_per_s": statistics.median(
            run["nats_server_idle_cpu_ms_per_s"] for run in runs
        ),
        "limit_idle_cpu_ms_per_s": limit,
        "exchange_above_limit_ms_per_s": exchange - limit,
        "ledger_balanced": not any(run["ledger_problems"] for run in runs),
        "runs": runs,
    }


def print_text(summary: dict[str, Any]) -> None:
    for name, value in summary.items():
        if name == "runs":
            continue
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{name:34s} {shown}")
    print("per run (CPU ms/s in each window):")
    for number, run in enumerate(summary["runs"], start=1):
        print(f"  {number}: exchange {run['exchange_windows']}  limit {run['limit_windows']}")


if __name__ == "__main__":
    sys.exit(
        run_benchmark(
            parse_arguments,
            main_async,
            print_text,
            passed=lambda summary: bool(summary["ledger_balanced"]),
        )
    )
