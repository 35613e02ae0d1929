"""Benchmark: what the bridges (MCP, A2A) cost per deal, beside the same deal done directly.

One provider ``Agent`` (in this process) advertises ``text.upper`` with an
input schema and serves it. The same deal (RFQ → quote → hire with the
result sealed → delivery → accept) is done four ways, each by a fresh
buyer key funded by the operator:

* ``direct``: ``Agent.request_quotes`` (``quotes_max=1``), ``hire(...,
  seal_result=True)``, ``wait_delivery``, ``accept_delivery``: the raw figure;
* ``mcp_in_process``: the buyer's MCP server (``agent_client.bridges.mcp_buyer``)
  driven by the SDK's ``mcp.Client`` connected in process: ``get_quotes`` →
  ``hire_text_upper`` → ``wait_result`` → ``accept_delivery``;
* ``mcp_http``: the same server behind ``HttpService`` (streamable HTTP on
  loopback, bearer token), the same client over HTTP;
* ``a2a``: the A2A gateway (``agent_client.bridges.a2a_gateway``), the SDK's
  client sending one message per deal to the capability's card (resolved and
  its signature checked once) and reading the completed task's artifact.

Each way runs ``--deals`` deals one after another (``sequential``), then
``--deals`` with ``--concurrency`` in flight (``concurrent``), through one
buyer (one bridge) each. Per phase it prints deals/s, latency p50/p99 (ms),
the ratio to the direct phase of the same mode (``rate_ratio``: deals/s over
direct's, ``p50_ratio``: p50 over direct's) and the CPU ms per deal of this
process (buyer, bridge, client and provider) and of the exchange process,
from ``/proc``. ``quote_p50_ms`` is the quote step alone (direct and MCP).
Every path stops collecting quotes once each provider listing the
capability has answered (one here); ``--quote-wait-s`` is only the MCP
``get_quotes`` timeout, reached when a provider stays silent.

The exchange runs as in production, in its own process (``agentx up``, NATS
auth on, bench/exchange_process.py). At the end each buyer must have paid
exactly the price of each of its contracts (all released, nothing held) and
the provider received exactly their nets (``balances_add_up``), and the
exchange invariants must hold on its database once stopped
(``ledger_balanced``); the benchmark exits 1 otherwise. ``--runs K`` repeats
everything with a fresh exchange and prints medians. Text, or one JSON
object with ``--json``.

    python bench/bridges.py [--deals 100] [--concurrency 8] [--quote-wait-s 0.2]
                            [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_data_parts, new_data_part
from a2a.types import Message, Role, SendMessageRequest, Task, TaskState
from benchmark_main import run_benchmark
from exchange_process import (
    RunningExchange,
    cpu_s,
    ledger_problems,
    percentiles,
    running_exchange,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient
from agent_client.bridges.a2a_cards import card_verifier
from agent_client.bridges.a2a_gateway import A2AGateway, GatewayConfig, GatewayLimits
from agent_client.bridges.mcp_buyer import (
    BuyerSettings,
    BuyerTools,
    HttpService,
    buyer_server,
    new_http_token,
)
from agent_client.bridges.mcp_buyer_content import hire_tool_name
from agent_client.offers import QuoteRequest
from agent_client.protocol import ContractState

CAPABILITY = "text.upper"
PRICE_MILLICREDITS = 2_000
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
TASK = {"text": "hello"}
RESULT = {"upper": "HELLO"}
PHASES = ("direct", "mcp_in_process", "mcp_http", "a2a")
MODES = ("sequential", "concurrent")
AGENT_OPTIONS = AgentOptions(close_grace_s=0.2)
# Every wait is bounded: one deal, one phase, one HTTP request.
DEAL_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 600.0
DELIVERY_WAIT_S = 20.0
HTTP_TIMEOUT_S = 30.0
DEALS_DEFAULT, DEALS_MAX = 100, 10_000
CONCURRENCY_DEFAULT, CONCURRENCY_MAX = 8, 64
QUOTE_WAIT_DEFAULT_S, QUOTE_WAIT_MAX_S = 0.2, 5.0
RUNS_MAX = 20
PER_DEAL_FIGURES = ("deals_per_s", "p50_ms", "p99_ms", "rate_ratio", "p50_ratio")
CPU_FIGURES = ("cpu_ms_per_deal_bench", "cpu_ms_per_deal_exchange")


async def upper(task: Any) -> Any:
    return {"upper": task["text"].upper()}


@dataclass(frozen=True, slots=True)
class DealDone:
    """One settled deal: its contract, and how long its quote step took (if separable)."""

    contract_id: str
    quote_s: float | None = None


# A way of doing one deal, end to end.
Deal = Callable[[], Awaitable[DealDone]]


@dataclass(slots=True)
class Books:
    """Who bought what: each buyer's grant and contracts, to check the balances at the end."""

    grants: dict[str, int] = field(default_factory=dict)
    contracts: dict[str, list[str]] = field(default_factory=dict)
    buyers: dict[str, Agent] = field(default_factory=dict)


