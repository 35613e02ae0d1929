"""Benchmark: settled deals per second on the production topology, with CPU per process.

The same closed loop as ``bench/deals.py`` (C buyers each settling deals
one after another against one provider; its deal loop, limits and floor
are imported from there, not copied), run against ``agentx cluster``'s
composition (``exchange/bootstrap/cluster.py``): ``--nodes`` nats-server
nodes with the result stream replicated on each (R3 on three),
``--workers`` ``agentx worker`` OS processes in one queue group, no
portal, and a fresh PostgreSQL database created through
``--database-url`` (default: ``AGENTX_TEST_POSTGRES_URL``) and dropped
afterwards. The agents (this process) are given the cluster's URL list, so
each connects to a node of its choosing, as clients of the cluster do.

Figures, over the timed part of each run, per settled deal:

* ``cpu_ms_per_deal_*``: CPU time (from ``/proc``) of this process
  (``agents``: the buyers and the provider, and the nodes' auth callouts,
  which run here but only act when a client connects), of each worker and
  their sum (``workers``), of each nats-server node and their sum
  (``nats_nodes``), of the PostgreSQL backends serving the run's database
  (found by the database's name in their process titles;
  ``postgres_backends``), and of the server's shared processes (WAL
  writer, checkpointer, background writer: ``postgres_shared``, which also
  serve any other database on the server);
* ``postgres_*_per_deal``: transactions and rows inserted, updated and
  deleted in the run's database (``pg_stat_database``), less what the
  workers' periodic passes do when no deal runs (measured right after, in
  a quiet window). PostgreSQL 15 publishes an idle backend's counts only
  after up to 10 s, so the readings wait ``POSTGRES_STATS_SETTLE_S``
  before the timed part and after it;
* ``group_*``: the group commit's transactions and contract steps, from the
  workers' ``agentx_group_size`` histograms; ``notice_ack_requests_per_deal``:
  the agents' ``notices.ack`` requests the workers answered (their
  ``agentx_requests_total``), each a batch of acknowledged notices (notices
  go live on core NATS, so no stream holds them to count);
* ``idle_cpu_ms_per_s_*``: each kind's CPU with no deal running (NATS
  heartbeats, the workers' periodic passes), watched in the same quiet
  window, and ``cpu_ms_per_deal_*_net_of_idle``: the timed part's CPU
  less that rate, i.e. what one more deal costs;
* the machine: ``machine_busy_cores`` (all of it, from ``/proc/stat``),
  ``measured_busy_cores`` (the processes above), ``other_busy_cores`` (the
  difference: other users of these cores), and the load average at the
  start and end of the timed part. On a shared machine these say how much
  of the figures is this benchmark's own.

Then, as ``bench/deals.py`` does, in the same run: plain and signed
request/reply rates (between agents on the URL list, so across routes when
they land on different nodes), ed25519 rates, and the protocol's floor
(``bench/protocol_floor.py``) at the same concurrency against a stand-in
on the same cluster (its notices live on core NATS, acknowledged in
batches, as the exchange's), with its CPU per node. ``ratio_vs_floor`` is
deals/s over the floor's. After each run the ledger invariants are checked
on the run's database; the benchmark exits 1 if they fail. ``--runs K``
repeats everything on a fresh cluster and database and reports medians,
and each run's key figures.

Closed loop only: the open loop (``--rate``) stays with ``bench/deals.py``.

    python bench/cluster_deals.py --workers 1 --deals 300 --concurrency 32
    python bench/cluster_deals.py --workers 3 --runs 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchmark_main import run_benchmark
from deals import (
    ROUND_TRIPS_PER_DEAL,
    RUNS_MAX,
    closed_loop,
    median_figures,
    print_text,
    request_reply_limits,
    sign_and_verify_rates,
)
from exchange_process import RunningExchange, cpu_s, ledger_problems
from protocol_floor import floor_closed_loop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agent_client.protocol import AcknowledgeNotices, endpoint_of
from broker.limits import CLUSTER_NODES_MAX
from exchange.bootstrap.cluster import WORKERS_MAX, ClusterConfig, ExchangeCluster
from wallet.database import async_database_url

POSTGRES_URL_VARIABLE = "AGENTX_TEST_POSTGRES_URL"
# PostgreSQL 15 publishes a backend's statistics at most once a second
# while it is busy, and an idle one's after 10 s (PGSTAT_IDLE_INTERVAL).
POSTGRES_STATS_SETTLE_S = 11.0
# How long the cluster is watched with no deal running, for its background rate.
QUIET_WINDOW_S = 5.0
# One run: starting the cluster (~10 s on two cores), the deals, the
# settling waits, the limits and the floor, stopping.
RUN_TIMEOUT_S = 900.0
METRICS_TIMEOUT_S = 5.0
# The label of the notices.ack requests in the workers' agentx_requests_total.
NOTICE_ACK_LABEL = f'endpoint="{endpoint_of(AcknowledgeNotices)}"'
# The counters of pg_stat_database read for the run's database.
POSTGRES_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
# The server's own processes, shared by every database, by their process titles.
POSTGRES_SHARED_TITLES = ("walwriter", "checkpointer", "background writer")
# The kinds of process whose CPU is summed (each worker, node... is also shown).
PROCESS_KINDS = ("agents", "workers", "nats_nodes", "postgres_backends", "postgres_shared")
# The figures reported per run as well as by their median.
KEY_FIGURES = (
    "deals_per_s",
    "p50_ms",
    "p99_ms",
    "cpu_ms_per_deal_agents",
    "cpu_ms_per_deal_workers",
    "cpu_ms_per_deal_nats_nodes",
    "cpu_ms_per_deal_postgres_backends",
    "machine_busy_cores",
    "other_busy_cores",
    "loadavg_1m_start",
    "loadavg_1m_end",
    "floor_deals_per_s",
    "ratio_vs_floor",
)

assert POSTGRES_STATS_SETTLE_S > 10.0 and QUIET_WINDOW_S > 1.0


@dataclass(frozen=True, slots=True)
class Reading:
    """What is read at one end of the timed part: CPU, machine, load, group commit."""

    at_s: float
    cpu_s_by_name: dict[str, float]
    backends_cpu_s: dict[int, float]
    machine_busy_s: float
    loadavg_1m: float
    groups: float
    group_steps: float
    notice_acks: float


def postgres_processes(title_part: str, /) -> dict[int, float]:
    """CPU seconds of each PostgreSQL process whose title holds ``title_part``.

    A backend's title is ``postgres: 15/main: <user> <database> <host>(<port>) <state>``.
    """
    found: dict[int, float] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        # A process may end while it is read: it is simply not counted.
        with contextlib.suppress(OSError, IndexError, ValueError):
            title = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            if title.startswith("postgres: ") and title_part in title:
                pid = int(cmdline.parent.name)
                found[pid] = cpu_s(pid)
    return found


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    assert fields[0] == "cpu", fields
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def worker_counts(metrics_urls: list[str], /) -> tuple[float, float, float]:
    """Groups committed, contract steps in them and notices.ack requests answered
    (whatever the answer), summed over the workers' metrics."""
    groups = steps = notice_acks = 0.0
    async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_S) as client:
        for url in metrics_urls:
            for line in (await client.get(url)).text.splitlines():
                if line.startswith("agentx_group_size_count "):
                    groups += float(line.split()[1])
                elif line.startswith("agentx_group_size_sum "):
                    steps += float(line.split()[1])
                elif line.startswith("agentx_requests_total{") and NOTICE_ACK_LABEL in line:
                    notice_acks += float(line.rsplit(maxsplit=1)[1])
    return groups, steps, notice_acks


async def database_counters(admin: AsyncEngine, database_name: str, /) -> dict[str, float]:
    columns = ", ".join(POSTGRES_COUNTERS)
    async with admin.connect() as connection:
        row = (
            await connection.execute(
                text(f"SELECT {columns} FROM pg_stat_database WHERE datname = :name"),
                {"name": database_name},
            )
        ).one()
    return {name: float(value) for name, value in zip(POSTGRES_COUNTERS, row, strict=True)}


class ClusterMeter:
    """The timed part's costs per deal on the cluster (a ``deals.DealMeter``).

    ``start`` first lets PostgreSQL publish the set-up's statistics;
    ``per_deal`` reads the CPU at once, then waits for the timed part's
    statistics and watches a quiet window for the background rate.
    """

    def __init__(self, cluster: ExchangeCluster, admin: AsyncEngine, database_name: str) -> None:
        pids = {"agents": os.getpid()}
        for index, worker in enumerate(cluster.workers, start=1):
            pids[f"worker_{index}"] = worker.process_id
        for index, pid in enumerate(cluster.nats.process_ids, start=1):
            pids[f"nats_node_{index}"] = pid
        for title in POSTGRES_SHARED_TITLES:
            for pid in postgres_processes(f": {title}"):
                pids[f"postgres_shared_{title.replace(' ', '_')}"] = pid
        self._pids = pids
        self._metrics_urls = [worker.metrics_url or "" for worker in cluster.workers]
        assert all(self._metrics_urls), "every worker serves metrics"
        self._admin = admin
        self._database_name = database_name
        self._start: Reading | None = None
        self._start_counters: dict[str, float] = {}

    async def start(self) -> None:
        await asyncio.sleep(POSTGRES_STATS_SETTLE_S)
        self._start_counters = await database_counters(self._admin, self._database_name)
        self._start = await self._read()

    async def per_deal(self, deals: int, /) -> dict[str, float]:
        start = self._start
        assert start is not None, "start() first"
        end = await self._read()
        await asyncio.sleep(POSTGRES_STATS_SETTLE_S)
        settled, counters = await self._read(), await self._counters()
        await asyncio.sleep(QUIET_WINDOW_S)
        quiet, quiet_counters = await self._read(), await self._counters()
        deals = max(1, deals)
        figures = self._cpu_figures(start, end, deals)
        # What each kind of process does with no deal running (heartbeats,
        # the workers' periodic passes), and the timed part's cost net of it.
        timed_s, quiet_s = end.at_s - start.at_s, quiet.at_s - settled.at_s
        timed_used_s, quiet_used_s = self._used_s(start, end), self._used_s(settled, quiet)
        for kind in PROCESS_KINDS:
            idle_per_s = quiet_used_s[kind] / quiet_s
            figures[f"idle_cpu_ms_per_s_{kind}"] = idle_per_s * 1000
            marginal_s = timed_used_s[kind] - idle_per_s * timed_s
            figures[f"cpu_ms_per_deal_{kind}_net_of_idle"] = marginal_s * 1000 / deals
        window_s = settled.at_s - start.at_s
        for name in POSTGRES_COUNTERS:
            background_per_s = (quiet_counters[name] - counters[name]) / quiet_s
            used = counters[name] - self._start_counters[name] - background_per_s * window_s
            figures[f"postgres_{name}_per_deal"] = used / deals
            figures[f"postgres_{name}_background_per_s"] = background_per_s
        groups = end.groups - start.groups
        steps = end.group_steps - start.group_steps
        figures["group_transactions_per_deal"] = groups / deals
        figures["group_steps_per_deal"] = steps / deals
        figures["group_steps_per_transaction"] = steps / max(1.0, groups)
        figures["notice_ack_requests_per_deal"] = (end.notice_acks - start.notice_acks) / deals
        return figures

    async def _counters(self) -> dict[str, float]:
        return await database_counters(self._admin, self._database_name)

    async def _read(self) -> Reading:
        groups, steps, notice_acks = await worker_counts(self._metrics_urls)
        return Reading(
            at_s=time.perf_counter(),
            cpu_s_by_name={name: cpu_s(pid) for name, pid in self._pids.items()},
            backends_cpu_s=postgres_processes(f" {self._database_name} "),
            machine_busy_s=machine_busy_s(),
            loadavg_1m=os.getloadavg()[0],
            groups=groups,
            group_steps=steps,
            notice_acks=notice_acks,
        )

    def _used_s(self, start: Reading, end: Reading) -> dict[str, float]:
        """CPU seconds each process, and each kind of process, used between two readings."""
        used_s = {name: end.cpu_s_by_name[name] - start.cpu_s_by_name[name] for name in self._pids}
        # A backend that started in between spent all its CPU in between.
        used_s["postgres_backends"] = sum(
            cpu - start.backends_cpu_s.get(pid, 0.0) for pid, cpu in end.backends_cpu_s.items()
        )
        for kind, total in (
            ("worker_", "workers"),
            ("nats_node_", "nats_nodes"),
            ("postgres_shared_", "postgres_shared"),
        ):
            used_s[total] = sum(used for name, used in used_s.items() if name.startswith(kind))
        used_s["measured"] = sum(used_s[kind] for kind in PROCESS_KINDS)
        return used_s

    def _cpu_figures(self, start: Reading, end: Reading, deals: int) -> dict[str, float]:
        used_s = self._used_s(start, end)
        elapsed_s = end.at_s - start.at_s
        machine_s = end.machine_busy_s - start.machine_busy_s
        figures = {f"cpu_ms_per_deal_{name}": used * 1000 / deals for name, used in used_s.items()}
        figures["postgres_backends_seen"] = len(end.backends_cpu_s)
        figures["machine_busy_cores"] = machine_s / elapsed_s
        figures["measured_busy_cores"] = used_s["measured"] / elapsed_s
        figures["other_busy_cores"] = (machine_s - used_s["measured"]) / elapsed_s
        figures["loadavg_1m_start"] = start.loadavg_1m
        figures["loadavg_1m_end"] = end.loadavg_1m
        return figures


