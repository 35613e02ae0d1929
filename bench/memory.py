"""Benchmark: the exchange process's memory with 100,000 listings and 10,000 open contracts.

The exchange runs as in production, ``agentx up`` in its own process (see
``exchange_process``). Steps, in one temporary data directory:

1. Start it on an empty database (this also creates the schema), read its
   resident memory right after start (the baseline), stop it.
2. Insert the listings straight through SQL with ``bench/search.py``'s
   synthetic catalog, a benchmark fixture rather than the product path. Their
   reputation counters are set to zero, which is what a recount from
   contracts gives for listings nobody has traded on, so the exchange
   invariants can run on this database at the end.
3. Start the exchange again, then open the contracts over NATS with real
   signed agents: a provider advertises and serves a capability, buyers
   (minted enough credits) run RFQ → quote → hire, concurrently. The
   provider's handler never finishes, so nothing is delivered and every
   contract stays open, its price held in escrow.
4. Run a few hundred searches of ``bench/search.py``'s mix over NATS.
5. Read ``VmHWM`` (peak resident memory) and ``VmRSS`` (current) of the
   ``agentx up`` process from ``/proc``. nats-server is that process's child
   and is reported separately, not counted against the exchange.

Then the exchange is stopped and the exchange invariants are checked on its
SQLite file; the benchmark exits 1 if they fail. Target (issue 5): peak at
most 200 MB (10^6 bytes). Prints text, or one JSON object with --json.

    python bench/memory.py                    # 100,000 listings, 10,000 contracts
    python bench/memory.py --contracts 500    # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from exchange_process import (
    RunningExchange,
    ledger_problems,
    memory_kib,
    nats_server_pid,
    running_exchange,
)
from search import SEED, Catalog, insert_catalog

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, QuoteRequest, limits
from exchange.adapters.exchange_tables import contracts
from wallet import open_database

CAPABILITY = "bench.hold"
PRICE_MILLICREDITS = 1_000
TARGET_PEAK_MB = 200.0
BYTES_PER_KIB = 1024
BYTES_PER_MB = 1_000_000
PROGRESS_EVERY_CONTRACTS = 1_000
# The counters a recount from contracts and ratings gives a listing nobody traded on.
REPUTATION_COUNTERS = (
    "settled_count",
    "on_time_count",
    "dispute_count",
    "refund_count",
    "rating_count",
    "rating_sum",
    "unique_buyer_count",
)


def memory_mb(pid: int, /) -> dict[str, float]:
    """Peak and current resident memory of ``pid``, in MB."""
    kib = memory_kib(pid)
    return {
        "peak_mb": kib["VmHWM"] * BYTES_PER_KIB / BYTES_PER_MB,
        "rss_mb": kib["VmRSS"] * BYTES_PER_KIB / BYTES_PER_MB,
    }


def untraded_catalog(listing_count: int, /) -> Catalog:
    """``bench/search.py``'s synthetic catalog, with the counters of listings never traded."""
    catalog = Catalog(listing_count, random.Random(SEED))
    for row in catalog.rows:
        row.update(dict.fromkeys(REPUTATION_COUNTERS, 0), rating_mean=0.0)
    return catalog


async def hold_open(task: Any) -> Any:
    """The provider's handler: it never finishes, so the contract stays open."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def open_contracts(
    exchange: RunningExchange, *, contracts: int, concurrency: int
) -> dict[str, float]:
    """``contracts`` contracts, RFQ → quote → hire, by ``concurrency`` buyers at once."""
    # The provider's handlers never finish: on close they are cancelled at once.
    provider = await Agent.connect(
        exchange.nats_url, AgentKeys.generate(), options=AgentOptions(close_grace_s=0.1)
    )
    operator = await Agent.connect(exchange.nats_url, exchange.operator_keys)
    buyers: list[Agent] = []
    counts = [
        contracts // concurrency + (1 if index < contracts % concurrency else 0)
        for index in range(concurrency)
    ]
    opened = 0
    try:
        await provider.advertise(
            CAPABILITY, description="hold", price_millicredits=PRICE_MILLICREDITS
        )
        await provider.serve(CAPABILITY, hold_open, pricing=PRICE_MILLICREDITS)
        for count in counts:
            buyer = await Agent.connect(exchange.nats_url, AgentKeys.generate())
            buyers.append(buyer)
            await OperatorClient(operator).mint(
                buyer.agent_id, max(1, count) * PRICE_MILLICREDITS, reason="bench"
            )

        async def hire(buyer: Agent, count: int) -> None:
            nonlocal opened
            for _ in range(count):
                quotes = await buyer.request_quotes(
                    QuoteRequest(
                        CAPABILITY,
                        "hold",
                        budget_millicredits=PRICE_MILLICREDITS,
                        delivery_within_s=limits.DELIVERY_DEADLINE_MAX_S,
                        quotes_max=1,
                    )
                )
                assert quotes, "the provider did not quote in time"
                await buyer.hire(quotes[0], {"n": 1})
                opened += 1
                if opened % PROGRESS_EVERY_CONTRACTS == 0:
                    print(f"{opened:,} contracts open", file=sys.stderr, flush=True)

        started = time.perf_counter()
        await asyncio.gather(
            *(hire(buyer, count) for buyer, count in zip(buyers, counts, strict=True))
        )
        elapsed_s = time.perf_counter() - started
    finally:
        for agent in [*buyers, operator, provider]:
            await agent.close()
    return {"contracts_open": opened, "contracts_opened_per_s": opened / elapsed_s}


async def run_searches(exchange: RunningExchange, catalog: Catalog, *, searches: int) -> float:
    """``bench/search.py``'s query mix over NATS; returns the seconds it took."""
    queries = catalog.queries(random.Random(SEED + 1), searches)
    agent = await Agent.connect(exchange.nats_url, AgentKeys.generate())
    try:
        started = time.perf_counter()
        for _, options in queries:
            await agent.search(**options)
        return time.perf_counter() - started
    finally:
        await agent.close()


