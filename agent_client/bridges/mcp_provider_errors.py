"""Errors of the MCP provider bridge (:mod:`agent_client.bridges.mcp_provider`).

::

    AgentClientError
     └── McpProviderError       the bridge cannot serve (bad names or prices, nothing listable)
          ├── ChildServerError  the MCP server did not start, answer or stay up (``pid``)
          └── TaskNotPerformed  one hired task failed (``tool``, ``cause``): nothing is
                                delivered; it is also a TaskDeclined, so the contract is
                                cancelled at once and the buyer refunded

Each is an :class:`~agent_client.errors.AgentClientError`, which ``agentx``
reports in one line.
"""

from __future__ import annotations

from agent_client.errors import AgentClientError, TaskDeclined

__all__ = ["ChildServerError", "McpProviderError", "TaskNotPerformed"]


class McpProviderError(AgentClientError):
    """The bridge cannot serve: a bad tool name or price, or no tool it can list."""


class ChildServerError(McpProviderError):
    """The MCP server could not be started, did not answer, or exited."""

    def __init__(self, message: str, *, pid: int | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.pid = pid
        # The child's last stderr line, when it ended: often the reason.
        self.cause = cause


class TaskNotPerformed(McpProviderError, TaskDeclined):
    """A hired task the tool did not perform; the handler raises it, so nothing is delivered.

    ``cause`` is ``tool_error`` (the tool answered ``isError``), ``invalid_task``
    (the task fails the tool's input schema), ``timeout`` or ``server_error``.
    """

    def __init__(self, tool: str, cause: str, detail: str) -> None:
        message = f"tool {tool!r} did not perform the task ({cause}): {detail}"
        McpProviderError.__init__(self, message)
        self.reason = message
        self.tool = tool
        self.cause = cause
