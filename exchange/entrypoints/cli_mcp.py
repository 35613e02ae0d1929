"""`agentx mcp`: a buyer's MCP server (stdio or streamable HTTP) over an agent key.

Thin: the bridge itself lives in agent_client.bridges.mcp_buyer. Over stdio
(the default) stdout carries MCP only; logs go to stderr. With
``--http-port`` it serves ``http://127.0.0.1:PORT/mcp`` (port 0: a free
one), prints that URL on stdout, and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from agent_client.bridges.mcp_buyer import (
    DEFAULT_MAX_PRICE_MILLICREDITS,
    HTTP_TOKEN_CHARS_MIN,
    BuyerSettings,
    BuyerTools,
    HttpService,
    buyer_server,
    new_http_token,
    serve_stdio,
)
from agent_client.credit_text import format_millicredits
from agent_client.limits import PRICE_MILLICREDITS_MAX
from exchange.entrypoints.agent_connection import add_exchange_location, connect_agent
from exchange.entrypoints.cli_arguments import credits_argument, port_argument
from exchange.entrypoints.command_errors import CommandError

__all__ = ["COMMAND", "add_command", "run"]

COMMAND = "mcp"
TOKEN_VARIABLE = "AGENTX_MCP_TOKEN"
TOKEN_FILE_CHARS_MAX = 4_096
EXIT_OK = 0

_price_credits = credits_argument(PRICE_MILLICREDITS_MAX)


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        COMMAND,
        help="a buyer's MCP server: an LLM host finds, hires and pays with this agent's key",
        description="Serve MCP tools (find_services, get_quotes, hire, wait_result, "
        "accept_delivery, reject_delivery, balance, recent_transactions) over stdio, or over "
        "streamable HTTP on loopback with --http-port.",
    )
    command.add_argument("--key", type=Path, required=True, help="the buying agent's seed file")
    add_exchange_location(command)
    command.add_argument(
        "--http-port",
        type=port_argument,
        default=None,
        help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio; 0 picks a free "
        "port and prints it (default: stdio)",
    )
    command.add_argument(
        "--http-token-file",
        type=Path,
        default=None,
        help="the bearer token HTTP clients must send: read from this file, or written to it "
        f"(mode 0600) when it does not exist; else ${TOKEN_VARIABLE}, else a new token is "
        "printed (default: none)",
    )
    command.add_argument(
        "--max-price-credits",
        type=_price_credits,
        default=DEFAULT_MAX_PRICE_MILLICREDITS,
        help="refuse any hire (and quote budget) above this many credits "
        f"(default: {format_millicredits(DEFAULT_MAX_PRICE_MILLICREDITS)})",
    )
    command.add_argument(
        "--approval-above-credits",
        type=_price_credits,
        default=None,
        help="answer 'needs approval' instead of hiring above this many credits "
        "(default: none; the portal's approval threshold applies anyway)",
    )
    command.add_argument(
        "--seal-result",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="have results sealed to this agent's key (default: %(default)s)",
    )


def http_token(path: Path | None, /) -> tuple[str, str]:
    """The HTTP server's bearer token, and how to tell the user about it (never in argv)."""
    if path is not None:
        if not path.exists():
            path.write_text(new_http_token() + "\n")
            path.chmod(0o600)
        token = path.read_text()[:TOKEN_FILE_CHARS_MAX].strip()
        told = f"<the token in {path}>"
    elif os.environ.get(TOKEN_VARIABLE):
        token, told = os.environ[TOKEN_VARIABLE].strip(), f"${TOKEN_VARIABLE}"
    else:
        token = new_http_token()
        told = token
    if len(token) < HTTP_TOKEN_CHARS_MIN:
        raise CommandError(f"the MCP HTTP token must be at least {HTTP_TOKEN_CHARS_MIN} characters")
    return token, told


async def run(arguments: argparse.Namespace) -> int:
    settings = BuyerSettings(
        max_price_millicredits=max(arguments.max_price_credits, 1),
        approval_above_millicredits=arguments.approval_above_credits,
        seal_result=arguments.seal_result,
    )
    async with await connect_agent(arguments, arguments.key, name="agentx-mcp") as agent:
        server = buyer_server(BuyerTools(agent, settings=settings))
        if arguments.http_port is None:
            await serve_stdio(server)
            return EXIT_OK
        token, told = http_token(arguments.http_token_file)
        service = HttpService(server, port=arguments.http_port, token=token)
        url = await service.start()
        print(f"MCP (streamable HTTP) for agent {agent.agent_id}: {url}", flush=True)
        print(f"send the header  Authorization: Bearer {told}", flush=True)
        try:
            await service.wait()
        finally:
            await service.stop()
    return EXIT_OK
