"""The bridge commands (``agentx mcp``, ``agentx provide-mcp``, ``agentx a2a``).

Each command's arguments and runner live in its own module; this one only
lists them for the main parser, so the bridges stay out of ``cli.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from exchange.entrypoints import cli_a2a, cli_mcp, cli_provide_mcp

__all__ = ["BRIDGE_COMMANDS", "add_bridge_commands"]

# Command name -> the coroutine that runs it (given the parsed arguments).
BRIDGE_COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    cli_mcp.COMMAND: cli_mcp.run,
    cli_provide_mcp.COMMAND: cli_provide_mcp.run,
    cli_a2a.COMMAND: cli_a2a.run,
}


def add_bridge_commands(commands: Any) -> None:
    """Add each bridge's sub-command to ``agentx``'s sub-parsers."""
    cli_mcp.add_command(commands)
    cli_provide_mcp.add_command(commands)
    cli_a2a.add_command(commands)
