"""The exchange in its own OS process for the benchmarks, as in production.

``running_exchange(data_dir)`` starts ``agentx up --port 0 --no-portal`` as a
child process, reads the NATS and database URLs it prints, loads the operator
and exchange keys it wrote, and on exit stops it with SIGTERM and waits.
``auth=False`` adds ``--insecure-no-auth`` (nats-server then authenticates
nobody), only to compare with auth on. nats-server is a
child of that process. ``ledger_problems`` opens the database file afterwards
and runs the exchange invariants on it; ``memory_kib`` and ``cpu_s`` read a
process's resident memory and CPU time from ``/proc``; ``percentiles`` gives a
run's latency p50/p99/max; ``child_process`` runs a helper (a responder, a
stand-in) in a spawned process. ``embedded_exchange`` is the old set-up (the
exchange worker inside the benchmark's own process), for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from agent_client import AgentKeys
from exchange import EmbeddedStack, StackConfig, check_exchange_invariants
from wallet import InvariantViolation, open_database

__all__ = [
    "RunningExchange",
    "child_pids",
    "child_process",
    "cpu_s",
    "database_bytes",
    "embedded_exchange",
    "ledger_problems",
    "memory_kib",
    "nats_server_pid",
    "percentiles",
    "running_exchange",
    "wal_bytes",
]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# `agentx up` prints a handful of lines before it says it is running.
STARTUP_LINES_MAX = 50
CHILD_START_TIMEOUT_S = 30.0
CHILD_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RunningExchange:
    nats_url: str
    database_url: str
    operator_keys: AgentKeys
    # A stand-in for the exchange (bench/protocol_floor.py) connects with it.
    exchange_keys: AgentKeys
    auth: bool
    # The `agentx up` process; None when the exchange runs in this process.
    pid: int | None


@contextlib.asynccontextmanager
async def running_exchange(
    data_dir: Path, /, *, group_commit: bool = True, auth: bool = True
) -> AsyncIterator[RunningExchange]:
    """`agentx up` in ``data_dir`` as a child process, stopped with SIGTERM on exit."""
    command = [sys.executable, "-m", "exchange.entrypoints.cli", "up", "--port", "0", "--no-portal"]
    if not group_commit:
        command.append("--no-group-commit")
    if not auth:
        command.append("--insecure-no-auth")
    process = await asyncio.create_subprocess_exec(
        *command, "--data-dir", str(data_dir), stdout=asyncio.subprocess.PIPE
    )
    try:
        printed = await asyncio.wait_for(_read_startup(process), START_TIMEOUT_S)
        yield RunningExchange(
            nats_url=printed["NATS"],
            database_url=printed["database"],
            operator_keys=AgentKeys.load(data_dir / "operator.seed"),
            exchange_keys=AgentKeys.load(data_dir / "exchange.seed"),
            auth=printed["auth"].startswith("on"),
            pid=process.pid,
        )
    finally:
        await _stop(process)


async def _read_startup(process: asyncio.subprocess.Process) -> dict[str, str]:
    """The ``label: value`` lines `agentx up` prints, up to its "running" line."""
    assert process.stdout is not None
    printed: dict[str, str] = {}
    for _ in range(STARTUP_LINES_MAX):
        line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"agentx up exited while starting ({await process.wait()})")
        if line.startswith("running"):
            assert {"NATS", "database", "auth"} <= printed.keys(), printed
            return printed
        label, _, value = line.partition(":")
        printed[label.strip()] = value.strip()
    raise RuntimeError("agentx up printed too much without saying it is running")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            # Its nats-server would outlive it: stop that one too.
            for pid in child_pids(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            await process.wait()
            raise RuntimeError(f"agentx up did not stop within {STOP_TIMEOUT_S} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"agentx up exited with status {process.returncode}")


@contextlib.asynccontextmanager
async def embedded_exchange(
    data_dir: Path, /, *, group_commit: bool = True, auth: bool = True
) -> AsyncIterator[RunningExchange]:
    """The exchange worker and nats-server started from this process (the old set-up)."""
    config = StackConfig(data_dir=data_dir, group_commit=group_commit, auth=auth)
    async with EmbeddedStack(config) as stack:
        yield RunningExchange(
            nats_url=stack.nats_url,
            database_url=stack.database_url,
            operator_keys=stack.operator_keys,
            exchange_keys=stack.exchange_keys,
            auth=auth,
            pid=None,
        )


async def ledger_problems(database_url: str, /) -> list[str]:
    """Every exchange invariant the database breaks (none: the books balance)."""
    engine = open_database(database_url)
    try:
        await check_exchange_invariants(engine)
    except InvariantViolation as exc:
        return list(exc.violations)
    finally:
        await engine.dispose()
    return []


def database_bytes(database_url: str, /) -> int:
    """The bytes an SQLite database file uses: its pages less the free ones (so what
    deletes gave back does not count), read after the exchange stopped."""
    path = make_url(database_url).database
    assert path, database_url
    with contextlib.closing(sqlite3.connect(path)) as connection:
        page_size, pages, free = (
            connection.execute(f"PRAGMA {pragma}").fetchone()[0]
            for pragma in ("page_size", "page_count", "freelist_count")
        )
    return int(page_size * (pages - free))


def wal_bytes(database_url: str, /) -> int:
    """The size of an SQLite database's write-ahead log now (0 when there is none)."""
    path = make_url(database_url).database
    assert path, database_url
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def memory_kib(pid: int, /) -> dict[str, int]:
    """``VmHWM`` (peak resident memory) and ``VmRSS`` (current) of ``pid``, in KiB."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            amount, unit = value.split()
            assert unit == "kB", line
            figures[name] = int(amount)
    assert set(figures) == {"VmHWM", "VmRSS"}, figures
    return figures


def child_pids(pid: int, /) -> list[int]:
    """The processes whose parent is ``pid`` (read from ``/proc``)."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("PPid:"):
                    if int(line.split()[1]) == pid:
                        children.append(int(status.parent.name))
                    break
    return children