@contextlib.asynccontextmanager
async def fresh_database(admin: AsyncEngine) -> AsyncIterator[tuple[str, str]]:
    """A uniquely named database on the admin URL's server; its URL and name. Dropped on exit."""
    name = f"agentx_bench_{uuid.uuid4().hex[:16]}"
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False), name
    finally:
        async with admin.connect() as connection:
            # FORCE: a run that failed midway may have left workers' connections open.
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def measure_once(arguments: argparse.Namespace, admin: AsyncEngine) -> dict[str, Any]:
    """One whole run: a fresh database and cluster, the deals, the limits, the floor."""
    async with fresh_database(admin) as (database_url, database_name):
        with tempfile.TemporaryDirectory(prefix="agentx-bench-cluster-") as data_dir:
            config = ClusterConfig(
                data_dir=Path(data_dir),
                database_url=database_url,
                nodes=arguments.nodes,
                workers=arguments.workers,
                portal_port=None,
            )
            async with ExchangeCluster(config) as cluster:
                figures = await measure_on(cluster, arguments, admin, database_name)
        problems = await ledger_problems(database_url)
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    figures["ed25519_sign_per_s"], figures["ed25519_verify_per_s"] = sign_and_verify_rates()
    figures["ratio"] = (
        figures["deals_per_s"] * ROUND_TRIPS_PER_DEAL / figures["signed_roundtrips_per_s"]
    )
    figures["ratio_vs_floor"] = figures["deals_per_s"] / figures["floor_deals_per_s"]
    return figures