async def contracts_by_state(database_url: str, /) -> dict[str, int]:
    """How many contracts the database holds in each state (all should be open)."""
    engine = open_database(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.select(contracts.c.state, sa.func.count()).group_by(contracts.c.state)
            )
            return {state: count for state, count in rows}
    finally:
        await engine.dispose()


async def measure(data_dir: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with running_exchange(data_dir) as exchange:
        assert exchange.pid is not None
        figures["exchange_baseline"] = memory_mb(exchange.pid)
    catalog = untraded_catalog(arguments.listings)
    engine = open_database(exchange.database_url)
    try:
        figures["listings_inserted_s"] = await insert_catalog(engine, catalog)
    finally:
        await engine.dispose()
    async with running_exchange(data_dir) as exchange:
        assert exchange.pid is not None
        figures["exchange_after_start"] = memory_mb(exchange.pid)
        figures.update(
            await open_contracts(
                exchange, contracts=arguments.contracts, concurrency=arguments.concurrency
            )
        )
        figures["exchange_after_contracts"] = memory_mb(exchange.pid)
        figures["searches_s"] = await run_searches(exchange, catalog, searches=arguments.searches)
        figures["exchange_at_end"] = memory_mb(exchange.pid)
        figures["nats_server_at_end"] = memory_mb(nats_server_pid(exchange.pid))
    figures["contracts_by_state"] = await contracts_by_state(exchange.database_url)
    problems = await ledger_problems(exchange.database_url)
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    return figures


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "listings": arguments.listings,
        "contracts": arguments.contracts,
        "searches": arguments.searches,
    }
    with tempfile.TemporaryDirectory(prefix="agentx-bench-memory-") as data_dir:
        figures.update(await measure(Path(data_dir), arguments))
    peak_mb = figures["exchange_at_end"]["peak_mb"]
    figures["exchange_peak_mb"] = peak_mb
    figures["target_peak_mb"] = TARGET_PEAK_MB
    figures["target_met"] = peak_mb <= TARGET_PEAK_MB
    return figures


def print_text(figures: dict[str, Any]) -> None:
    print(
        f"{figures['listings']:,} listings (inserted in {figures['listings_inserted_s']:.1f} s), "
        f"{figures['contracts_open']:,} open contracts "
        f"({figures['contracts_opened_per_s']:.0f}/s), "
        f"{figures['searches']:,} searches ({figures['searches_s']:.1f} s)"
    )
    for label, name in (
        ("exchange, empty database, after start", "exchange_baseline"),
        ("exchange, listings, after start", "exchange_after_start"),
        ("exchange, after the contracts", "exchange_after_contracts"),
        ("exchange, after the searches", "exchange_at_end"),
        ("nats-server (its child), at the end", "nats_server_at_end"),
    ):
        part = figures[name]
        print(f"  {label:<40} peak {part['peak_mb']:6.1f} MB  now {part['rss_mb']:6.1f} MB")
    print(f"  target: exchange peak <= {TARGET_PEAK_MB:.0f} MB: ", end="")
    print("met" if figures["target_met"] else "NOT met")
    print(f"  contracts in the database by state: {figures['contracts_by_state']}")
    print(f"  ledger balanced: {figures['ledger_balanced']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--contracts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="buyers opening contracts")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not (
        1_000 <= arguments.listings <= 1_000_000
        and 1 <= arguments.contracts <= 1_000_000
        and 1 <= arguments.concurrency <= 1_000
        and 11 <= arguments.searches <= 100_000
    ):
        print(
            "--listings 1,000..1,000,000, --contracts 1..1,000,000, "
            "--concurrency 1..1,000 and --searches 11..100,000",
            file=sys.stderr,
        )
        return 2
    figures = asyncio.run(main_async(arguments))
    if arguments.json:
        print(json.dumps(figures))
    else:
        print_text(figures)
    return 0 if figures["ledger_balanced"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
