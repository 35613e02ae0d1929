"""The fee table in force: read by every payment, set by operators, shown to all.

Each worker keeps the table in its context (``ExchangeContext.fees``) and
reads it again on every sweep, so an operator's change reaches every worker
within a sweep interval (at once on the worker that took it). A contract,
a metered session or a transfer keeps the rate it started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import FeesReply, SetFees
from exchange.adapters import contract_store, fee_store
from exchange.domain.fee_rules import fee_changes, fee_schedule_from_rows
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.exchange_context import ExchangeContext
from wallet import FeeSchedule

__all__ = ["FeeChange", "FeeSettings", "change_fees", "fees_reply", "read_fee_schedule"]


async def read_fee_schedule(
    connection: AsyncConnection, /, *, default: FeeSchedule
) -> tuple[FeeSchedule, int]:
    """The table in force (over ``default``) and when it last changed."""
    rows, updated_at_ms = await fee_store.fee_rows(connection)
    return fee_schedule_from_rows(rows, default=default), updated_at_ms


def fees_reply(schedule: FeeSchedule, updated_at_ms: int, /) -> FeesReply:
    return FeesReply(
        rates={kind.value: rate for kind, rate in schedule.rates().items()},
        categories=dict(schedule.category_bps),
        updated_at_ms=updated_at_ms,
    )


@dataclass(frozen=True, slots=True)
class FeeChange:
    """Rates to set by kind, commissions by category (None removes one), and why."""

    rates: Mapping[str, int]
    categories: Mapping[str, int | None]
    reason: str = ""


async def change_fees(
    connection: AsyncConnection,
    change: FeeChange,
    /,
    *,
    default: FeeSchedule,
    now_ms: int,
    changed_by: str,
    change_id: str,
) -> tuple[FeeSchedule, int]:
    """Apply an operator's change (from an agent's request or the portal), audited;
    the table in force after it. ``change_id`` makes the audit record unique."""
    current, _ = await read_fee_schedule(connection, default=default)
    changes = fee_changes(current, rates=change.rates, categories=change.categories)
    await fee_store.write_fee_rows(connection, changes, now_ms=now_ms, updated_by=changed_by)
    await contract_store.add_audit_record(
        connection,
        {
            "operator_id": changed_by,
            "action": "set_fees",
            "subject_id": ",".join(sorted(changes))[:500],
            "amount_millicredits": 0,
            "reason": change.reason,
            "transfer_id": f"fees:{change_id}",
            "at_ms": now_ms,
        },
    )
    return await read_fee_schedule(connection, default=default)


class FeeSettings:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def refresh(self) -> int:
        """Load the table into the worker's context (the sweeper calls this)."""

        async def work(connection: AsyncConnection) -> tuple[FeeSchedule, int]:
            return await read_fee_schedule(connection, default=self._context.default_fees)

        self._context.fees, self._context.fees_updated_at_ms = await self._context.run(work)
        return 0

    async def get(self) -> FeesReply:
        await self.refresh()
        return fees_reply(self._context.fees, self._context.fees_updated_at_ms)

    async def set(self, operator_id: str, request: SetFees, /) -> FeesReply:
        """Operator only: change the named rates, with an audit record."""
        if operator_id not in self._context.operator_ids:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only an operator sets fees")
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> tuple[FeeSchedule, int]:
            return await change_fees(
                connection,
                FeeChange(request.rates, request.categories, request.reason),
                default=self._context.default_fees,
                now_ms=now_ms,
                changed_by=operator_id,
                change_id=request.header.nonce,
            )

        self._context.fees, self._context.fees_updated_at_ms = await self._context.run(work)
        return fees_reply(self._context.fees, self._context.fees_updated_at_ms)
