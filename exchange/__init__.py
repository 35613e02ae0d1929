"""The exchange: catalog, contract lifecycle and escrow settlement over NATS.

Layers, from the edge in: ``endpoints`` (NATS micro service: decode, verify,
map errors) → ``use_cases`` (one transaction each, notices after commit) →
``contracts`` (pure lifecycle rules), ``views`` (rows to replies) and
``repository`` (the only SQL). ``app`` wires one
worker; ``stack`` runs the embedded set-up; ``cli`` is the ``agentx`` command.
"""

from exchange.adapters.contract_invariants import check_exchange_invariants
from exchange.bootstrap.stack import EmbeddedStack, StackConfig
from exchange.bootstrap.worker import ExchangeConfig, ExchangeWorker, migrate_database
from exchange.errors import ExchangeError

__all__ = [
    "EmbeddedStack",
    "ExchangeConfig",
    "ExchangeError",
    "ExchangeWorker",
    "StackConfig",
    "check_exchange_invariants",
    "migrate_database",
]
