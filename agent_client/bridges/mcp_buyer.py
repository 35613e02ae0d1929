"""A buyer's MCP server: an LLM agent trades through the exchange with MCP tools.

The server is an ordinary exchange agent (its key, its credits, its human's
spending controls). Its tools: ``find_services``, ``get_quotes``, ``hire``
(and one ``hire_<capability>`` tool per recent listing, whose ``task``
schema is the listing's input schema), ``wait_result``, ``accept_delivery``,
``reject_delivery``, ``balance`` and ``recent_transactions``::

    agent = await Agent.connect(url, AgentKeys.load("buyer.seed"))
    server = buyer_server(BuyerTools(agent, settings=BuyerSettings()))
    await serve_stdio(server)          # or HttpService(server, port=0)

Money moves in ``hire`` only, after every check that can refuse it: the
quote is known and unexpired, its price is within this server's ceiling
(``max_price_millicredits``) and approval threshold, and the task fits the
listing's input schema. The exchange then applies the human's controls
(limits, approvals, freeze); a ``pending_approval`` refusal comes back as a
"waiting for your human's approval" result. Every failure is a tool error in
plain words (never a traceback), and spends nothing.

State between calls (quotes by id, results read) lives in this process,
bounded: at most QUOTES_KEPT_MAX quotes (expired ones and then the oldest
dropped) and DELIVERIES_KEPT_MAX results.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.stdio import stdio_server
from msgspec import Struct

from agent_client.agent import Agent
from agent_client.bridges.mcp_buyer_content import (
    HIRE_TOOL_PREFIX,
    STATIC_TOOLS,
    AcceptArguments,
    BalanceArguments,
    FindServicesArguments,
    GetQuotesArguments,
    HireArguments,
    RejectArguments,
    ToolOutcome,
    TransactionsArguments,
    WaitResultArguments,
    balance_view,
    contract_view,
    credits_to_millicredits,
    decode_arguments,
    delivery_text,
    hire_tool_name,
    hire_tool_schema,
    listing_view,
    quote_view,
    tool_schema,
    transaction_view,
)
from agent_client.bridges.mcp_buyer_schema import check_task
from agent_client.contracts import Delivery
from agent_client.credit_text import MILLICREDITS_PER_CREDIT, format_millicredits
from agent_client.errors import AgentClientError, ExchangeError, RefusedError, RequestTimeout
from agent_client.http_listeners import listening_socket
from agent_client.offers import QuoteRequest, ReceivedQuote
from agent_client.protocol import ErrorCode, Listing

__all__ = [
    "HTTP_TOKEN_CHARS_MIN",
    "BearerTokenGate",
    "BuyerSettings",
    "BuyerTools",
    "HttpService",
    "buyer_server",
    "call_result",
    "new_http_token",
    "serve_stdio",
]

log = logging.getLogger(__name__)

_S = TypeVar("_S", bound=Struct)

QUOTES_KEPT_MAX = 100
DELIVERIES_KEPT_MAX = 100
HIRE_TOOLS_MAX = 50
QUOTES_PER_REQUEST_MAX = 10
# find_services with a capability prefix filters one page of text matches here.
PREFIX_CANDIDATES_MAX = 100
SEARCH_TEXT_LENGTH_MAX = 128
DEFAULT_MAX_PRICE_MILLICREDITS = 10 * MILLICREDITS_PER_CREDIT
SERVER_NAME = "agentx-buyer"
HTTP_HOST = "127.0.0.1"
HTTP_PATH = "/mcp"
HTTP_START_TIMEOUT_S = 10.0
# Shorter tokens are refused: 32 URL-safe characters carry 192 bits.
HTTP_TOKEN_CHARS_MIN = 32

INSTRUCTIONS = (
    "Buy services on Agent Exchange with this agent's credits (1 credit = $0.10): "
    "find_services, then get_quotes, then hire (or hire_<capability>) with a quote_id and a "
    "task matching the listing's input_schema, then wait_result, then accept_delivery or "
    "reject_delivery. The price is held in escrow until you accept."
)


@dataclass(frozen=True, slots=True)
class BuyerSettings:
    """What the server may spend, on top of the human's controls on the exchange.

    * ``max_price_millicredits``: no hire (nor a quote budget) above it.
    * ``approval_above_millicredits``: a hire above it is not made; the tool
      answers that the human must approve (None: no such threshold here).
    * ``seal_result``: results sealed to this agent's key (the exchange never
      sees them, nor checks them against the output schema).
    * ``hire_tools_max``: how many recent listings get a hire_<capability> tool.
    """

    max_price_millicredits: int = DEFAULT_MAX_PRICE_MILLICREDITS
    approval_above_millicredits: int | None = None
    seal_result: bool = True
    hire_tools_max: int = HIRE_TOOLS_MAX

    def __post_init__(self) -> None:
        assert self.max_price_millicredits >= 1
        assert self.approval_above_millicredits is None or self.approval_above_millicredits >= 0
        assert 0 <= self.hire_tools_max <= 100


class _Refusal(Exception):
    """A tool's plain-worded refusal (becomes an error result; nothing was spent)."""

    def __init__(self, message: str, /, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class BuyerTools:
    """The tools over one :class:`Agent`, with the state they share between calls."""

    def __init__(self, agent: Agent, /, *, settings: BuyerSettings) -> None:
        self._agent = agent
        self._settings = settings
        self._quotes: OrderedDict[str, ReceivedQuote] = OrderedDict()
        self._quote_numbers = itertools.count(1)
        self._deliveries: OrderedDict[str, Delivery] = OrderedDict()
        # hire_<capability> tool name -> the newest listing of that capability.
        self._hire_listings: dict[str, Listing] = {}

    # --- the tool list -------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        """The fixed tools, then a hire tool per capability of the newest listings."""
        await self._refresh_hire_tools()
        fixed = [
            types.Tool(name=name, description=description, input_schema=tool_schema(arguments))
            for name, (arguments, description) in STATIC_TOOLS.items()
        ]
        return fixed + [
            types.Tool(
                name=name,
                description=self._hire_description(listing),
                input_schema=hire_tool_schema(listing.input_schema),
            )
            for name, listing in self._hire_listings.items()
        ]

    def input_schema_of(self, name: str, /) -> dict[str, Any] | None:
        """A tool's input schema by name (None when unknown), without asking the exchange."""
        if name in STATIC_TOOLS:
            return tool_schema(STATIC_TOOLS[name][0])
        listing = self._hire_listings.get(name)
        return None if listing is None else hire_tool_schema(listing.input_schema)

    async def _refresh_hire_tools(self) -> None:
        if self._settings.hire_tools_max == 0:
            return
        try:
            page = await self._agent.search(sort="newest", limit=self._settings.hire_tools_max)
        except AgentClientError as exc:
            # The fixed tools still work; the hire tools come back on the next listing.
            log.warning("listing the hire tools failed: %s", exc)
            return
        listings: dict[str, Listing] = {}
        for listing in page.listings:
            listings.setdefault(hire_tool_name(listing.capability), listing)
        self._hire_listings = listings

    def _hire_description(self, listing: Listing) -> str:
        ceiling = format_millicredits(self._settings.max_price_millicredits)
        return (
            f"Hire a provider of {listing.capability}: {listing.description[:200]} (listed at "
            f"{format_millicredits(listing.price_millicredits)} credits). First call get_quotes "
            f"with capability {listing.capability!r} for a quote_id. `task` must match this "
            f"schema; it is checked before any money moves. Spends at most {ceiling} credits."
        )

    # --- calling a tool ------------------------------------------------------------

    async def call(self, name: str, arguments: dict[str, Any] | None, /) -> ToolOutcome:
        """Run one tool; every failure becomes an error outcome in plain words."""
        try:
            return await self._dispatch(name, arguments)
        except _Refusal as refusal:
            return ToolOutcome(refusal.message, refusal.data, is_error=True)
        except RequestTimeout:
            return _error(
                "The exchange did not answer in time; nothing is known to have changed. "
                "Try again (a hire with the same quote_id never opens two contracts)."
            )
        except ExchangeError as exc:
            return _error(f"The exchange refused ({exc.code}): {exc.message}", code=exc.code)
        except AgentClientError as exc:
            return _error(f"The request failed: {exc}")
        except Exception:
            log.exception("tool %s failed", name)
            return _error(f"The bridge failed while running {name}; its log has the details.")

    async def _dispatch(self, name: str, arguments: dict[str, Any] | None) -> ToolOutcome:
        if name.startswith(HIRE_TOOL_PREFIX) and name not in STATIC_TOOLS:
            listing = self._hire_listings.get(name)
            if listing is None:
                raise _Refusal(f"Unknown tool {name!r}: list the tools again for current listings.")
            return await self._hire(_decoded(arguments, HireArguments), listing.capability)
        if name == "find_services":
            return await self._find_services(_decoded(arguments, FindServicesArguments))
        if name == "get_quotes":
            return await self._get_quotes(_decoded(arguments, GetQuotesArguments))
        if name == "hire":
            return await self._hire(_decoded(arguments, HireArguments), None)
        if name == "wait_result":
            return await self._wait_result(_decoded(arguments, WaitResultArguments))
        if name == "accept_delivery":
            return await self._accept(_decoded(arguments, AcceptArguments))
        if name == "reject_delivery":
            return await self._reject(_decoded(arguments, RejectArguments))
        if name == "balance":
            _decoded(arguments, BalanceArguments)
            balance = balance_view(await self._agent.balance())
            text = f"Available: {balance['available']['credits']} credits; held in escrow: "
            return ToolOutcome(text + f"{balance['held']['credits']} credits.", balance)
        if name == "recent_transactions":
            return await self._transactions(_decoded(arguments, TransactionsArguments))
        known = ", ".join([*STATIC_TOOLS, *self._hire_listings])
        raise _Refusal(f"Unknown tool {name!r}. The tools are: {known}.")

    # --- the tools -----------------------------------------------------------------

    async def _find_services(self, arguments: FindServicesArguments) -> ToolOutcome:
        prefix = arguments.capability_prefix
        words = " ".join(filter(None, [arguments.query, prefix.replace(".", " ").strip()]))
        if len(words) > SEARCH_TEXT_LENGTH_MAX:
            raise _Refusal(f"query and capability_prefix are over {SEARCH_TEXT_LENGTH_MAX} chars")
        page = await self._agent.search(
            text=words or None,
            tags=arguments.tags,
            limit=PREFIX_CANDIDATES_MAX if prefix else arguments.max_results,
        )
        found = [listing for listing in page.listings if listing.capability.startswith(prefix)]
        views = [listing_view(listing) for listing in found[: arguments.max_results]]
        lines = [
            f"- {view['capability']} at {view['price']['credits']} credits by "
            f"{view['provider_id']}: {view['description'][:120]}"
            for view in views
        ]
        text = f"{len(views)} listing(s) found." + "".join("\n" + line for line in lines)
        return ToolOutcome(text, {"listings": views})

    async def _get_quotes(self, arguments: GetQuotesArguments) -> ToolOutcome:
        budget = credits_to_millicredits(arguments.budget_credits)
        if budget is None or budget < 1:
            raise _Refusal("budget_credits must be a whole number of millicredits (0.001 credit)")
        ceiling = self._settings.max_price_millicredits
        if budget > ceiling:
            raise _Refusal(_over_ceiling("A budget of", budget, ceiling))
        try:
            request = QuoteRequest(
                arguments.capability,
                arguments.task_summary or f"a task for {arguments.capability}",
                budget_millicredits=budget,
                delivery_within_s=arguments.delivery_within_s,
                timeout_s=arguments.timeout_s,
                quotes_max=await self._providers_listing(arguments.capability),
            )
        except ValueError as exc:
            raise _Refusal(f"Invalid quote request: {exc}") from exc
        collection = await self._agent.call_for_quotes(request)
        views = [quote_view(self._keep_quote(quote), quote) for quote in collection.quotes]
        declines = [f"{decline.provider_id}: {decline.reason}" for decline in collection.declines]
        lines = [
            f"- {view['quote_id']}: {view['price']['credits']} credits from {view['provider_id']}"
            for view in views
        ]
        text = f"{len(views)} quote(s) for {arguments.capability}." + "".join(
            "\n" + line for line in lines
        )
        if declines:
            text += f"\n{len(declines)} provider(s) declined."
        return ToolOutcome(text, {"quotes": views, "declines": declines})

    async def _providers_listing(self, capability: str) -> int:
        """How many quotes to wait for: one per provider listing the capability (at most
        QUOTES_PER_REQUEST_MAX, at least one), so that the RFQ ends when every provider
        has answered instead of always waiting out its timeout."""
        try:
            found = await self._agent.search(capability=capability, limit=QUOTES_PER_REQUEST_MAX)
        except AgentClientError:
            return QUOTES_PER_REQUEST_MAX
        providers = {listing.provider_id for listing in found.listings}
        return max(1, min(QUOTES_PER_REQUEST_MAX, len(providers)))

    async def _hire(self, arguments: HireArguments, capability: str | None) -> ToolOutcome:
        quote = self._quote(arguments.quote_id)
        quoted_capability = quote.quote.capability
        if capability is not None and quoted_capability != capability:
            raise _Refusal(
                f"Quote {arguments.quote_id} is for {quoted_capability}, not {capability}: "
                f"use hire_tool {hire_tool_name(quoted_capability)} or hire."
            )
        price = quote.price_millicredits
        if price > self._settings.max_price_millicredits:
            raise _Refusal(
                _over_ceiling("The price of", price, self._settings.max_price_millicredits)
            )
        threshold = self._settings.approval_above_millicredits
        if threshold is not None and price > threshold:
            return _needs_approval(arguments.quote_id, price, threshold)
        schema = await self._input_schema(quote.provider_id, quoted_capability)
        problems = await check_task(arguments.task, schema)
        if problems:
            raise _Refusal(
                "The task does not match the listing's input schema; nothing was spent:\n- "
                + "\n- ".join(problems),
                problems=problems,
                input_schema=schema,
            )
        try:
            contract = await self._agent.hire(
                quote, arguments.task, seal_result=self._settings.seal_result
            )
        except RefusedError as refused:
            if refused.code == ErrorCode.PENDING_APPROVAL:
                return _waiting_for_portal(arguments.quote_id, quote)
            raise
        self._quotes.pop(arguments.quote_id, None)
        view = contract_view(await contract.view())
        return ToolOutcome(
            f"Hired: contract {contract.contract_id}, {format_millicredits(price)} credits held in "
            "escrow. Call wait_result with this contract_id.",
            {"status": "hired", **view},
        )

    async def _input_schema(self, provider_id: str, capability: str) -> dict[str, Any]:
        history = await self._agent.listing_history(provider_id, capability, limit=1)
        if not history.revisions or history.revisions[0].status != "active":
            raise _Refusal(f"The provider no longer lists {capability}; get new quotes.")
        return history.revisions[0].input_schema

    async def _wait_result(self, arguments: WaitResultArguments) -> ToolOutcome:
        contract_id = arguments.contract_id
        try:
            delivery = await self._agent.wait_delivery(contract_id, timeout_s=arguments.timeout_s)
        except RequestTimeout:
            return ToolOutcome(
                f"No result for {contract_id} yet; call wait_result again later.",
                {"status": "waiting", "contract_id": contract_id},
            )
        self._deliveries[contract_id] = delivery
        self._deliveries.move_to_end(contract_id)
        while len(self._deliveries) > DELIVERIES_KEPT_MAX:
            self._deliveries.popitem(last=False)
        return ToolOutcome(
            delivery_text(delivery.result),
            {"status": "delivered", "contract_id": contract_id, "result": delivery.result},
        )

    async def _accept(self, arguments: AcceptArguments) -> ToolOutcome:
        delivery = self._deliveries.get(arguments.contract_id)
        if delivery is None:
            raise _Refusal(
                f"Read the result of {arguments.contract_id} with wait_result before accepting it."
            )
        view = contract_view(await self._agent.accept_delivery(delivery))
        self._deliveries.pop(arguments.contract_id, None)
        return ToolOutcome(
            f"Accepted: contract {arguments.contract_id} is {view['state']}; the provider is paid.",
            view,
        )

    async def _reject(self, arguments: RejectArguments) -> ToolOutcome:
        view = contract_view(
            await self._agent.reject_delivery(arguments.contract_id, reason=arguments.reason)
        )
        self._deliveries.pop(arguments.contract_id, None)
        return ToolOutcome(
            f"Rejected: contract {arguments.contract_id} is {view['state']}; the price stays "
            "held until the dispute is resolved.",
            view,
        )

    async def _transactions(self, arguments: TransactionsArguments) -> ToolOutcome:
        entries = [
            transaction_view(e) for e in await self._agent.transactions(limit=arguments.limit)
        ]
        lines = [
            f"- {entry['direction']} {entry['amount']['credits']} credits ({entry['kind']})"
            for entry in entries
        ]
        text = f"{len(entries)} recent transaction(s)." + "".join("\n" + line for line in lines)
        return ToolOutcome(text, {"transactions": entries})

    # --- the quote book --------------------------------------------------------------

    def _keep_quote(self, quote: ReceivedQuote) -> str:
        self._drop_expired_quotes()
        while len(self._quotes) >= QUOTES_KEPT_MAX:
            self._quotes.popitem(last=False)
        quote_id = f"q{next(self._quote_numbers)}"
        self._quotes[quote_id] = quote
        return quote_id

    def _quote(self, quote_id: str) -> ReceivedQuote:
        self._drop_expired_quotes()
        quote = self._quotes.get(quote_id)
        if quote is None:
            raise _Refusal(f"No quote {quote_id!r} (unknown or expired): call get_quotes again.")
        return quote

    def _drop_expired_quotes(self) -> None:
        now_ms = int(time.time() * 1000)
        expired = [
            quote_id
            for quote_id, quote in self._quotes.items()
            if quote.quote.header.expires_at_ms <= now_ms
        ]
        for quote_id in expired:
            del self._quotes[quote_id]


def _decoded(arguments: dict[str, Any] | None, kind: type[_S]) -> _S:
    decoded = decode_arguments(arguments, kind)
    if isinstance(decoded, str):
        raise _Refusal(decoded)
    return decoded


def _error(message: str, /, **data: Any) -> ToolOutcome:
    return ToolOutcome(message, data, is_error=True)


def _over_ceiling(what: str, amount_millicredits: int, ceiling_millicredits: int) -> str:
    return (
        f"{what} {format_millicredits(amount_millicredits)} credits is above this server's "
        f"ceiling of {format_millicredits(ceiling_millicredits)} credits per hire "
        "(--max-price-credits); nothing was spent."
    )


def _needs_approval(quote_id: str, price: int, threshold: int) -> ToolOutcome:
    return ToolOutcome(
        f"Needs approval: {format_millicredits(price)} credits is above the "
        f"{format_millicredits(threshold)} credits this server may spend without your human "
        "(--approval-above-credits). Nothing was spent; ask your human.",
        {"status": "needs_approval", "quote_id": quote_id, "price_millicredits": price},
    )


def _waiting_for_portal(quote_id: str, quote: ReceivedQuote) -> ToolOutcome:
    return ToolOutcome(
        "Waiting for your human's approval in the portal: the price is above the approval "
        f"threshold they set. Nothing was spent. Once they approve, call hire again with "
        f"quote_id {quote_id} before it expires.",
        {
            "status": "waiting_for_approval",
            "quote_id": quote_id,
            "quote_expires_at_ms": quote.quote.header.expires_at_ms,
        },
    )


# --- the MCP side -------------------------------------------------------------------


def call_result(outcome: ToolOutcome, /) -> types.CallToolResult:
    """An outcome as MCP content: its text, and its data as structured content."""
    return types.CallToolResult(
        content=[types.TextContent(text=outcome.text)],
        structured_content=outcome.data or None,
        is_error=outcome.is_error,
    )


def buyer_server(tools: BuyerTools, /) -> Server[Any]:
    """The low-level MCP server over ``tools`` (its tool list changes with the listings)."""

    async def on_list_tools(
        context: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await tools.list_tools())

    async def on_call_tool(
        context: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return call_result(await tools.call(params.name, params.arguments))

    return Server(
        SERVER_NAME,
        version="1",
        instructions=INSTRUCTIONS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        get_tool_input_schema=tools.input_schema_of,
    )


async def serve_stdio(server: Server[Any], /) -> None:
    """Serve one host over this process's stdin and stdout until the host closes them."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class BearerTokenGate:
    """An ASGI wrapper that answers 401 to any HTTP request without the token.

    Loopback is not a boundary (every local user and every page a local
    browser opens can reach it), and whoever reaches the server spends this
    agent's credits, so each request must carry ``Authorization: Bearer
    <token>``; the token is compared in constant time.
    """

    def __init__(self, app: Any, token: str, /) -> None:
        assert len(token) >= HTTP_TOKEN_CHARS_MIN, "a guessable token guards nothing"
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._carries_token(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"www-authenticate", b'Bearer realm="agentx-mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"a bearer token is required\n"})
            return
        await self._app(scope, receive, send)

    def _carries_token(self, scope: Any) -> bool:
        given = [value for name, value in scope["headers"] if name == b"authorization"]
        return len(given) == 1 and hmac.compare_digest(given[0], self._expected)


def new_http_token() -> str:
    """A fresh bearer token for the HTTP server (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class HttpService:
    """The server over streamable HTTP at ``http://127.0.0.1:PORT/mcp``, loopback only,
    answering only requests that carry ``token`` (see :class:`BearerTokenGate`)."""

    def __init__(self, server: Server[Any], /, *, port: int, token: str) -> None:
        assert 0 <= port <= 65_535
        app = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=HTTP_HOST)
        self._app = BearerTokenGate(app, token)
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Bind (port 0: a free one), serve, and return the URL once it answers."""
        listener = listening_socket(HTTP_HOST, self._port)
        port = listener.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        deadline = time.monotonic() + HTTP_START_TIMEOUT_S
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                await self.stop()
                raise OSError(f"the MCP HTTP server did not start on {HTTP_HOST}:{port}")
            await asyncio.sleep(0.02)
        return f"http://{HTTP_HOST}:{port}{HTTP_PATH}"

    async def wait(self) -> None:
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
