"""Benchmark: settled deals per second over the embedded stack, beside its raw limits.

A deal is RFQ → quote → accept (escrow hold) → deliver → accept delivery
(release), every message signed and verified, the SQLite ledger in WAL mode.
In the same run it measures what the deals compete with on this machine:
plain nats-py request/reply (one at a time and many in flight) on the same
server, and ed25519 sign and verify rates. Prints text, or one JSON object
with --json. The ledger invariants are checked at the end of every run.

    python bench/deals.py --deals 500 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from agent_client import Agent, AgentKeys
from exchange import EmbeddedStack, StackConfig, check_exchange_invariants

CAPABILITY = "bench.echo"
PRICE_MILLICREDITS = 1_000
ROUND_TRIPS_PER_DEAL = 4  # RFQ/quote, open, deliver, accept
RAW_PROBE_S = 1.5


async def echo(task: Any) -> Any:
    return task


async def run_deals(stack: EmbeddedStack, *, deals: int, concurrency: int) -> dict[str, Any]:
    provider = await Agent.connect(stack.nats_url, AgentKeys.generate())
    operator = await Agent.connect(stack.nats_url, stack.operator_keys)
    buyers = [await Agent.connect(stack.nats_url, AgentKeys.generate()) for _ in range(concurrency)]
    try:
        await provider.advertise(
            CAPABILITY, description="echo", price_millicredits=PRICE_MILLICREDITS
        )
        await provider.serve(CAPABILITY, echo, pricing=PRICE_MILLICREDITS)
        per_buyer = -(-deals // concurrency)
        for buyer in buyers:
            await operator.mint(buyer.agent_id, per_buyer * PRICE_MILLICREDITS, reason="bench")
        latencies_s: list[float] = []

        async def trade(buyer: Agent, count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                quotes = await buyer.request_quotes(
                    CAPABILITY, "echo", budget_millicredits=PRICE_MILLICREDITS, quotes_max=1
                )
                contract = await buyer.hire(quotes[0], {"n": 1})
                await contract.accept_delivery(await contract.wait_delivery(timeout_s=30))
                latencies_s.append(time.perf_counter() - started)

        counts = [
            deals // concurrency + (1 if i < deals % concurrency else 0) for i in range(concurrency)
        ]
        started = time.perf_counter()
        await asyncio.gather(
            *(trade(buyer, count) for buyer, count in zip(buyers, counts, strict=True))
        )
        elapsed_s = time.perf_counter() - started
    finally:
        for agent in [provider, operator, *buyers]:
            await agent.close()
    await check_exchange_invariants(stack.worker.engine)
    latencies_s.sort()
    return {
        "deals": len(latencies_s),
        "deals_per_s": len(latencies_s) / elapsed_s,
        "p50_ms": statistics.median(latencies_s) * 1000,
        "p99_ms": latencies_s[min(len(latencies_s) - 1, int(len(latencies_s) * 0.99))] * 1000,
    }


async def raw_request_reply(url: str, *, in_flight: int) -> float:
    """Plain request/reply round trips per second on the same server."""
    server = await nats.connect(url)
    client = await nats.connect(url)
    try:

        async def answer(msg: Any) -> None:
            await msg.respond(msg.data)

        await server.subscribe("bench.raw", cb=answer)
        await server.flush()
        done = 0
        deadline = time.perf_counter() + RAW_PROBE_S

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await client.request("bench.raw", b"x" * 64, timeout=5)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)
    finally:
        await client.close()
        await server.close()


def sign_and_verify_rates() -> tuple[float, float]:
    keys = AgentKeys.generate()
    from agent_client.keys import verify_key_for

    verify_key = verify_key_for(keys.agent_id)
    assert verify_key is not None
    message = b"x" * 300
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < RAW_PROBE_S / 2:
        signature = keys.sign(message)
        count += 1
    sign_rate = count / (time.perf_counter() - started)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < RAW_PROBE_S / 2:
        verify_key.verify(message, signature)
        count += 1
    return sign_rate, count / (time.perf_counter() - started)


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentx-bench-") as data_dir:
        async with EmbeddedStack(StackConfig(data_dir=Path(data_dir))) as stack:
            deals = await run_deals(stack, deals=arguments.deals, concurrency=arguments.concurrency)
            sequential = await raw_request_reply(stack.nats_url, in_flight=1)
            parallel = await raw_request_reply(stack.nats_url, in_flight=64)
    sign_rate, verify_rate = sign_and_verify_rates()
    deals["concurrency"] = arguments.concurrency
    deals["raw_request_reply_per_s_sequential"] = sequential
    deals["raw_request_reply_per_s_64_in_flight"] = parallel
    deals["ed25519_sign_per_s"] = sign_rate
    deals["ed25519_verify_per_s"] = verify_rate
    deals["ratio_vs_raw_64_in_flight"] = deals["deals_per_s"] * ROUND_TRIPS_PER_DEAL / parallel
    deals["ledger_balanced"] = True
    return deals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not (1 <= arguments.deals <= 1_000_000 and 1 <= arguments.concurrency <= 1_000):
        print("--deals 1..1,000,000 and --concurrency 1..1,000", file=sys.stderr)
        return 2
    figures = asyncio.run(main_async(arguments))
    if arguments.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:<40} {value:,.3f}" if isinstance(value, float) else f"{name:<40} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
