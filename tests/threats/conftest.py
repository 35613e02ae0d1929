"""The threat-model suite runs against the real exchange on the session's nats-server.

The server runs with auth on, as ``agentx up`` does (tests/fixtures_nats.py),
and each test gets a real exchange worker and a fresh database from the
exchange suite's fixtures (tests/exchange/conftest.py).
"""

from tests.exchange.conftest import RunningExchange, exchange

__all__ = ["RunningExchange", "exchange"]