# --- one deal, each way ----------------------------------------------------------------


def direct_deal(buyer: Agent, quote_wait_s: float) -> Deal:
    async def deal() -> DealDone:
        started = time.perf_counter()
        request = QuoteRequest(
            CAPABILITY,
            "bench",
            budget_millicredits=PRICE_MILLICREDITS,
            timeout_s=quote_wait_s,
            quotes_max=1,
        )
        [quote] = await buyer.request_quotes(request)
        quote_s = time.perf_counter() - started
        contract = await buyer.hire(quote, TASK, seal_result=True)
        delivery = await buyer.wait_delivery(contract.contract_id, timeout_s=DELIVERY_WAIT_S)
        assert delivery.result == RESULT, delivery.result
        view = await buyer.accept_delivery(delivery)
        assert view.state is ContractState.RELEASED, view.state
        return DealDone(contract.contract_id, quote_s)

    return deal


async def tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool's structured content; a tool error stops the benchmark with its text."""
    result = await client.call_tool(name, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error and result.structured_content is not None, (name, text)
    content: dict[str, Any] = result.structured_content
    return content


def mcp_deal(client: Client, quote_wait_s: float) -> Deal:
    hire_tool = hire_tool_name(CAPABILITY)
    budget_credits = PRICE_MILLICREDITS / 1000

    async def deal() -> DealDone:
        started = time.perf_counter()
        quotes = await tool(
            client,
            "get_quotes",
            {"capability": CAPABILITY, "budget_credits": budget_credits, "timeout_s": quote_wait_s},
        )
        quote_s = time.perf_counter() - started
        quote_id = quotes["quotes"][0]["quote_id"]
        hired = await tool(client, hire_tool, {"quote_id": quote_id, "task": TASK})
        contract_id = hired["contract_id"]
        waited = {"contract_id": contract_id, "timeout_s": DELIVERY_WAIT_S}
        result = await tool(client, "wait_result", waited)
        assert result["result"] == RESULT, result
        accepted = await tool(client, "accept_delivery", {"contract_id": contract_id})
        assert accepted["state"] == "released", accepted
        return DealDone(contract_id, quote_s)

    return deal


def a2a_deal(client: Any) -> Deal:
    async def deal() -> DealDone:
        message = Message(
            role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[new_data_part(TASK)]
        )
        task: Task | None = None
        async for response in client.send_message(SendMessageRequest(message=message)):
            if response.HasField("task"):
                task = response.task
        assert task is not None and task.status.state == TaskState.TASK_STATE_COMPLETED, task
        assert get_data_parts(task.artifacts[0].parts) == [RESULT], task.artifacts
        return DealDone(str(task.artifacts[0].metadata["contract_id"]))

    return deal


# --- each way's set-up: a funded buyer, its bridge and client ---------------------------


async def new_buyer(exchange: RunningExchange, operator: Agent, books: Books, deals: int) -> Agent:
    """A buyer key granted twice what its deals cost, connected, and noted in the books."""
    buyer = await Agent.connect(exchange.nats_url, AgentKeys.generate(), options=AGENT_OPTIONS)
    grant = 4 * deals * PRICE_MILLICREDITS
    await OperatorClient(operator).mint(buyer.agent_id, grant, reason="bench bridges")
    books.grants[buyer.agent_id] = grant
    books.contracts[buyer.agent_id] = []
    books.buyers[buyer.agent_id] = buyer
    return buyer


@contextlib.asynccontextmanager
async def mcp_client(buyer: Agent, *, over_http: bool) -> AsyncIterator[Client]:
    """The SDK's client on the buyer's MCP server, in process or over streamable HTTP."""
    server = buyer_server(BuyerTools(buyer, settings=BuyerSettings()))
    if not over_http:
        async with Client(server) as client:
            await client.list_tools()  # the hire_<capability> tools come with the listing
            yield client
        return
    token = new_http_token()
    service = HttpService(server, port=0, token=token)
    url = await service.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            create_mcp_http_client(headers=headers) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await client.list_tools()
            yield client
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def a2a_client(
    buyer: Agent, exchange: RunningExchange, arguments: argparse.Namespace
) -> AsyncIterator[Any]:
    """The gateway in this process, and the SDK's client on the capability's verified card."""
    config = GatewayConfig(
        budget_millicredits=2 * arguments.deals * PRICE_MILLICREDITS,
        max_price_millicredits=PRICE_MILLICREDITS,
        limits=GatewayLimits(
            tasks_running_max=max(16, arguments.concurrency),
            quote_timeout_s=arguments.quote_wait_s,
        ),
    )
    gateway = A2AGateway(buyer, exchange.exchange_keys, config)
    base_url = await gateway.start()
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            resolver = A2ACardResolver(http, f"{base_url}/agents/{CAPABILITY}")
            verifier = card_verifier(exchange.exchange_keys.agent_id)
            card = await resolver.get_agent_card(signature_verifier=verifier)
            client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            try:
                yield client
            finally:
                await client.close()
    finally:
        await gateway.stop()


@contextlib.asynccontextmanager
async def way_of_dealing(
    phase: str, buyer: Agent, exchange: RunningExchange, arguments: argparse.Namespace
) -> AsyncIterator[Deal]:
    if phase == "direct":
        yield direct_deal(buyer, arguments.quote_wait_s)
    elif phase in ("mcp_in_process", "mcp_http"):
        async with mcp_client(buyer, over_http=phase == "mcp_http") as client:
            yield mcp_deal(client, arguments.quote_wait_s)
    else:
        assert phase == "a2a", phase
        async with a2a_client(buyer, exchange, arguments) as client:
            yield a2a_deal(client)


# --- timing ------------------------------------------------------------------------------


async def timed_deals(
    deal: Deal, count: int, concurrency: int
) -> tuple[list[DealDone], float, list[float]]:
    """``count`` deals, ``concurrency`` at a time: what each settled, the seconds, latencies."""
    done: list[DealDone] = []
    latencies_s: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            done.append(await asyncio.wait_for(deal(), DEAL_TIMEOUT_S))
            latencies_s.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), PHASE_TIMEOUT_S)
    return done, time.perf_counter() - started, latencies_s


