"""Fixtures for the bridge tests, found by name in every module of this folder.

The real exchange per test (tests/exchange/conftest.py), and for the
portal's approvals the exchange with its portal (tests/portal/conftest.py),
whose database also holds the portal's tables.
"""

from __future__ import annotations

from tests.exchange import conftest as exchange_fixtures
from tests.portal import conftest as portal_fixtures

exchange = exchange_fixtures.exchange
harness = portal_fixtures.harness
offline_stripe = portal_fixtures.offline_stripe
database_extra_version_locations = portal_fixtures.database_extra_version_locations
