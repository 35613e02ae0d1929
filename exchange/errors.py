"""Errors of the exchange.

::

    ExchangeError      a request the exchange refuses (``code``, ``message``)

One class with a stable ``code`` from :class:`agent_client.protocol.ErrorCode`
is enough: every refusal ends as an error reply on the wire, and callers
branch on the code, not on the class. Foreign errors (wallet, escrow,
SQLAlchemy) are translated into it at the edge of the service layer.
"""

from __future__ import annotations

from agent_client.protocol import ErrorCode

__all__ = ["ErrorCode", "ExchangeError"]


class ExchangeError(Exception):
    def __init__(self, code: ErrorCode, message: str, /, *, contract_id: str | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.contract_id = contract_id