async def measure_mode(
    deal: Deal, exchange_pid: int, count: int, concurrency: int
) -> tuple[dict[str, float], list[str]]:
    """One mode of one phase: its figures and the contracts it settled."""
    cpu_started = (cpu_s(os.getpid()), cpu_s(exchange_pid))
    done, elapsed_s, latencies_s = await timed_deals(deal, count, concurrency)
    cpu_bench_s, cpu_exchange_s = cpu_s(os.getpid()), cpu_s(exchange_pid)
    latency = percentiles(latencies_s)
    figures = {
        "deals_per_s": len(done) / elapsed_s,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "cpu_ms_per_deal_bench": (cpu_bench_s - cpu_started[0]) * 1000 / len(done),
        "cpu_ms_per_deal_exchange": (cpu_exchange_s - cpu_started[1]) * 1000 / len(done),
    }
    quote_s = [each.quote_s for each in done if each.quote_s is not None]
    if quote_s:
        figures["quote_p50_ms"] = statistics.median(quote_s) * 1000
    return figures, [each.contract_id for each in done]


async def measure_phases(
    exchange: RunningExchange, operator: Agent, books: Books, arguments: argparse.Namespace
) -> dict[str, Any]:
    """Every phase, each mode: ``<phase>_<mode>_<figure>``."""
    assert exchange.pid is not None
    figures: dict[str, Any] = {}
    for phase in PHASES:
        buyer = await new_buyer(exchange, operator, books, arguments.deals)
        async with way_of_dealing(phase, buyer, exchange, arguments) as deal:
            for mode in MODES:
                concurrency = 1 if mode == "sequential" else arguments.concurrency
                measured, contract_ids = await measure_mode(
                    deal, exchange.pid, arguments.deals, concurrency
                )
                books.contracts[buyer.agent_id].extend(contract_ids)
                figures.update(
                    {f"{phase}_{mode}_{name}": value for name, value in measured.items()}
                )
    for phase in PHASES:
        for mode in MODES:
            prefix, direct = f"{phase}_{mode}_", f"direct_{mode}_"
            figures[prefix + "rate_ratio"] = (
                figures[prefix + "deals_per_s"] / figures[direct + "deals_per_s"]
            )
            figures[prefix + "p50_ratio"] = figures[prefix + "p50_ms"] / figures[direct + "p50_ms"]
    return figures


