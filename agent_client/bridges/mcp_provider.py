"""Any MCP server as a paid provider: each of its tools becomes a listing on the exchange.

The bridge is an ordinary provider agent (its own key) in front of an MCP
server it runs as a child (:mod:`agent_client.bridges.mcp_provider_child`).
It lists the server's tools, advertises each as a capability, quotes at the
configured price, and performs each hired task by calling the tool with the
task as its arguments. Two halves:

* **the mapping, pure** — :func:`capability_for_tool` (a tool's name in the
  capability grammar), :func:`tool_listings` (tools → listings: description,
  schemas, price) and :func:`tool_result_value` (a tool's answer → the
  delivered result: its structured content when present, else its text);
* **the serving** — :func:`serve_mcp_server`, over an :class:`~agent_client.Agent`
  and the child's :class:`~mcp.client.session.ClientSession`.

Delivery, retries and deadlines are the exchange's contract rules, as
:meth:`Agent.serve <agent_client.agent.Agent.serve>` applies them: a handler
that raises delivers nothing, so a task the tool cannot perform (an
``isError`` answer, a task failing the tool's input schema, a call past its
timeout, a dead child) is never paid for: the contract refunds the buyer in
full when its delivery deadline passes. Each call is bounded so that it ends
before that deadline: the bridge only quotes RFQs whose delivery window
covers the quote's validity plus the call timeout.

Its errors are in :mod:`agent_client.bridges.mcp_provider_errors`, re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, PaginatedRequestParams, TextContent, Tool

from agent_client import limits
from agent_client.agent import Agent
from agent_client.bridges.mcp_provider_child import ChildServer, open_child_server
from agent_client.bridges.mcp_provider_errors import (
    ChildServerError,
    McpProviderError,
    TaskNotPerformed,
)
from agent_client.errors import AgentClientError, RejectedError
from agent_client.protocol import Rfq
from agent_client.providing import Pricing, TaskHandler
from agent_client.schema_checks import SchemaTooComplex, failing_reasons

__all__ = [
    "ChildServerError",
    "McpProviderConfig",
    "McpProviderError",
    "ServingReport",
    "TaskNotPerformed",
    "ToolListing",
    "capability_for_tool",
    "checked_arguments",
    "delivery_window_min_s",
    "fixed_pricing",
    "serve_mcp_server",
    "tool_listings",
    "tool_result_value",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "mcp"
# The grammar of agent_client.protocol.Capability, restated for one segment.
CAPABILITY_PATTERN: Final = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z")
_OUTSIDE_SEGMENT: Final = re.compile(r"[^a-z0-9_-]+")
# A name cut to fit the capability length gets "-" and this many hex digits
# of its hash, so two long names that share a beginning stay apart.
NAME_HASH_CHARS: Final = 8
# A server's tools are read in at most this many pages, up to this many tools.
TOOL_PAGES_MAX: Final = 20
TOOLS_MAX: Final = 200
TAGS: Final = ("mcp",)
DEACTIVATE_TIMEOUT_S: Final = 10.0
# One task's check against its tool's input schema stops after this long.
TASK_CHECK_BUDGET_S: Final = 1.0
# Defaults of the serving bounds (the command's flags).
CALL_TIMEOUT_DEFAULT_S: Final = 20.0
QUOTE_VALIDITY_DEFAULT_S: Final = 10.0
CALLS_IN_FLIGHT_DEFAULT: Final = 8
STOP_GRACE_DEFAULT_S: Final = 5.0


# --- the mapping (pure) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolListing:
    """One tool as a listing: what is advertised, and which tool a hire calls."""

    tool_name: str
    capability: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    price_millicredits: int


def capability_for_tool(prefix: str, tool_name: str, /) -> str:
    """``prefix.name``: the tool's name lower-cased, every run of other characters made
    ``_`` (dots separate segments, empty ones dropped), cut with a hash suffix to fit
    ``CAPABILITY_LENGTH_MAX``."""
    if not CAPABILITY_PATTERN.match(prefix):
        raise McpProviderError(
            f"prefix {prefix!r} is not a capability: lower-case letters, digits, _ and -, "
            "in segments separated by dots"
        )
    segments = [_OUTSIDE_SEGMENT.sub("_", part) for part in tool_name.lower().split(".")]
    name = ".".join(segment for segment in segments if segment) or "tool"
    room = limits.CAPABILITY_LENGTH_MAX - len(prefix) - 1
    if len(name) > room:
        digest = hashlib.sha256(tool_name.encode()).hexdigest()[:NAME_HASH_CHARS]
        name = name[: room - NAME_HASH_CHARS - 1].rstrip(".") + "-" + digest
    capability = f"{prefix}.{name}"
    if room <= NAME_HASH_CHARS + 1 or not CAPABILITY_PATTERN.match(capability):
        raise McpProviderError(f"prefix {prefix!r} leaves no room for tool names")
    return capability


def tool_listings(
    tools: Sequence[Tool],
    /,
    *,
    prefix: str,
    price_millicredits: int,
    prices_by_tool: Mapping[str, int] | None = None,
    selected: Sequence[str] = (),
) -> list[ToolListing]:
    """The listings for ``tools`` (only the ``selected`` ones, if named), each at its
    price from ``prices_by_tool`` or ``price_millicredits``.

    Refuses names that match no tool and two tools that would share a
    capability; a tool whose schema is over ``SCHEMA_BYTES_MAX`` is left out
    (logged): the exchange would refuse it.
    """
    prices_by_tool = prices_by_tool or {}
    names = [tool.name for tool in tools]
    unknown = sorted((set(selected) | set(prices_by_tool)) - set(names))
    if unknown:
        raise McpProviderError(
            f"no tool named {', '.join(map(repr, unknown))}; the server has "
            f"{', '.join(map(repr, names)) or 'no tools'}"
        )
    listings: dict[str, ToolListing] = {}
    for tool in tools:
        if selected and tool.name not in selected:
            continue
        listing = _listing(tool, prefix, prices_by_tool.get(tool.name, price_millicredits))
        if listing is None:
            continue
        if (other := listings.get(listing.capability)) is not None:
            raise McpProviderError(
                f"tools {other.tool_name!r} and {tool.name!r} both become "
                f"{listing.capability!r}; choose one with --tool"
            )
        listings[listing.capability] = listing
    return list(listings.values())


def _listing(tool: Tool, prefix: str, price_millicredits: int) -> ToolListing | None:
    if not 1 <= price_millicredits <= limits.PRICE_MILLICREDITS_MAX:
        raise McpProviderError(f"the price of {tool.name!r} is not a valid price")
    input_schema = dict(tool.input_schema)
    output_schema = dict(tool.output_schema or {})
    for schema in (input_schema, output_schema):
        if len(msgspec.json.encode(schema)) > limits.SCHEMA_BYTES_MAX:
            log.warning("left out tool %r: a schema over %d B", tool.name, limits.SCHEMA_BYTES_MAX)
            return None
    description = (tool.description or tool.title or f"MCP tool {tool.name}").strip()
    if len(description) > limits.TEXT_LENGTH_MAX:
        description = description[: limits.TEXT_LENGTH_MAX - 1] + "…"
    return ToolListing(
        tool_name=tool.name,
        capability=capability_for_tool(prefix, tool.name),
        description=description,
        input_schema=input_schema,
        output_schema=output_schema,
        price_millicredits=price_millicredits,
    )


def tool_result_value(tool_name: str, result: CallToolResult, /) -> Any:
    """What is delivered for a tool's answer: its structured content when present, else
    its text blocks joined by newlines (a result with no text: its content blocks as
    JSON). An ``isError`` answer raises :class:`TaskNotPerformed`."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error:
        detail = " ".join(texts)[:200] or "the tool answered with an error"
        raise TaskNotPerformed(tool_name, "tool_error", detail)
    if result.structured_content is not None:
        return result.structured_content
    if texts or not result.content:
        return "\n".join(texts)
    return [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]


