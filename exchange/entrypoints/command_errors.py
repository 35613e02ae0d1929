"""The one error type every ``agentx`` command raises for an operating mistake."""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """An operating error a command reports in one line (a port in use, no address file)."""