# --- the books ---------------------------------------------------------------------------


async def balances_add_up(books: Books, provider: Agent, deals_per_buyer: int) -> bool:
    """Each buyer paid each contract's price and holds nothing; the provider got the nets."""
    problems: list[str] = []
    nets = 0
    for buyer_id, contract_ids in books.contracts.items():
        buyer = books.buyers[buyer_id]
        if len(set(contract_ids)) != deals_per_buyer:
            problems.append(
                f"{buyer_id}: {len(set(contract_ids))} contracts, not {deals_per_buyer}"
            )
        paid = 0
        for contract_id in contract_ids:
            view = await buyer.contract(contract_id)
            if view.state is not ContractState.RELEASED or view.net_millicredits is None:
                problems.append(f"{contract_id} is {view.state.value}")
                continue
            if view.net_millicredits + view.fee_millicredits != view.price_millicredits:
                problems.append(f"{contract_id}: net + fee != price")
            paid += view.price_millicredits
            nets += view.net_millicredits
        balance = await buyer.balance()
        expected = (books.grants[buyer_id] - paid, 0)
        if (balance.available_millicredits, balance.held_millicredits) != expected:
            problems.append(f"buyer {buyer_id}: {balance} is not {expected}")
    balance = await provider.balance()
    if (balance.available_millicredits, balance.held_millicredits) != (nets, 0):
        problems.append(f"provider: {balance} is not ({nets}, 0)")
    for problem in problems:
        print(f"balances: {problem}", file=sys.stderr)
    return not problems


@contextlib.asynccontextmanager
async def market(exchange: RunningExchange) -> AsyncIterator[tuple[Agent, Agent]]:
    """The operator, and the provider serving CAPABILITY; every agent connected is closed."""
    url = exchange.nats_url
    operator = await Agent.connect(url, exchange.operator_keys, options=AGENT_OPTIONS)
    provider = await Agent.connect(url, AgentKeys.generate(), options=AGENT_OPTIONS)
    try:
        await provider.advertise(
            CAPABILITY,
            description="Upper-cases a text",
            price_millicredits=PRICE_MILLICREDITS,
            input_schema=INPUT_SCHEMA,
            tags=["text"],
        )
        await provider.serve(CAPABILITY, upper, pricing=PRICE_MILLICREDITS)
        yield operator, provider
    finally:
        await provider.close()
        await operator.close()


