"""The composition root of one exchange worker: it wires the adapters together.

A worker needs a NATS URL, a database URL (already migrated) and the
exchange's signing keys. Several workers may serve one NATS and one
database: they share the queue group and the ledger.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client.keys import AgentKeys
from agent_client.signing import Clock, SystemClock
from escrow import Escrow
from exchange.endpoints import ExchangeEndpoints, NatsNoticePublisher
from exchange.ledger_accounts import ensure_platform_accounts
from exchange.limits import REQUEST_CONCURRENCY_MAX
from exchange.use_cases import ExchangeContext
from wallet import FeeSchedule, SqlLedger, open_database, upgrade_schema

__all__ = ["ExchangeConfig", "ExchangeWorker", "migrate_database"]

EXCHANGE_MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
NATS_CONNECT_TIMEOUT_S = 5


async def migrate_database(database_url: str, /) -> None:
    """Bring the wallet's and the exchange's tables up to date (idempotent)."""
    await upgrade_schema(database_url, extra_version_locations=[str(EXCHANGE_MIGRATIONS)])


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    nats_url: str
    database_url: str
    keys: AgentKeys
    operator_ids: frozenset[str]
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    request_concurrency_max: int = REQUEST_CONCURRENCY_MAX


class ExchangeWorker:
    def __init__(self, config: ExchangeConfig, /, *, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._client: Client | None = None
        self._engine: AsyncEngine | None = None
        self._endpoints: ExchangeEndpoints | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "the worker is not started"
        return self._engine

    @property
    def exchange_id(self) -> str:
        return self.config.keys.agent_id

    async def start(self) -> None:
        assert self._client is None, "the worker is already started"
        self._engine = open_database(self.config.database_url)
        ledger = SqlLedger(self._engine)
        await ensure_platform_accounts(ledger)
        self._client = await nats.connect(
            self.config.nats_url,
            name="agentx-exchange",
            connect_timeout=NATS_CONNECT_TIMEOUT_S,
            max_reconnect_attempts=-1,
        )
        context = ExchangeContext(
            self._engine,
            ledger,
            Escrow(ledger, fee_rate_bps=self.config.fees.escrow_bps),
            NatsNoticePublisher(self._client),
            keys=self.config.keys,
            clock=self._clock,
            operator_ids=self.config.operator_ids,
        )
        self._endpoints = ExchangeEndpoints(
            self._client,
            context,
            clock=self._clock,
            escrow_fee_bps=self.config.fees.escrow_bps,
            concurrency_max=self.config.request_concurrency_max,
        )
        await self._endpoints.start()

    async def stop(self) -> None:
        """Stop taking requests, finish those in flight, then disconnect."""
        if self._endpoints is not None:
            await self._endpoints.stop()
            self._endpoints = None
        if self._client is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._client.drain()
            self._client = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> ExchangeWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
