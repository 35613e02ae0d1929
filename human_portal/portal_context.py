"""What every portal use case runs with: the database, the ledger, Stripe, a clock.

Built once by the composition root (``human_portal.portal_server``); tests build
their own with the same classes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client.signing import Clock
from exchange.use_cases.fee_settings import read_fee_schedule
from human_portal.config import PortalConfig
from human_portal.security import PasswordHasher
from human_portal.stripe_gateway import ConnectGateway, PaymentGateway
from wallet import FeeSchedule, SqlLedger, run_transaction
from wallet.database import read_transaction

__all__ = ["PortalContext"]

_T = TypeVar("_T")


class PortalContext:
    def __init__(
        self,
        engine: AsyncEngine,
        /,
        *,
        config: PortalConfig,
        clock: Clock,
        payments: PaymentGateway,
        connect: ConnectGateway,
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.payments = payments
        self.connect = connect
        self.ledger = SqlLedger(engine)
        self.hasher = PasswordHasher(config.password_profile)

    def now_ms(self) -> int:
        return self.clock.now_ms()

    async def write(self, work: Callable[[AsyncConnection], Awaitable[_T]], /) -> _T:
        """One write transaction, retried when it loses a race; ``work`` may run again."""
        return await run_transaction(self.engine, work)

    async def read(self, work: Callable[[AsyncConnection], Awaitable[_T]], /) -> _T:
        """One read-only transaction over a consistent snapshot."""
        async with read_transaction(self.engine) as connection:
            return await work(connection)

    async def fee_schedule(self, connection: AsyncConnection | None = None, /) -> FeeSchedule:
        """The exchange's fee table in force (the operator's rates over the config's)."""
        if connection is not None:
            schedule, _ = await read_fee_schedule(connection, default=self.config.fees)
            return schedule

        async def work(reading: AsyncConnection) -> FeeSchedule:
            return await self.fee_schedule(reading)

        return await self.read(work)
