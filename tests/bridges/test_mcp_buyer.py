"""The buyer's MCP server (``agentx mcp``) as an MCP host drives it.

Proves that an LLM host, through the official SDK's client, can trade on a
real exchange (real NATS, a fresh database, a provider ``Agent`` serving a
capability with an input schema): over streamable HTTP, the whole deal
(find_services → get_quotes → hire_<capability> → wait_result →
accept_delivery) moves exactly the price from the buyer and the net to the
provider; as a real ``agentx mcp`` subprocess over stdio, the tools list and
answer; and bad calls (an unknown tool, a task failing the listing's
schema, a price over --max-price-credits, a price over the approval
threshold) are clear tool errors or results and spend nothing. The pure
parts (the task check, the argument decoding) are tested without MCP.
Every money test ends with the exchange's ledger invariants.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agent_client import Agent
from agent_client.bridges.mcp_buyer import (
    BuyerSettings,
    BuyerTools,
    HttpService,
    buyer_server,
    new_http_token,
)
from agent_client.bridges.mcp_buyer_content import (
    GetQuotesArguments,
    credits_to_millicredits,
    decode_arguments,
    delivery_text,
    hire_tool_name,
)
from agent_client.bridges.mcp_buyer_schema import task_problems
from tests.bridges.bridge_helpers import (
    BUYER_GRANT_MILLICREDITS,
    CAPABILITY,
    INPUT_SCHEMA,
    PRICE_MILLICREDITS,
    PROCESS_TIMEOUT_S,
    approve_the_waiting_hire,
    buyer_needing_approval,
    serving_provider,
)
from tests.exchange.conftest import RunningExchange
from tests.portal.conftest import Harness

STATIC_TOOL_NAMES = {
    "find_services",
    "get_quotes",
    "hire",
    "wait_result",
    "accept_delivery",
    "reject_delivery",
    "balance",
    "recent_transactions",
}


async def _available(agent: Agent) -> tuple[int, int]:
    balance = await agent.balance()
    return balance.available_millicredits, balance.held_millicredits


async def _quote_id(client: Client, *, budget_credits: float = 5) -> str:
    quotes = await client.call_tool(
        "get_quotes",
        {"capability": CAPABILITY, "budget_credits": budget_credits, "timeout_s": 1.5},
    )
    assert not quotes.is_error, quotes.content
    assert quotes.structured_content is not None
    return str(quotes.structured_content["quotes"][0]["quote_id"])


def _text(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


# --- the whole deal over streamable HTTP ------------------------------------------


async def _refused_without_the_token(url: str, token: str) -> None:
    """Whoever reaches the port but lacks the token is answered 401 and reaches no tool."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "stranger", "version": "0"}},
    }  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        for authorization in (None, "Bearer wrong", f"Basic {token}", f"Bearer {token}x"):
            sent = headers | ({"Authorization": authorization} if authorization else {})
            answer = await http.post(url, json=initialize, headers=sent)
            assert answer.status_code == 401, (authorization, answer.status_code)
            assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_a_host_completes_a_whole_deal_over_streamable_http(exchange: RunningExchange):
    provider = await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    token = new_http_token()
    server = buyer_server(BuyerTools(buyer, settings=BuyerSettings()))
    service = HttpService(server, port=0, token=token)
    url = await service.start()
    try:
        await _refused_without_the_token(url, token)
        with_token = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with Client(streamable_http_client(url, http_client=with_token)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            hire_tool = tools[hire_tool_name(CAPABILITY)]
            assert set(tools) >= STATIC_TOOL_NAMES
            assert hire_tool.input_schema["properties"]["task"] == INPUT_SCHEMA

            found = await client.call_tool("find_services", {"capability_prefix": "text."})
            assert found.structured_content is not None
            [listing] = found.structured_content["listings"]
            assert listing["provider_id"] == provider.agent_id
            assert listing["input_schema"] == INPUT_SCHEMA
            assert listing["price"]["millicredits"] == PRICE_MILLICREDITS

            quote_id = await _quote_id(client)
            hired = await client.call_tool(
                hire_tool.name, {"quote_id": quote_id, "task": {"text": "hi"}}
            )
            assert not hired.is_error, _text(hired)
            assert hired.structured_content is not None
            contract_id = hired.structured_content["contract_id"]

            result = await client.call_tool(
                "wait_result", {"contract_id": contract_id, "timeout_s": 20}
            )
            assert not result.is_error, _text(result)
            assert result.content[0].text == '{"upper":"HI"}'
            assert result.structured_content is not None
            assert result.structured_content["result"] == {"upper": "HI"}

            accepted = await client.call_tool("accept_delivery", {"contract_id": contract_id})
            assert not accepted.is_error, _text(accepted)
            assert accepted.structured_content is not None
            assert accepted.structured_content["state"] == "released"

            balance = await client.call_tool("balance", {})
            assert balance.structured_content is not None
            assert balance.structured_content["held"]["millicredits"] == 0
            history = await client.call_tool("recent_transactions", {"limit": 5})
            assert history.structured_content is not None
            assert history.structured_content["transactions"]
    finally:
        await service.stop()
    view = await buyer.contract(contract_id)
    assert view.seal_result
    assert await _available(buyer) == (BUYER_GRANT_MILLICREDITS - PRICE_MILLICREDITS, 0)
    assert view.net_millicredits is not None and 0 < view.net_millicredits <= PRICE_MILLICREDITS
    assert await _available(provider) == (view.net_millicredits, 0)
    await exchange.check_invariants()


# --- a real `agentx mcp` over stdio -----------------------------------------------


async def test_agentx_mcp_serves_a_host_over_stdio(exchange: RunningExchange, tmp_path: Path):
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    seed = tmp_path / "buyer.seed"
    exchange.keys_of(buyer).save(seed)
    agentx = Path(sys.executable).parent / "agentx"
    command = [str(agentx), "mcp", "--key", str(seed), "--url", exchange.nats_url]
    parameters = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(parameters, read_timeout_seconds=PROCESS_TIMEOUT_S) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        balance = await client.call_tool("balance", {})
    assert names >= STATIC_TOOL_NAMES
    assert not balance.is_error, _text(balance)
    assert balance.structured_content is not None
    assert balance.structured_content["agent_id"] == buyer.agent_id
    assert balance.structured_content["available"]["millicredits"] == BUYER_GRANT_MILLICREDITS
    assert "Available: 100 credits" in _text(balance)
    await exchange.check_invariants()


# --- bad calls: clear answers, nothing spent ---------------------------------------


async def test_bad_calls_are_clear_tool_errors_and_spend_nothing(exchange: RunningExchange):
    provider = await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    tools = BuyerTools(buyer, settings=BuyerSettings(max_price_millicredits=PRICE_MILLICREDITS))
    async with Client(buyer_server(tools)) as client:
        hire_name = hire_tool_name(CAPABILITY)
        assert hire_name in {tool.name for tool in (await client.list_tools()).tools}

        unknown = await client.call_tool("steal_credits", {})
        assert unknown.is_error
        assert "Unknown tool 'steal_credits'" in _text(unknown)

        quote_id = await _quote_id(client, budget_credits=2)
        bad_task = await client.call_tool(hire_name, {"quote_id": quote_id, "task": {"txt": 1}})
        assert bad_task.is_error
        assert "does not match the listing's input schema" in _text(bad_task)
        assert "'text' is a required property" in _text(bad_task)
        assert "'txt' unexpected" in _text(bad_task)

        over_budget = await client.call_tool(
            "get_quotes", {"capability": CAPABILITY, "budget_credits": 2.5}
        )
        assert over_budget.is_error
        assert "ceiling of 2 credits" in _text(over_budget)

        unknown_quote = await client.call_tool("hire", {"quote_id": "q999", "task": {"text": "a"}})
        assert unknown_quote.is_error
        assert "No quote 'q999'" in _text(unknown_quote)

        not_read = await client.call_tool("accept_delivery", {"contract_id": "c-unknown"})
        assert not_read.is_error
        assert "wait_result" in _text(not_read)

        wrong_type = await client.call_tool("recent_transactions", {"limit": "ten"})
        assert wrong_type.is_error
        assert "invalid arguments" in _text(wrong_type)
    assert await _available(buyer) == (BUYER_GRANT_MILLICREDITS, 0)
    assert await _available(provider) == (0, 0)
    await exchange.check_invariants()


async def test_a_quoted_price_above_the_ceiling_is_refused_at_hire(exchange: RunningExchange):
    await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    tools = BuyerTools(buyer, settings=BuyerSettings())
    async with Client(buyer_server(tools)) as client:
        quote_id = await _quote_id(client, budget_credits=2)
        # get_quotes never asks above the ceiling, so a quote over it is only
        # possible if the ceiling is lower at hire: the hire checks it again.
        tools._settings = BuyerSettings(max_price_millicredits=1_500)
        refused = await client.call_tool("hire", {"quote_id": quote_id, "task": {"text": "a"}})
    assert refused.is_error
    assert "The price of 2 credits is above this server's ceiling of 1.5 credits" in _text(refused)
    assert await _available(buyer) == (BUYER_GRANT_MILLICREDITS, 0)
    await exchange.check_invariants()


async def test_a_price_above_the_approval_threshold_needs_the_humans_approval(
    exchange: RunningExchange,
):
    provider = await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    settings = BuyerSettings(approval_above_millicredits=1_000)
    async with Client(buyer_server(BuyerTools(buyer, settings=settings))) as client:
        quote_id = await _quote_id(client)
        asked = await client.call_tool("hire", {"quote_id": quote_id, "task": {"text": "a"}})
    assert not asked.is_error
    assert asked.structured_content is not None
    assert asked.structured_content["status"] == "needs_approval"
    assert _text(asked).startswith("Needs approval: 2 credits is above the 1 credits")
    assert await _available(buyer) == (BUYER_GRANT_MILLICREDITS, 0)
    assert await _available(provider) == (0, 0)
    await exchange.check_invariants()


async def test_the_portals_approval_threshold_waits_for_the_human_then_the_same_quote_hires(
    harness: Harness,
):
    user, buyer = await buyer_needing_approval(harness, approval_threshold_millicredits=1_000)
    async with Client(buyer_server(BuyerTools(buyer, settings=BuyerSettings()))) as client:
        quote_id = await _quote_id(client)
        waiting = await client.call_tool("hire", {"quote_id": quote_id, "task": {"text": "a"}})
        assert not waiting.is_error, _text(waiting)
        assert _text(waiting).startswith("Waiting for your human's approval in the portal")
        assert waiting.structured_content is not None
        assert waiting.structured_content["status"] == "waiting_for_approval"
        assert await _available(buyer) == (BUYER_GRANT_MILLICREDITS, 0)
        await approve_the_waiting_hire(harness, user)
        hired = await client.call_tool("hire", {"quote_id": quote_id, "task": {"text": "a"}})
        assert not hired.is_error, _text(hired)
    assert await _available(buyer) == (
        BUYER_GRANT_MILLICREDITS - PRICE_MILLICREDITS,
        PRICE_MILLICREDITS,
    )
    await harness.check_invariants()


# --- the pure parts -----------------------------------------------------------------


def test_a_task_is_checked_against_the_listing_schema_in_plain_words():
    assert task_problems({"text": "ok"}, INPUT_SCHEMA) == []
    assert task_problems("anything", {}) == []
    problems = task_problems({"text": 5, "extra": True}, INPUT_SCHEMA)
    assert "(root): Additional properties are not allowed ('extra' unexpected)" in problems
    assert "text: 5 is not of type 'string'" in problems


def test_a_pattern_runs_on_re2_and_an_exploding_schema_stops_at_its_budget():
    # Catastrophic for a backtracking engine, linear on RE2.
    pattern_schema = {"type": "string", "pattern": "^(a+)+$"}
    assert task_problems("a" * 5_000 + "!", pattern_schema)
    exploding: dict[str, Any] = {
        "$defs": {"node": {"anyOf": [{"$ref": "#/$defs/node"}, {"$ref": "#/$defs/node"}]}},
        "$ref": "#/$defs/node",
    }
    [problem] = task_problems({"x": 1}, exploding, time_budget_s=0.2)
    assert problem.startswith("the task could not be checked against the listing's input schema")


def test_oversized_tasks_are_refused_before_any_schema_work():
    [problem] = task_problems("x" * 70_000, INPUT_SCHEMA)
    assert "at most 65,536" in problem


@pytest.mark.parametrize(
    ("credits", "millicredits"), [(2.5, 2_500), (10, 10_000), (0.001, 1), (0.0001, None)]
)
def test_credits_become_exact_millicredits(credits: float, millicredits: int | None):
    assert credits_to_millicredits(credits) == millicredits


def test_arguments_decode_or_say_what_is_wrong_and_results_become_text():
    wrong = decode_arguments({"capability": "Bad Name", "budget_credits": 1}, GetQuotesArguments)
    assert isinstance(wrong, str) and "$.capability" in wrong
    assert hire_tool_name("text.upper") == "hire_text_upper"
    assert delivery_text("plain") == "plain"
    assert delivery_text({"a": [1, 2]}) == '{"a":[1,2]}'
