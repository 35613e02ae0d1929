"""How a command finds the exchange and connects an agent: ``--url``, ``--exchange-id``,
``--address-file`` and a seed file.

Every client command uses it: ``cli.py``'s (mint, link, evidence, ...) and the
bridge commands (``cli_mcp``, ``cli_provide_mcp``, ``cli_a2a``). Errors are
the client's own (:class:`~agent_client.AddressFileError`, key and connection
errors), which ``agentx`` reports in one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent_client import (
    DEFAULT_ADDRESS_FILE,
    Agent,
    AgentKeys,
    AgentOptions,
    locate_exchange,
)

__all__ = ["add_exchange_location", "connect_agent", "exchange_location"]


def add_exchange_location(command: argparse.ArgumentParser) -> None:
    """``--url``, ``--exchange-id`` and ``--address-file``, as the other client commands."""
    command.add_argument(
        "--url", default=None, help=f"NATS URL (default: from {DEFAULT_ADDRESS_FILE})"
    )
    command.add_argument(
        "--exchange-id", default=None, help="pin the exchange's key id (default: from the file)"
    )
    command.add_argument(
        "--address-file",
        type=Path,
        default=DEFAULT_ADDRESS_FILE,
        help="the exchange.json that `agentx up` wrote (default: %(default)s)",
    )


async def connect_agent(arguments: argparse.Namespace, key_path: Path, /, *, name: str) -> Agent:
    """Connect ``key_path``'s agent to the exchange the arguments (or the address file) name."""
    url, exchange_id = exchange_location(arguments)
    options = AgentOptions(exchange_id=exchange_id, name=name)
    return await Agent.connect(url, AgentKeys.load(key_path), options=options)


def exchange_location(arguments: argparse.Namespace, /) -> tuple[str, str | None]:
    """The NATS URL and the exchange id to pin, from the arguments or the address file
    (which must exist without ``--url``: AddressFileError)."""
    return locate_exchange(arguments.url, arguments.exchange_id, arguments.address_file)