def checked_arguments(tool_name: str, task: Any, input_schema: dict[str, Any], /) -> dict[str, Any]:
    """The task as the tool's arguments: a JSON object valid against its input schema.

    The check is bounded (agent_client/schema_checks.py: RE2 patterns, a time
    budget), as the task comes from the buyer; it is synchronous, so the
    bridge runs it in a worker thread.
    """
    if not isinstance(task, dict):
        raise TaskNotPerformed(tool_name, "invalid_task", "the task must be a JSON object")
    try:
        reasons = failing_reasons(task, input_schema, time_budget_s=TASK_CHECK_BUDGET_S)
    except SchemaTooComplex as exc:
        raise TaskNotPerformed(tool_name, "invalid_task", f"cannot be checked: {exc}") from exc
    if reasons:
        raise TaskNotPerformed(tool_name, "invalid_task", "; ".join(reasons))
    return task


def delivery_window_min_s(*, call_timeout_s: float, quote_validity_s: float) -> int:
    """The shortest delivery window quoted: a hire comes at most ``quote_validity_s``
    after the quote, and its call ends at most ``call_timeout_s`` after the hire, so
    every call ends by the contract's delivery deadline."""
    return math.ceil(call_timeout_s + quote_validity_s)


def fixed_pricing(price_millicredits: int, *, delivery_window_min_s: int) -> Pricing:
    """The listing's price, for RFQs whose delivery window the calls fit in (others declined)."""

    def price(rfq: Rfq) -> int | None:
        return price_millicredits if rfq.delivery_within_s >= delivery_window_min_s else None

    return price


