"""Errors of the exchange.

::

    ExchangeError      a request the exchange refuses (``code``, ``message``)
    └── ProcessFailed  a process ``agentx cluster`` started exited or never got ready

One class with a stable ``code`` from :class:`agent_client.protocol.ErrorCode`
is enough: every refusal ends as an error reply on the wire, and callers
branch on the code, not on the class. Foreign errors (wallet, escrow,
SQLAlchemy) are translated into it at the edge of the service layer.
"""

from __future__ import annotations

from pathlib import Path

from agent_client.protocol import ErrorCode

__all__ = ["ErrorCode", "ExchangeError", "ProcessFailed"]


class ExchangeError(Exception):
    def __init__(self, code: ErrorCode, message: str, /, *, contract_id: str | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.contract_id = contract_id


class ProcessFailed(ExchangeError):
    """One process of a local cluster (exchange/bootstrap/cluster.py) failed: the whole
    cluster stops. Not a wire refusal; ``unavailable`` is what it means to a client."""

    def __init__(
        self, *, name: str, process_id: int | None, reason: str, log_path: Path | None = None
    ) -> None:
        pid = f" (pid {process_id})" if process_id is not None else ""
        where = f" (see {log_path})" if log_path is not None else ""
        super().__init__(ErrorCode.UNAVAILABLE, f"{name}{pid} {reason}{where}")
        self.name = name
        self.process_id = process_id
        self.reason = reason
        self.log_path = log_path
