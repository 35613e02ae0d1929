"""Benchmark: contract lifecycle steps over the embedded stack, and timer throughput.

Measures, with signed messages over real NATS and the SQLite ledger:

* p50/p99 latency of each step an agent takes: open (escrow hold),
  deliver, accept (release), reject (dispute), operator resolve (split);
* the sweeper: how many expired contracts one worker refunds per second;
* in the same run, the raw signed-request limit it competes with (one
  verified ed25519 request/reply round trip on the same server).

The ledger invariants are checked at the end. Prints text, or one JSON
object with --json.

    python bench/lifecycle.py --contracts 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, QuoteRequest
from exchange import EmbeddedStack, StackConfig, check_exchange_invariants

PRICE_MILLICREDITS = 1_000
# The background sweeper stays idle; the benchmark runs sweeps itself.
SWEEP_INTERVAL_S = 3600.0


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}


async def timed(samples: list[float], step: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    result = await step()
    samples.append(time.perf_counter() - started)
    return result


async def echo(task: Any) -> Any:
    return task


async def stall(task: Any) -> Any:
    await asyncio.Event().wait()


async def steps_latency(stack: EmbeddedStack, *, contracts: int) -> dict[str, Any]:
    quick = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack.nats_url, AgentKeys.generate(), options=quick)
    buyer = await Agent.connect(stack.nats_url, AgentKeys.generate())
    operator = OperatorClient(await Agent.connect(stack.nats_url, stack.operator_keys))
    samples: dict[str, list[float]] = {
        name: [] for name in ("open", "deliver", "accept", "reject", "resolve")
    }
    try:
        await provider.advertise(
            "bench.echo", description="e", price_millicredits=PRICE_MILLICREDITS
        )
        await provider.serve("bench.echo", stall, pricing=PRICE_MILLICREDITS)
        await operator.mint(buyer.agent_id, contracts * PRICE_MILLICREDITS, reason="bench")
        for number in range(contracts):
            quotes = await buyer.request_quotes(
                QuoteRequest(
                    "bench.echo", "e", budget_millicredits=PRICE_MILLICREDITS, quotes_max=1
                )
            )
            contract = await timed(samples["open"], lambda q=quotes: buyer.hire(q[0], {"n": 1}))
            cid = contract.contract_id
            await timed(samples["deliver"], lambda c=cid: provider.deliver(c, {"n": 1}))
            delivery = await buyer.wait_delivery(cid, timeout_s=30)
            if number % 2 == 0:
                await timed(samples["accept"], lambda d=delivery: buyer.accept_delivery(d))
            else:
                await timed(samples["reject"], lambda c=cid: buyer.reject_delivery(c, reason="b"))
                await timed(
                    samples["resolve"],
                    lambda c=cid: operator.resolve(c, provider_share_bps=5_000),
                )
    finally:
        for agent in (provider, buyer, operator.agent):
            await agent.close()
    return {name: percentiles(values) for name, values in samples.items() if values}


async def sweeper_throughput(stack: EmbeddedStack, *, contracts: int) -> dict[str, Any]:
    """Open contracts that miss a 1 s deadline, then time one worker's sweeps refunding them.

    The stack runs with its background sweeper idle, so the timed sweeps do
    all the work: this is the refund rate one worker sustains on a backlog.
    """
    quick = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack.nats_url, AgentKeys.generate(), options=quick)
    buyer = await Agent.connect(stack.nats_url, AgentKeys.generate())
    operator = OperatorClient(await Agent.connect(stack.nats_url, stack.operator_keys))
    try:
        price = PRICE_MILLICREDITS
        await provider.advertise("bench.stall", description="s", price_millicredits=price)
        await provider.serve("bench.stall", stall, pricing=price)
        await operator.mint(buyer.agent_id, contracts * price, reason="bench")
        for _ in range(contracts):
            quotes = await buyer.request_quotes(
                QuoteRequest(
                    "bench.stall", "s", budget_millicredits=price, delivery_within_s=1, quotes_max=1
                )
            )
            await buyer.hire(quotes[0], {"n": 1})
        await asyncio.sleep(1.1)
        started, refunded = time.perf_counter(), 0
        while refunded < contracts:
            swept = await stack.worker.contracts.sweep()
            assert swept > 0, "the sweeper found nothing due"
            refunded += swept
        elapsed_s = time.perf_counter() - started
        balance = await buyer.balance()
        assert balance.available_millicredits == contracts * price, balance
    finally:
        for agent in (provider, buyer, operator.agent):
            await agent.close()
    return {"refunded": refunded, "refunds_per_s": refunded / elapsed_s}


async def signed_roundtrips_per_s(stack: EmbeddedStack, *, seconds: float = 1.5) -> float:
    """The raw limit: sequential signed+verified requests (balance) on this server."""
    agent = await Agent.connect(stack.nats_url, AgentKeys.generate())
    try:
        done, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            await agent.balance()
            done += 1
        return done / (time.perf_counter() - started)
    finally:
        await agent.close()


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentx-bench-") as data_dir:
        config = StackConfig(data_dir=Path(data_dir), sweep_interval_s=SWEEP_INTERVAL_S)
        async with EmbeddedStack(config) as stack:
            figures: dict[str, Any] = {"contracts": arguments.contracts}
            figures["steps"] = await steps_latency(stack, contracts=arguments.contracts)
            figures["sweeper"] = await sweeper_throughput(stack, contracts=arguments.contracts)
            figures["signed_roundtrips_per_s_sequential"] = await signed_roundtrips_per_s(stack)
            await check_exchange_invariants(stack.worker.engine)
            figures["ledger_balanced"] = True
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not 2 <= arguments.contracts <= 100_000:
        print("--contracts must be between 2 and 100,000", file=sys.stderr)
        return 2
    figures = asyncio.run(main_async(arguments))
    print(json.dumps(figures) if arguments.json else json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
