"""The client's tests that need a real exchange borrow the exchange tests' fixture.

``exchange`` runs a real exchange worker on the session's nats-server with a
fresh database (see tests/exchange/conftest.py); pure tests here do not ask
for it and start nothing.
"""

from tests.exchange.conftest import exchange

__all__ = ["exchange"]