def cpu_s(pid: int, /) -> float:
    """CPU time (user and system) ``pid`` has used so far, in seconds."""
    # The command name in parentheses may hold spaces: split after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are the 14th and 15th fields; the first two are gone.
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


async def cpu_ms_per_s(pids: dict[str, int], /, *, window_s: float) -> dict[str, float]:
    """The CPU each process uses per second of wall time over the next ``window_s``."""
    started_cpu_s = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await asyncio.sleep(window_s)
    elapsed_s = time.perf_counter() - started
    return {
        name: (cpu_s(pid) - started_cpu_s[name]) * 1000 / elapsed_s for name, pid in pids.items()
    }


def nats_server_pid(parent_pid: int, /) -> int:
    """The nats-server process started by ``parent_pid``."""
    found = [
        pid
        for pid in child_pids(parent_pid)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "nats-server"
    ]
    assert len(found) == 1, f"expected one nats-server child of {parent_pid}, found {found}"
    return found[0]


@contextlib.asynccontextmanager
async def child_process(
    target: Callable[..., None], *arguments: object, name: str
) -> AsyncIterator[int]:
    """``target(*arguments, ready)`` in a spawned process; yields its pid once it set ``ready``.

    On exit it is stopped with SIGTERM, and killed if it has not ended
    within CHILD_STOP_TIMEOUT_S.
    """
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.synchronize.Event = context.Event()
    process = context.Process(target=target, args=(*arguments, ready), daemon=True)
    process.start()
    try:
        if not await asyncio.to_thread(ready.wait, CHILD_START_TIMEOUT_S):
            raise RuntimeError(f"the {name} did not start")
        assert process.pid is not None
        yield process.pid
    finally:
        process.terminate()
        await asyncio.to_thread(process.join, CHILD_STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    """p50, p99 and max of a run's latencies, in ms."""
    ordered = sorted(latencies_s)
    if not ordered:
        raise RuntimeError("no deal settled")
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }
