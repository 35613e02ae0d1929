"""`agentx provide-mcp`: sell the tools of an MCP server (run as a child) on the exchange.

Thin: the bridge itself lives in :mod:`agent_client.bridges.mcp_provider`.
This module parses the flags (prices in credits), connects the provider's
agent, prints what is served, and turns Ctrl-C (or SIGTERM) into a clean
stop: listings deactivated, the child stopped, exit 0. A child that exits
on its own is reported in one line and the command exits 1 (it does not
restart it: a supervisor such as systemd or Docker's restart policy does
that, with its own back-off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_client.bridges.mcp_provider import (
    CALL_TIMEOUT_DEFAULT_S,
    CALLS_IN_FLIGHT_DEFAULT,
    DEFAULT_PREFIX,
    QUOTE_VALIDITY_DEFAULT_S,
    McpProviderConfig,
    McpProviderError,
    ServingReport,
    TaskNotPerformed,
    serve_mcp_server,
)
from agent_client.credit_text import format_millicredits
from agent_client.limits import PRICE_MILLICREDITS_MAX
from exchange.entrypoints.agent_connection import add_exchange_location, connect_agent
from exchange.entrypoints.cli_arguments import credits_to_millicredits

__all__ = ["COMMAND", "add_command", "run"]

COMMAND = "provide-mcp"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_DEFAULT_HELP = "(default: %(default)s)"


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        COMMAND,
        help="sell each tool of an MCP server (started as a child) as a capability",
        description="Start an MCP server (the command after --), advertise each of its tools "
        "as PREFIX.TOOL at a fixed price, and perform hired tasks by calling the tool. "
        "Ctrl-C deactivates the listings and stops the server.",
    )
    command.add_argument("--key", type=Path, required=True, help="the provider's seed file")
    add_exchange_location(command)
    command.add_argument("--price", required=True, metavar="CREDITS", help="each tool's price")
    command.add_argument(
        "--price-for",
        action="append",
        default=[],
        metavar="TOOL=CREDITS",
        help="one tool's own price (repeatable)",
    )
    command.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"capability prefix {_DEFAULT_HELP}"
    )
    command.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="NAME",
        help="sell only this tool (repeatable; default: all)",
    )
    command.add_argument(
        "--call-timeout",
        type=float,
        default=CALL_TIMEOUT_DEFAULT_S,
        metavar="SECONDS",
        help=f"one tool call at most {_DEFAULT_HELP}",
    )
    command.add_argument(
        "--quote-validity",
        type=float,
        default=QUOTE_VALIDITY_DEFAULT_S,
        metavar="SECONDS",
        help=f"how long a quote binds {_DEFAULT_HELP}; RFQs asking delivery within less "
        "than this plus --call-timeout are declined",
    )
    command.add_argument(
        "--calls-max",
        type=int,
        default=CALLS_IN_FLIGHT_DEFAULT,
        help=f"tool calls in flight at once {_DEFAULT_HELP}",
    )
    command.add_argument(
        "server_command", nargs=argparse.REMAINDER, help="-- then the MCP server's command"
    )


async def run(arguments: argparse.Namespace) -> int:
    try:
        config = _config(arguments)
    except ValueError as exc:
        print(f"agentx {COMMAND}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = asyncio.Event()
    with _stop_on_signals(stop), _child_log_shown(), _task_failures_in_one_line():
        agent = await connect_agent(arguments, arguments.key, name="agentx-provide-mcp")
        try:
            await serve_mcp_server(agent, config, stop=stop, on_ready=_print_serving)
        except McpProviderError as exc:
            print(f"agentx {COMMAND}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await agent.close()
    print("stopped: listings deactivated, MCP server stopped", flush=True)
    return EXIT_OK


def _config(arguments: argparse.Namespace) -> McpProviderConfig:
    command = list(arguments.server_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError("give the MCP server's command after --")
    prices_by_tool: dict[str, int] = {}
    for pair in arguments.price_for:
        tool, separator, credits = pair.partition("=")
        if not tool or not separator:
            raise ValueError(f"--price-for {pair!r}: use TOOL=CREDITS")
        prices_by_tool[tool] = _price_millicredits(credits, what=f"--price-for {tool}")
    if not 0 < arguments.call_timeout <= 3600:
        raise ValueError("--call-timeout must be more than 0 and at most 3600 s")
    if not 0 < arguments.quote_validity <= 3600:
        raise ValueError("--quote-validity must be more than 0 and at most 3600 s")
    if not 1 <= arguments.calls_max <= 64:
        raise ValueError("--calls-max must be between 1 and 64")
    return McpProviderConfig(
        command=tuple(command),
        price_millicredits=_price_millicredits(arguments.price, what="--price"),
        prefix=arguments.prefix,
        prices_by_tool=prices_by_tool,
        tools=tuple(arguments.tool),
        call_timeout_s=arguments.call_timeout,
        quote_validity_s=arguments.quote_validity,
        calls_in_flight_max=arguments.calls_max,
    )


def _price_millicredits(text: str, *, what: str) -> int:
    """A price as typed ("2", "0.5") in millicredits: above 0, at most three decimals."""
    try:
        return credits_to_millicredits(text, minimum=1, maximum=PRICE_MILLICREDITS_MAX)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _print_serving(report: ServingReport) -> None:
    pid = report.child_pid if report.child_pid is not None else "unknown"
    print(f"MCP server running (child pid {pid}); serving {len(report.listings)} tools:")
    for listing in report.listings:
        price = format_millicredits(listing.price_millicredits)
        print(f"  {listing.capability}  {price} credits  (tool {listing.tool_name!r})")
    print(
        f"quoting RFQs that allow at least {report.delivery_window_min_s} s for delivery; "
        "Ctrl-C stops",
        flush=True,
    )


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM ask for a clean stop instead of interrupting anything."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


@contextlib.contextmanager
def _child_log_shown() -> Iterator[None]:
    """The child's stderr lines are info records; show them without -v."""
    child_logger = logging.getLogger("agent_client.bridges.mcp_provider.child")
    level = child_logger.level
    child_logger.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
    try:
        yield
    finally:
        child_logger.setLevel(level)


class _TaskFailureInOneLine(logging.Filter):
    """A task the tool did not perform is an expected outcome, logged by the bridge in
    one line: the provider desk's traceback of it adds nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        return not isinstance(exception, TaskNotPerformed)


@contextlib.contextmanager
def _task_failures_in_one_line() -> Iterator[None]:
    providing_logger = logging.getLogger("agent_client.providing")
    task_filter = _TaskFailureInOneLine()
    providing_logger.addFilter(task_filter)
    try:
        yield
    finally:
        providing_logger.removeFilter(task_filter)
