"""The exchange's use cases, one class per area, over a shared context.

Entry points (the NATS endpoints) decode and verify a request, then call one
method with the verified document and the signer's id; each method checks
the business rules, runs its writes in one database transaction, and only
after that commits sends the notices it owes.
"""

from exchange.use_cases.agent_wallets import AccountUseCases
from exchange.use_cases.catalog import CatalogUseCases
from exchange.use_cases.contract_lifecycle import ContractUseCases
from exchange.use_cases.exchange_context import ExchangeContext, NoticePublisher
from exchange.use_cases.reputation import ReputationUseCases
from exchange.use_cases.transfers import TransferUseCases

__all__ = [
    "AccountUseCases",
    "CatalogUseCases",
    "ContractUseCases",
    "ExchangeContext",
    "NoticePublisher",
    "ReputationUseCases",
    "TransferUseCases",
]