# --- the serving --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class McpProviderConfig:
    """What to run and how to sell it. Prices are in millicredits."""

    command: tuple[str, ...]
    price_millicredits: int
    prefix: str = DEFAULT_PREFIX
    prices_by_tool: Mapping[str, int] = field(default_factory=dict)
    # Only these tools (all when empty).
    tools: tuple[str, ...] = ()
    call_timeout_s: float = CALL_TIMEOUT_DEFAULT_S
    quote_validity_s: float = QUOTE_VALIDITY_DEFAULT_S
    calls_in_flight_max: int = CALLS_IN_FLIGHT_DEFAULT
    # On stop, calls in flight get this long to finish before the server stops.
    stop_grace_s: float = STOP_GRACE_DEFAULT_S

    def __post_init__(self) -> None:
        assert 0 < self.call_timeout_s <= limits.DELIVERY_DEADLINE_MAX_S
        assert 0 < self.quote_validity_s <= limits.QUOTE_VALIDITY_MAX_S
        assert 1 <= self.calls_in_flight_max <= limits.AGENT_HANDLER_CONCURRENCY_MAX
        assert 0 <= self.stop_grace_s <= 60


@dataclass(frozen=True, slots=True)
class ServingReport:
    """What the bridge serves, once it does: the listings and the child's PID."""

    listings: tuple[ToolListing, ...]
    child_pid: int | None
    delivery_window_min_s: int


class ToolCaller:
    """Performs hired tasks by calling tools: bounded in number and in time."""

    def __init__(self, session: ClientSession, config: McpProviderConfig) -> None:
        self._session = session
        self._call_timeout_s = config.call_timeout_s
        self._slots = asyncio.Semaphore(config.calls_in_flight_max)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def handler_for(self, listing: ToolListing) -> TaskHandler:
        async def perform(task: Any) -> Any:
            return await self.perform(listing, task)

        return perform

    async def perform(self, listing: ToolListing, task: Any) -> Any:
        tool_name = listing.tool_name
        try:
            arguments = await asyncio.to_thread(
                checked_arguments, tool_name, task, listing.input_schema
            )
            self._in_flight += 1
            self._idle.clear()
            try:
                result = await self._call(tool_name, arguments)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
            return tool_result_value(tool_name, result)
        except TaskNotPerformed as exc:
            log.warning("%s; nothing delivered: the contract is cancelled, the buyer refunded", exc)
            raise

    async def _call(self, tool_name: str, arguments: dict[str, Any]) -> CallToolResult:
        try:
            async with asyncio.timeout(self._call_timeout_s):
                async with self._slots:
                    return await self._session.call_tool(
                        tool_name, arguments, read_timeout_seconds=self._call_timeout_s
                    )
        except TimeoutError as exc:
            detail = f"no answer within {self._call_timeout_s:g} s"
            raise TaskNotPerformed(tool_name, "timeout", detail) from exc
        except (MCPError, RuntimeError) as exc:
            raise TaskNotPerformed(tool_name, "server_error", str(exc)[:200]) from exc

    async def wait_idle(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)


