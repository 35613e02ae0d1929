"""Shared fixtures for the whole suite.

Each real component has its own fixture module, loaded here as a plugin so
that test modules in any folder can ask for them by name.
"""

pytest_plugins = ["tests.fixtures_database", "tests.fixtures_nats"]
