"""The ops tests run real workers the way the exchange tests do (their fixture)."""

from tests.exchange.conftest import exchange  # noqa: F401  (a fixture, found by name)