async def serve_mcp_server(
    agent: Agent,
    config: McpProviderConfig,
    /,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[ServingReport], None] | None = None,
) -> None:
    """Run the MCP server, sell its tools until ``stop`` is set, then deactivate the
    listings and stop the server. Raises :class:`ChildServerError` if the server
    exits on its own (the listings are deactivated first)."""
    async with open_child_server(config.command) as child:
        listings = tool_listings(
            await _list_tools(child.session),
            prefix=config.prefix,
            price_millicredits=config.price_millicredits,
            prices_by_tool=config.prices_by_tool,
            selected=config.tools,
        )
        caller = ToolCaller(child.session, config)
        advertised: list[ToolListing] = []
        try:
            await _advertise_and_serve(agent, listings, caller, config, advertised)
            if on_ready is not None:
                on_ready(_report(advertised, child, config))
            await _first_of(stop.wait(), child.exited.wait())
        finally:
            await _deactivate(agent, advertised)
            await caller.wait_idle(config.stop_grace_s)
        if child.exited.is_set() and not stop.is_set():
            await child.wait_stderr_end()
            raise ChildServerError(
                f"the MCP server (pid {child.pid}) exited ({child.exit_cause()}); "
                "its listings are deactivated",
                pid=child.pid,
                cause=child.stderr.last_line,
            )


async def _advertise_and_serve(
    agent: Agent,
    listings: Sequence[ToolListing],
    caller: ToolCaller,
    config: McpProviderConfig,
    advertised: list[ToolListing],
) -> None:
    window_min_s = delivery_window_min_s(
        call_timeout_s=config.call_timeout_s, quote_validity_s=config.quote_validity_s
    )
    for listing in listings:
        try:
            await agent.advertise(
                listing.capability,
                description=listing.description,
                price_millicredits=listing.price_millicredits,
                input_schema=listing.input_schema,
                output_schema=listing.output_schema,
                tags=TAGS,
            )
        except RejectedError as exc:
            log.warning("left out tool %r: the exchange refused it: %s", listing.tool_name, exc)
            continue
        advertised.append(listing)
        await agent.serve(
            listing.capability,
            caller.handler_for(listing),
            pricing=fixed_pricing(listing.price_millicredits, delivery_window_min_s=window_min_s),
            quote_validity_s=config.quote_validity_s,
        )
    if not advertised:
        raise McpProviderError("no tool of the MCP server could be listed")


def _report(
    listings: Sequence[ToolListing], child: ChildServer, config: McpProviderConfig
) -> ServingReport:
    return ServingReport(
        listings=tuple(listings),
        child_pid=child.pid,
        delivery_window_min_s=delivery_window_min_s(
            call_timeout_s=config.call_timeout_s, quote_validity_s=config.quote_validity_s
        ),
    )


async def _list_tools(session: ClientSession) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(TOOL_PAGES_MAX):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None or len(tools) >= TOOLS_MAX:
            break
    if cursor is not None:
        log.warning("the MCP server lists more tools: only the first %d are sold", len(tools))
    return tools[:TOOLS_MAX]


async def _first_of(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _deactivate(agent: Agent, listings: Sequence[ToolListing]) -> None:
    """Hide every listing (no new hires); a failure is logged, the others still go."""
    for listing in listings:
        try:
            async with asyncio.timeout(DEACTIVATE_TIMEOUT_S):
                await agent.deactivate(listing.capability)
        except (AgentClientError, TimeoutError) as exc:
            log.warning("could not deactivate %s: %s", listing.capability, exc)