async def measure_once(arguments: argparse.Namespace) -> dict[str, Any]:
    """A fresh exchange: every phase, the balances, then the invariants once it stopped."""
    with tempfile.TemporaryDirectory(prefix="agentx-bench-bridges-") as data_dir:
        async with running_exchange(Path(data_dir)) as exchange:
            assert exchange.auth, "the benchmark runs with NATS auth on, as agentx up does"
            async with market(exchange) as (operator, provider):
                books = Books()
                try:
                    figures = await measure_phases(exchange, operator, books, arguments)
                    figures["balances_add_up"] = await balances_add_up(
                        books, provider, len(MODES) * arguments.deals
                    )
                finally:
                    for buyer in books.buyers.values():
                        await buyer.close()
        problems = await ledger_problems(exchange.database_url)
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    return figures


# --- output ------------------------------------------------------------------------------


def summarize(arguments: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "deals": arguments.deals,
        "concurrency": arguments.concurrency,
        "quote_wait_s": arguments.quote_wait_s,
        "cores": os.cpu_count(),
        "runs_count": len(runs),
    }
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        summary[name] = all(values) if isinstance(first, bool) else statistics.median(values)
    summary["runs"] = [
        {phase: run[f"{phase}_concurrent_deals_per_s"] for phase in PHASES} for run in runs
    ]
    return summary


def print_text(summary: dict[str, Any]) -> None:
    print(
        f"deals {summary['deals']} per mode, concurrency {summary['concurrency']}, "
        f"MCP quote wait {summary['quote_wait_s']} s, {summary['cores']} cores, "
        f"medians of {summary['runs_count']} run(s)"
    )
    columns = (*PER_DEAL_FIGURES, *CPU_FIGURES, "quote_p50_ms")
    headers = ("deals/s", "p50 ms", "p99 ms", "x rate", "x p50", "cpu bench", "cpu exch", "quote")
    print(f"{'phase':<16}{'mode':<12}" + "".join(f"{header:>11}" for header in headers))
    for phase in PHASES:
        for mode in MODES:
            values = [summary.get(f"{phase}_{mode}_{name}") for name in columns]
            shown = "".join(f"{v:>11.2f}" if v is not None else f"{'-':>11}" for v in values)
            print(f"{phase:<16}{mode:<12}{shown}")
    print("(x rate: deals/s over direct's; x p50: p50 over direct's; cpu: ms per deal)")
    print("concurrent deals/s per run:")
    for index, run in enumerate(summary["runs"], start=1):
        print(f"  {index}: " + "  ".join(f"{name} {value:,.1f}" for name, value in run.items()))
    books = f"balances_add_up {summary['balances_add_up']}"
    print(f"{books}  ledger_balanced {summary['ledger_balanced']}")


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = [await measure_once(arguments) for _ in range(arguments.runs)]
    return summarize(arguments, runs)


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=DEALS_DEFAULT, help="per phase and mode")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_DEFAULT)
    parser.add_argument(
        "--quote-wait-s",
        type=float,
        default=QUOTE_WAIT_DEFAULT_S,
        help="how long get_quotes collects (MCP) and the direct RFQ's deadline",
    )
    parser.add_argument("--runs", type=int, default=3, help="fresh exchange each run; medians")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if not 1 <= arguments.deals <= DEALS_MAX:
        return f"--deals 1..{DEALS_MAX:,}"
    if not 1 <= arguments.concurrency <= CONCURRENCY_MAX:
        return f"--concurrency 1..{CONCURRENCY_MAX}"
    if not 0 < arguments.quote_wait_s <= QUOTE_WAIT_MAX_S:
        return f"--quote-wait-s in (0, {QUOTE_WAIT_MAX_S}]"
    if not 1 <= arguments.runs <= RUNS_MAX:
        return f"--runs 1..{RUNS_MAX}"
    return arguments


def main() -> int:
    return run_benchmark(
        parse_arguments,
        main_async,
        print_text,
        passed=lambda summary: summary["balances_add_up"] and summary["ledger_balanced"],
    )


if __name__ == "__main__":
    raise SystemExit(main())
