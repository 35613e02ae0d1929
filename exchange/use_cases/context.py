"""What every use case shares: the unit of work, the signer and the notice sender."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client import subjects
from agent_client.keys import AgentKeys
from agent_client.protocol import (
    Document,
    Envelope,
    Header,
)
from agent_client.signing import (
    Clock,
    make_header,
    seal,
)
from escrow import (
    Escrow,
    EscrowError,
)
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import NOTICE_LIFETIME_S
from wallet import (
    SqlLedger,
    run_transaction,
)

__all__ = ["ExchangeContext", "NoticePublisher"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class NoticePublisher(Protocol):
    """Where the exchange sends signed notices to an agent (NATS in production)."""

    async def publish_notice(self, subject: str, envelope: Envelope, /) -> None: ...


class ExchangeContext:
    """The adapters and settings the use cases run with (built by ``exchange.app``)."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: SqlLedger,
        escrow: Escrow,
        publisher: NoticePublisher,
        /,
        *,
        keys: AgentKeys,
        clock: Clock,
        operator_ids: frozenset[str],
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.escrow = escrow
        self.publisher = publisher
        self.keys = keys
        self.clock = clock
        self.operator_ids = operator_ids
        self.exchange_id = keys.agent_id

    async def run(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        try:
            return await run_transaction(self.engine, work)
        except EscrowError as exc:
            # Insufficient funds is handled where it can happen; any other
            # ledger refusal of an escrow step means the contract moved on.
            raise ExchangeError(
                ErrorCode.INVALID_STATE, str(exc), contract_id=exc.contract_id
            ) from exc

    def notice_header(self, agent_id: str) -> Header:
        return make_header(
            self.keys,
            audience=agent_id,
            subject=subjects.notifications(agent_id),
            lifetime_s=NOTICE_LIFETIME_S,
            clock=self.clock,
        )

    async def notify(self, agent_id: str, notice: Document) -> None:
        envelope = seal(notice, self.keys)
        try:
            await self.publisher.publish_notice(subjects.notifications(agent_id), envelope)
        except Exception:
            # The state change is committed; a lost notice is recoverable
            # through contract.get, so the request still succeeds.
            log.exception("could not notify %s", agent_id)
