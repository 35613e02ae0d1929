"""`agentx a2a`: an A2A gateway: signed agent cards for listings, A2A messages become hires.

Thin: the gateway lives in agent_client.bridges.a2a_gateway. It listens on
loopback (``--host``/``--port``; port 0 picks a free one), prints its URL
on stdout, and runs until Ctrl-C or SIGTERM, then waits for the hires in
flight to settle.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from agent_client import AgentKeys
from agent_client.bridges.a2a_gateway import A2AGateway, GatewayConfig
from agent_client.credit_text import MILLICREDITS_PER_CREDIT, format_millicredits
from agent_client.limits import PRICE_MILLICREDITS_MAX
from exchange.entrypoints.agent_connection import add_exchange_location, connect_agent
from exchange.entrypoints.cli_arguments import credits_argument, port_argument

__all__ = ["COMMAND", "add_command", "run"]

COMMAND = "a2a"
EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_CARD_KEY = Path("var/agentx/exchange.seed")
DEFAULT_MAX_PRICE_MILLICREDITS = 10 * MILLICREDITS_PER_CREDIT
# A lifetime budget may exceed one price, within reason.
BUDGET_MILLICREDITS_MAX = 1_000 * PRICE_MILLICREDITS_MAX


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        COMMAND,
        help="an A2A gateway: a signed Agent Card per listing; A2A messages hire with escrow",
        description="Serve an Agent Card for each capability on sale at "
        "/agents/<capability>/.well-known/agent-card.json (and the gateway's own at "
        "/.well-known/agent-card.json), signed with --card-key. An A2A message to "
        "/agents/<capability> asks for quotes, hires the cheapest with --key's credits, "
        "accepts the delivery and answers with the result.",
    )
    command.add_argument("--key", type=Path, required=True, help="the buying agent's seed file")
    add_exchange_location(command)
    command.add_argument(
        "--card-key",
        type=Path,
        default=DEFAULT_CARD_KEY,
        help="the seed that signs the cards: the exchange's own, so that clients check them "
        "against the exchange id in exchange.json (default: %(default)s)",
    )
    command.add_argument(
        "--budget-credits",
        type=credits_argument(BUDGET_MILLICREDITS_MAX),
        required=True,
        help="the most the gateway spends in its lifetime, in credits",
    )
    command.add_argument(
        "--max-price-credits",
        type=credits_argument(PRICE_MILLICREDITS_MAX),
        default=DEFAULT_MAX_PRICE_MILLICREDITS,
        help="the most one task may cost, in credits "
        f"(default: {format_millicredits(DEFAULT_MAX_PRICE_MILLICREDITS)})",
    )
    command.add_argument(
        "--host", default="127.0.0.1", help="listen address (default: %(default)s)"
    )
    command.add_argument(
        "--port",
        type=port_argument,
        default=0,
        help="listen port; 0 picks a free one (default: %(default)s)",
    )


async def run(arguments: argparse.Namespace) -> int:
    config = GatewayConfig(
        budget_millicredits=arguments.budget_credits,
        max_price_millicredits=max(arguments.max_price_credits, 1),
    )
    card_keys = AgentKeys.load(arguments.card_key)
    async with await connect_agent(arguments, arguments.key, name="agentx-a2a") as agent:
        if card_keys.agent_id != agent.exchange_id:
            print(
                f"agentx a2a: the cards are signed by {card_keys.agent_id}, not by the exchange "
                f"({agent.exchange_id}): clients that pin the exchange id will refuse them",
                file=sys.stderr,
            )
        try:
            gateway = A2AGateway(agent, card_keys, config, host=arguments.host, port=arguments.port)
        except OSError as exc:
            where = f"{arguments.host}:{arguments.port}"
            print(f"agentx a2a: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILED
        url = await gateway.start()
        print(
            f"A2A gateway for agent {agent.agent_id} (budget "
            f"{format_millicredits(config.budget_millicredits)} credits): {url}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for received in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(received, stop.set)
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(gateway.wait_closed())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await gateway.stop()
    return EXIT_OK
