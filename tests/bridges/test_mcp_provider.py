"""Any MCP server as a paid provider (``agentx provide-mcp``), proven against a real exchange.

The mapping is tested pure (tool names into the capability grammar, tools
into listings, results into deliveries, stderr into bounded log lines).
The serving is tested end to end: the bridge runs the tiny MCP server
(tests/bridges/tiny_mcp_server.py) as a real child process over stdio,
advertises its tools on a real exchange (real NATS, a fresh database), and
an ordinary ``Agent`` buyer finds, quotes, hires and accepts. A tool that
answers ``isError`` and a task that fails the tool's input schema deliver
nothing: the bridge cancels the contract at once (``TaskDeclined``), so the
buyer is refunded in full long before the delivery deadline. The
real command runs as a subprocess: it serves, and SIGINT deactivates its
listings, stops its child (the PID is gone) and exits 0. Every money test
ends with the exchange's ledger invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from agent_client import Agent, AgentKeys, QuoteRequest
from agent_client.bridges.mcp_provider import (
    ChildServerError,
    McpProviderConfig,
    McpProviderError,
    ServingReport,
    TaskNotPerformed,
    capability_for_tool,
    checked_arguments,
    delivery_window_min_s,
    serve_mcp_server,
    tool_listings,
    tool_result_value,
)
from agent_client.bridges.mcp_provider_child import StderrLines
from agent_client.protocol import ContractState
from exchange.entrypoints.cli import main
from tests.bridges.tiny_mcp_server import (
    ADD_INPUT_SCHEMA,
    ADD_OUTPUT_SCHEMA,
    FAIL_INPUT_SCHEMA,
    SHOUT_INPUT_SCHEMA,
)
from tests.exchange.conftest import RunningExchange

REPOSITORY = Path(__file__).resolve().parents[2]
TINY_SERVER = (sys.executable, "-m", "tests.bridges.tiny_mcp_server")
GRANT_MILLICREDITS = 100_000
PRICE_MILLICREDITS = 2_000
ADD_PRICE_MILLICREDITS = 3_000
# Short bounds keep the refunds (at the delivery deadline) quick: quotes bind
# 2 s and calls last 2 s at most, so RFQs must allow 4 s for delivery.
QUICK = {"call_timeout_s": 2.0, "quote_validity_s": 2.0}
QUICK_WINDOW_S = 4
# A declined task is refunded by the provider's cancel, well before a deadline this far off.
LONG_WINDOW_S = 120
REFUND_NOW_S = 15
BRIDGE_START_TIMEOUT_S = 30.0
BRIDGE_STOP_TIMEOUT_S = 20.0


def tool(name: str, **fields: Any) -> types.Tool:
    return types.Tool(name=name, input_schema={"type": "object"}, **fields)


# --- the mapping, pure ------------------------------------------------------------------


def test_tool_names_become_capabilities_in_the_exchange_grammar():
    assert capability_for_tool("mcp", "shout") == "mcp.shout"
    assert capability_for_tool("acme.tools", "Get Weather!") == "acme.tools.get_weather_"
    assert capability_for_tool("mcp", "files..read/all") == "mcp.files.read_all"
    assert capability_for_tool("mcp", "...") == "mcp.tool"
    long_a, long_b = (
        capability_for_tool("mcp", "x" * 100 + "a"),
        capability_for_tool("mcp", "x" * 100 + "b"),
    )
    assert len(long_a) == 64 and len(long_b) == 64 and long_a != long_b
    for bad_prefix in ("MCP", "a..b", "", "p" * 60):
        with pytest.raises(McpProviderError):
            capability_for_tool(bad_prefix, "shout")


def test_tools_become_listings_with_their_schemas_and_prices():
    tools = [
        tool("shout", description="Upper-cases text"),
        types.Tool(name="add", input_schema=ADD_INPUT_SCHEMA, output_schema=ADD_OUTPUT_SCHEMA),
        tool("long", description="d" * 2_000),
    ]
    listings = tool_listings(
        tools, prefix="mcp", price_millicredits=1_000, prices_by_tool={"add": 2_500}
    )
    by_tool = {listing.tool_name: listing for listing in listings}
    assert by_tool["shout"].capability == "mcp.shout"
    assert by_tool["shout"].description == "Upper-cases text"
    assert by_tool["shout"].output_schema == {}
    assert by_tool["add"].input_schema == ADD_INPUT_SCHEMA
    assert by_tool["add"].output_schema == ADD_OUTPUT_SCHEMA
    assert by_tool["add"].description == "MCP tool add"
    assert (by_tool["shout"].price_millicredits, by_tool["add"].price_millicredits) == (
        1_000,
        2_500,
    )
    assert len(by_tool["long"].description) == 1_024
    only = tool_listings(tools, prefix="mcp", price_millicredits=1_000, selected=["add"])
    assert [listing.tool_name for listing in only] == ["add"]


def test_unknown_tool_names_and_shared_capabilities_are_refused():
    tools = [tool("shout"), tool("Shout")]
    with pytest.raises(McpProviderError, match=r"both become 'mcp\.shout'"):
        tool_listings(tools, prefix="mcp", price_millicredits=1_000)
    with pytest.raises(McpProviderError, match="no tool named 'whisper'"):
        tool_listings(tools, prefix="mcp", price_millicredits=1_000, selected=["whisper"])
    with pytest.raises(McpProviderError, match="no tool named 'nope'"):
        tool_listings(tools[:1], prefix="mcp", price_millicredits=1, prices_by_tool={"nope": 5})
    huge = tool("huge", output_schema={"type": "object", "description": "x" * 20_000})
    assert tool_listings([huge], prefix="mcp", price_millicredits=1_000) == []


def test_results_deliver_structured_content_or_text_and_errors_raise():
    def text(value: str) -> types.TextContent:
        return types.TextContent(text=value)

    both = types.CallToolResult(content=[text("5")], structured_content={"sum": 5})
    assert tool_result_value("add", both) == {"sum": 5}
    lines = types.CallToolResult(content=[text("a"), text("b")])
    assert tool_result_value("shout", lines) == "a\nb"
    failed = types.CallToolResult(content=[text("boom")], is_error=True)
    with pytest.raises(TaskNotPerformed, match="boom") as raised:
        tool_result_value("fail", failed)
    assert raised.value.cause == "tool_error"


def test_tasks_must_fit_the_input_schema_and_short_windows_are_not_quoted():
    assert checked_arguments("shout", {"text": "hi"}, SHOUT_INPUT_SCHEMA) == {"text": "hi"}
    for task in ({"text": 5}, {}, ["hi"], "hi"):
        with pytest.raises(TaskNotPerformed) as raised:
            checked_arguments("shout", task, SHOUT_INPUT_SCHEMA)
        assert raised.value.cause == "invalid_task"
    assert delivery_window_min_s(call_timeout_s=20.0, quote_validity_s=9.5) == 30


def test_child_stderr_lines_are_cut_and_bounded_per_window():
    lines = StderrLines(line_chars_max=10, lines_per_window_max=3, window_s=10.0)
    assert lines.feed(b"one\ntwo\nthr", now_s=100.0) == ["one", "two"]
    assert lines.feed(b"ee\n" + b"x" * 50 + b"\nfour\n", now_s=101.0) == ["three"]
    assert lines.last_line == "four"
    assert lines.feed(b"five\n", now_s=111.0) == ["(2 stderr lines not logged)", "five"]
    assert lines.feed(b"no end", now_s=112.0) == []
    assert lines.feed(b"", now_s=113.0) == ["no end"]


# --- the bridge in-process over the tiny server, on a real exchange ------------------------


@contextlib.asynccontextmanager
async def running_bridge(
    provider: Agent, **settings: Any
) -> AsyncIterator[tuple[ServingReport, asyncio.Task[None]]]:
    config = McpProviderConfig(
        command=TINY_SERVER, price_millicredits=PRICE_MILLICREDITS, **settings
    )
    stop = asyncio.Event()
    ready: asyncio.Future[ServingReport] = asyncio.get_running_loop().create_future()
    bridge = asyncio.create_task(
        serve_mcp_server(provider, config, stop=stop, on_ready=ready.set_result)
    )
    try:
        done, _ = await asyncio.wait(
            {bridge, ready}, timeout=BRIDGE_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if bridge in done:
            bridge.result()
        assert ready in done, "the bridge did not start serving"
        yield ready.result(), bridge
    finally:
        stop.set()
        with contextlib.suppress(ChildServerError):
            await asyncio.wait_for(bridge, BRIDGE_STOP_TIMEOUT_S)


async def hire(buyer: Agent, capability: str, task: Any, *, delivery_within_s: int = 30) -> Any:
    quotes = await buyer.request_quotes(
        QuoteRequest(
            capability,
            "a task for an MCP tool",
            budget_millicredits=10_000,
            delivery_within_s=delivery_within_s,
            timeout_s=2,
            quotes_max=1,
        )
    )
    assert len(quotes) == 1, f"no quote for {capability}"
    return await buyer.hire(quotes[0], task)


async def test_the_bridge_sells_each_tool_and_a_buyer_hires_shout_and_add(
    exchange: RunningExchange,
):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)
    prices = {"add": ADD_PRICE_MILLICREDITS}
    async with running_bridge(provider, prices_by_tool=prices) as (report, _):
        assert {listing.capability for listing in report.listings} == {
            "mcp.shout",
            "mcp.add",
            "mcp.fail",
        }
        assert report.child_pid is not None
        expected = {
            "mcp.shout": (SHOUT_INPUT_SCHEMA, {}),
            "mcp.add": (ADD_INPUT_SCHEMA, ADD_OUTPUT_SCHEMA),
            "mcp.fail": (FAIL_INPUT_SCHEMA, {}),
        }
        for capability, (input_schema, output_schema) in expected.items():
            (listing,) = (await buyer.search(capability=capability)).listings
            assert listing.provider_id == provider.agent_id
            assert (listing.input_schema, listing.output_schema) == (input_schema, output_schema)

        shout = await hire(buyer, "mcp.shout", {"text": "hi"})
        delivery = await shout.wait_delivery(timeout_s=15)
        assert delivery.result == "HI"
        await shout.accept_delivery(delivery)
        add = await hire(buyer, "mcp.add", {"a": 2, "b": 40})
        assert (await add.wait_delivery(timeout_s=15)).result == {"sum": 42}
        await add.accept_delivery(await add.wait_delivery(timeout_s=15))
        await provider.wait_settled(add.contract_id, timeout_s=15)

    paid = PRICE_MILLICREDITS + ADD_PRICE_MILLICREDITS
    fees = shout.record.fee_millicredits + add.record.fee_millicredits
    assert add.record.price_millicredits == ADD_PRICE_MILLICREDITS
    buyer_balance, provider_balance = await buyer.balance(), await provider.balance()
    assert buyer_balance.available_millicredits == GRANT_MILLICREDITS - paid
    assert buyer_balance.held_millicredits == 0
    assert provider_balance.available_millicredits == paid - fees
    # Stopped: the listings are inactive, so search no longer finds them.
    assert (await buyer.search(capability="mcp.shout")).listings == []
    await exchange.check_invariants()


async def test_a_tool_error_delivers_nothing_and_the_buyer_is_refunded_in_full(
    exchange: RunningExchange,
):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)
    async with running_bridge(provider, **QUICK):
        failing = await hire(buyer, "mcp.fail", {}, delivery_within_s=LONG_WINDOW_S)
        settled = await failing.wait_settled(timeout_s=REFUND_NOW_S)
        assert settled.state == ContractState.REFUNDED
        view = await failing.view()
        assert (view.state, view.result_sha256) == (ContractState.REFUNDED, None)
        assert view.refunded_millicredits == PRICE_MILLICREDITS
        # Not a crash: the bridge goes on serving.
        shout = await hire(buyer, "mcp.shout", {"text": "still here"})
        delivery = await shout.wait_delivery(timeout_s=15)
        assert delivery.result == "STILL HERE"
        await shout.accept_delivery(delivery)

    buyer_balance = await buyer.balance()
    assert buyer_balance.available_millicredits == GRANT_MILLICREDITS - PRICE_MILLICREDITS
    assert buyer_balance.held_millicredits == 0
    net = PRICE_MILLICREDITS - shout.record.fee_millicredits
    assert (await provider.balance()).available_millicredits == net
    await exchange.check_invariants()


async def test_a_task_failing_the_input_schema_never_reaches_the_tool_and_spends_nothing(
    exchange: RunningExchange, caplog: pytest.LogCaptureFixture
):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)
    caplog.set_level(logging.WARNING, logger="agent_client.bridges.mcp_provider")
    async with running_bridge(provider, **QUICK):
        # Too short a delivery window for a 2 s call quoted for 2 s: declined, nothing held.
        short = await buyer.call_for_quotes(
            QuoteRequest(
                "mcp.shout", "x", budget_millicredits=10_000, delivery_within_s=3, timeout_s=2
            )
        )
        assert short.quotes == ()
        assert [decline.provider_id for decline in short.declines] == [provider.agent_id]
        # The exchange does not check tasks against input_schema (docs/PROTOCOL.md
        # 1.8.1): the contract opens, the bridge refuses to call and cancels at once.
        wrong = await hire(buyer, "mcp.shout", {"text": 5}, delivery_within_s=LONG_WINDOW_S)
        settled = await wrong.wait_settled(timeout_s=REFUND_NOW_S)
        assert settled.state == ContractState.REFUNDED
    refusals = [
        record.getMessage() for record in caplog.records if "invalid_task" in record.getMessage()
    ]
    assert refusals and "text: 5 is not of type 'string'" in refusals[0]
    buyer_balance = await buyer.balance()
    assert buyer_balance.available_millicredits == GRANT_MILLICREDITS
    assert buyer_balance.held_millicredits == 0
    assert (await provider.balance()).available_millicredits == 0
    await exchange.check_invariants()


async def test_a_crashed_child_is_reported_and_its_listings_deactivated(
    exchange: RunningExchange,
):
    provider = await exchange.agent()
    buyer = await exchange.agent()
    async with running_bridge(provider) as (report, bridge):
        assert report.child_pid is not None
        os.kill(report.child_pid, signal.SIGKILL)
        with pytest.raises(ChildServerError, match=f"pid {report.child_pid}\\) exited"):
            await asyncio.wait_for(bridge, BRIDGE_STOP_TIMEOUT_S)
    assert (await buyer.search(capability="mcp.shout")).listings == []
    with pytest.raises(ChildServerError, match="cannot start"):
        config = McpProviderConfig(command=("/nonexistent/mcp-server",), price_millicredits=1)
        await serve_mcp_server(provider, config, stop=asyncio.Event())


# --- the real command -------------------------------------------------------------------


async def read_until(stream: asyncio.StreamReader, marker: str, lines: list[str]) -> None:
    while not any(marker in line for line in lines):
        line = await stream.readline()
        if not line:
            raise AssertionError("the command ended early:\n" + "\n".join(lines))
        lines.append(line.decode().rstrip())


def child_pid_in(lines: list[str]) -> int:
    (line,) = [line for line in lines if "child pid " in line]
    return int(line.split("child pid ")[1].split(")")[0])


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def test_the_command_serves_until_sigint_then_stops_its_child_and_exits_0(
    exchange: RunningExchange, tmp_path: Path
):
    keys = AgentKeys.generate()
    keys.save(tmp_path / "provider.seed")
    buyer = await exchange.funded_agent(GRANT_MILLICREDITS)
    command = (
        *(sys.executable, "-m", "exchange.entrypoints.cli", "provide-mcp"),
        *("--key", str(tmp_path / "provider.seed"), "--url", exchange.nats_url),
        *("--exchange-id", exchange.worker.exchange_id, "--price", "2"),
        *("--", *TINY_SERVER),
    )
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        lines: list[str] = []
        await asyncio.wait_for(read_until(process.stdout, "Ctrl-C stops", lines), 60)
        child_pid = child_pid_in(lines)
        assert "  mcp.shout  2 credits  (tool 'shout')" in lines
        contract = await hire(buyer, "mcp.shout", {"text": "hi"})
        delivery = await contract.wait_delivery(timeout_s=15)
        assert delivery.result == "HI"
        await contract.accept_delivery(delivery)

        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), BRIDGE_STOP_TIMEOUT_S)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "stopped: listings deactivated" in stdout.decode()
    assert "tiny MCP server: ready on stdio" in stderr.decode()
    for _ in range(50):
        if process_gone(child_pid):
            break
        await asyncio.sleep(0.1)
    assert process_gone(child_pid)
    assert (await buyer.search(capability="mcp.shout")).listings == []
    assert contract.record.provider_id == keys.agent_id
    provider = await exchange.agent(keys)
    net = PRICE_MILLICREDITS - contract.record.fee_millicredits
    assert (await provider.balance()).available_millicredits == net
    await exchange.check_invariants()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--price", "1"], "give the MCP server's command after --"),
        (["--price", "0.0005", "--", "x"], "at most 3 decimals"),
        (["--price", "two", "--", "x"], "is not a number of credits"),
        (["--price", "1", "--price-for", "shout", "--", "x"], "use TOOL=CREDITS"),
        (["--price", "1", "--call-timeout", "0", "--", "x"], "--call-timeout"),
    ],
)
def test_the_command_refuses_bad_flags_in_one_line_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    arguments = ["provide-mcp", "--key", str(tmp_path / "none.seed"), "--url", "nats://x:1"]
    assert main([*arguments, *flags]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("agentx provide-mcp: ") and message in line
