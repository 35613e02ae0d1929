"""A buyer agent: hires the cheapest text.upper provider once and settles.

agentx keys new --out buyer.seed          # prints the buyer's id
(the exchange's URL and id come from var/agentx/exchange.json, written by agentx up)
agentx mint <buyer id> 100 --reason "try it"
python examples/buyer.py --key buyer.seed --text "hello agents"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from agent_client import (
    DEFAULT_ADDRESS_FILE,
    Agent,
    AgentClientError,
    AgentKeys,
    AgentOptions,
    QuoteRequest,
    locate_exchange,
)

CAPABILITY = "text.upper"


async def main(
    url: str, exchange_id: str | None, key: Path, text: str, budget_millicredits: int
) -> int:
    options = AgentOptions(exchange_id=exchange_id)
    async with await Agent.connect(url, AgentKeys.load(key), options=options) as agent:
        quotes = await agent.request_quotes(
            QuoteRequest(
                CAPABILITY, "upper-case a short text", budget_millicredits=budget_millicredits
            )
        )
        if not quotes:
            print("no provider quoted within the budget")
            return 1
        for quote in quotes:
            print(f"quote: {quote.provider_id} asks {quote.price_millicredits} mcr")
        contract = await agent.hire(quotes[0], {"text": text})
        print(f"contract {contract.contract_id}: {contract.price_millicredits} mcr held in escrow")
        delivery = await contract.wait_delivery(timeout_s=30)
        print(f"delivered: {delivery.result}")
        view = await contract.accept_delivery(delivery)
        print(f"accepted: contract {view.state}, fee {view.fee_millicredits} mcr")
        balance = await agent.balance()
        print(f"balance: {balance.available_millicredits} mcr available")
    return 0


def run(arguments: argparse.Namespace) -> int:
    """Buy, or say in one line why not: no exchange, no key, no credits, no answer."""
    try:
        url, exchange_id = locate_exchange(arguments.url, None, arguments.address_file)
        return asyncio.run(main(url, exchange_id, arguments.key, arguments.text, arguments.budget))
    except AgentClientError as exc:
        print(f"buyer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("buyer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # The error this program prints says why it failed; per-attempt warnings would repeat it.
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description="Buy one text.upper job")
    parser.add_argument(
        "--url", default=None, help=f"NATS URL (default: from {DEFAULT_ADDRESS_FILE})"
    )
    parser.add_argument(
        "--address-file", type=Path, default=DEFAULT_ADDRESS_FILE, help="(default: %(default)s)"
    )
    parser.add_argument("--key", type=Path, required=True, help="the buyer's seed file")
    parser.add_argument("--text", default="hello agents", help="(default: %(default)s)")
    parser.add_argument(
        "--budget", type=int, default=10_000, help="millicredits (default: %(default)s)"
    )
    raise SystemExit(run(parser.parse_args()))
