"""A provider agent: sells upper-casing of text until Ctrl-C.

agentx keys new --out provider.seed
python examples/provider.py --key provider.seed   # finds the exchange in var/agentx/exchange.json
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from agent_client import (
    DEFAULT_ADDRESS_FILE,
    Agent,
    AgentClientError,
    AgentKeys,
    AgentOptions,
    locate_exchange,
)

CAPABILITY = "text.upper"


async def upper(task: Any) -> Any:
    return {"text": str(task.get("text", "")).upper()}


async def main(url: str, exchange_id: str | None, key: Path, price_millicredits: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    options = AgentOptions(exchange_id=exchange_id)
    async with await Agent.connect(url, AgentKeys.load(key), options=options) as agent:
        await agent.advertise(
            CAPABILITY,
            description="Upper-cases text",
            price_millicredits=price_millicredits,
            input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
            output_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        )
        await agent.serve(CAPABILITY, upper, pricing=price_millicredits)
        print(
            f"provider {agent.agent_id} serving {CAPABILITY} at {price_millicredits} mcr",
            flush=True,
        )
        await stop.wait()


def run(arguments: argparse.Namespace) -> int:
    """Serve until Ctrl-C, or say in one line why not: no exchange, no key, no answer."""
    try:
        url, exchange_id = locate_exchange(arguments.url, None, arguments.address_file)
        asyncio.run(main(url, exchange_id, arguments.key, arguments.price))
    except AgentClientError as exc:
        print(f"provider: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run a text.upper provider")
    parser.add_argument(
        "--url", default=None, help=f"NATS URL (default: from {DEFAULT_ADDRESS_FILE})"
    )
    parser.add_argument(
        "--address-file", type=Path, default=DEFAULT_ADDRESS_FILE, help="(default: %(default)s)"
    )
    parser.add_argument("--key", type=Path, required=True, help="the provider's seed file")
    parser.add_argument(
        "--price", type=int, default=2_000, help="millicredits (default: %(default)s)"
    )
    raise SystemExit(run(parser.parse_args()))