async def measure_on(
    cluster: ExchangeCluster, arguments: argparse.Namespace, admin: AsyncEngine, database_name: str
) -> dict[str, Any]:
    """The deals, then the limits and the floor, on a running cluster."""
    # deals.closed_loop reads only the URL and the keys; the processes are the meter's.
    exchange = RunningExchange(
        nats_url=cluster.nats_url,
        database_url="",
        operator_keys=cluster.operator_keys,
        exchange_keys=cluster.exchange_keys,
        auth=True,
        pid=None,
    )
    meter = ClusterMeter(cluster, admin, database_name)
    figures = await closed_loop(
        exchange, meter, deals=arguments.deals, concurrency=arguments.concurrency
    )
    figures.update(await request_reply_limits(cluster.nats_url))
    node_pids = {
        f"nats_node_{index}": pid for index, pid in enumerate(cluster.nats.process_ids, start=1)
    }
    floor = await floor_closed_loop(
        cluster.nats_url, node_pids, cluster.exchange_keys, in_flight=arguments.concurrency
    )
    floor["floor_cpu_ms_per_deal_nats_nodes"] = sum(
        floor[f"floor_cpu_ms_per_deal_{name}"] for name in node_pids
    )
    figures.update(floor)
    return figures


def summarize(arguments: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "mode": "closed_loop",
        "topology": f"{arguments.nodes} NATS nodes, {arguments.workers} workers, PostgreSQL",
        "cpu_count": os.cpu_count(),
        "runs_count": len(runs),
        **median_figures(runs),
        "runs": [{name: run[name] for name in KEY_FIGURES} for run in runs],
    }


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    admin = create_async_engine(
        async_database_url(arguments.database_url),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
    )
    runs: list[dict[str, Any]] = []
    try:
        for index in range(1, arguments.runs + 1):
            async with asyncio.timeout(RUN_TIMEOUT_S):
                figures = await measure_once(arguments, admin)
            runs.append(figures)
            print(
                f"run {index}/{arguments.runs} ({arguments.workers} workers):"
                f" {figures['deals_per_s']:.1f} deals/s, p99 {figures['p99_ms']:.0f} ms,"
                f" load average {figures['loadavg_1m_start']:.2f} -> "
                f"{figures['loadavg_1m_end']:.2f}, machine busy"
                f" {figures['machine_busy_cores']:.2f} cores of {os.cpu_count()},"
                f" others {figures['other_busy_cores']:.2f}",
                file=sys.stderr,
            )
    finally:
        await admin.dispose()
    return summarize(arguments, runs)


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help=f"1..{WORKERS_MAX} (default 3)")
    parser.add_argument(
        "--nodes", type=int, default=3, help=f"NATS nodes, 1..{CLUSTER_NODES_MAX} (default 3)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(POSTGRES_URL_VARIABLE),
        help=f"PostgreSQL server (default: {POSTGRES_URL_VARIABLE}); a fresh database per run",
    )
    parser.add_argument("--deals", type=int, default=300, help="deals in all (default 300)")
    parser.add_argument("--concurrency", type=int, default=32, help="buyers (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="fresh cluster each run; medians")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not arguments.database_url:
        return f"--database-url or {POSTGRES_URL_VARIABLE}: the cluster runs on PostgreSQL"
    if not arguments.database_url.startswith("postgresql"):
        return "--database-url must be a postgresql:// URL"
    if not (1 <= arguments.workers <= WORKERS_MAX and 1 <= arguments.nodes <= CLUSTER_NODES_MAX):
        return f"--workers 1..{WORKERS_MAX} and --nodes 1..{CLUSTER_NODES_MAX}"
    if not (1 <= arguments.deals <= 1_000_000 and 1 <= arguments.concurrency <= 1_000):
        return "--deals 1..1,000,000 and --concurrency 1..1,000"
    if not 1 <= arguments.runs <= RUNS_MAX:
        return f"--runs 1..{RUNS_MAX}"
    return arguments


def main() -> int:
    return run_benchmark(
        parse_arguments, main_async, print_text, passed=lambda summary: summary["ledger_balanced"]
    )


if __name__ == "__main__":
    raise SystemExit(main())
