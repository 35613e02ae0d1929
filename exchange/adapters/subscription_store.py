"""The exchange's SQL for plans, subscriptions and the charge of each period.

Every function takes the connection of an already-begun transaction; the
use case decides what is atomic (a period's ledger charge, its charge row
and the subscription's new state commit together).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import SubscriptionState
from exchange.adapters.exchange_tables import plans, subscription_charges, subscriptions
from exchange.domain.subscription_rules import PlanRow, SubscriptionRow
from exchange.errors import ErrorCode, ExchangeError
from wallet import TransferCode, TransferFlags
from wallet.ledger_tables import ledger_transfers
from wallet.prepared_statements import PreparedStatement

__all__ = [
    "add_charge",
    "count_provider_plans",
    "due_subscription_ids",
    "get_plan",
    "get_subscription",
    "insert_subscription",
    "list_plans",
    "list_subscriptions",
    "live_subscription_of",
    "subscription_problems",
    "update_subscription",
    "upsert_plan",
]

# Charge ids start so (exchange/domain/subscription_rules.py): the ledger's
# escrow transfers of subscription charges carry them as user data.
_CHARGE_PREFIX = "sub_"


async def get_plan(
    connection: AsyncConnection, plan_id: str, /, *, for_update: bool = False
) -> PlanRow | None:
    statement = sa.select(plans).where(plans.c.plan_id == plan_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().one_or_none()
    return None if row is None else PlanRow(**dict(row))


async def upsert_plan(connection: AsyncConnection, plan: PlanRow, /, *, exists: bool) -> None:
    values = {field: getattr(plan, field) for field in PlanRow.__slots__}
    if exists:
        await connection.execute(
            plans.update()
            .where(plans.c.plan_id == plan.plan_id)
            .values(active=plan.active, updated_at_ms=plan.updated_at_ms)
        )
    else:
        await connection.execute(plans.insert().values(**values))


async def count_provider_plans(connection: AsyncConnection, provider_id: str, /) -> int:
    statement = sa.select(sa.func.count()).where(plans.c.provider_id == provider_id)
    return int((await connection.execute(statement)).scalar_one())


async def list_plans(
    connection: AsyncConnection,
    /,
    *,
    provider_id: str | None,
    capability: str | None,
    limit: int,
) -> list[PlanRow]:
    """Active plans, of a provider or of a capability, by id."""
    statement = sa.select(plans).where(plans.c.active.is_(True))
    if provider_id is not None:
        statement = statement.where(plans.c.provider_id == provider_id)
    if capability is not None:
        statement = statement.where(plans.c.capability == capability)
    statement = statement.order_by(plans.c.plan_id).limit(limit)
    return [PlanRow(**dict(row)) for row in (await connection.execute(statement)).mappings()]


async def get_subscription(
    connection: AsyncConnection, subscription_id: str, /, *, for_update: bool = False
) -> SubscriptionRow | None:
    statement = sa.select(subscriptions).where(subscriptions.c.subscription_id == subscription_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().one_or_none()
    return None if row is None else _subscription(row)


async def live_subscription_of(
    connection: AsyncConnection, buyer_id: str, plan_id: str, /
) -> str | None:
    """The buyer's subscription to the plan that has not ended or lapsed, if any."""
    statement = sa.select(subscriptions.c.subscription_id).where(
        subscriptions.c.buyer_id == buyer_id,
        subscriptions.c.plan_id == plan_id,
        subscriptions.c.state.not_in(
            [SubscriptionState.ENDED.value, SubscriptionState.LAPSED.value]
        ),
    )
    found = (await connection.execute(statement.limit(1))).scalar_one_or_none()
    return None if found is None else str(found)


async def insert_subscription(connection: AsyncConnection, row: SubscriptionRow, /) -> None:
    try:
        await connection.execute(subscriptions.insert().values(**_values(row)))
    except IntegrityError as exc:
        raise ExchangeError(
            ErrorCode.IDEMPOTENCY_CONFLICT, "this subscription request was already made"
        ) from exc


async def update_subscription(
    connection: AsyncConnection, before: SubscriptionRow, after: SubscriptionRow, /
) -> None:
    """Write ``after`` over ``before``, compare-and-set on what a racing step changes."""
    result = await connection.execute(
        subscriptions.update()
        .where(
            subscriptions.c.subscription_id == before.subscription_id,
            subscriptions.c.state == before.state.value,
            subscriptions.c.periods_charged == before.periods_charged,
            subscriptions.c.updated_at_ms == before.updated_at_ms,
        )
        .values(**_values(after))
    )
    if result.rowcount != 1:
        raise ExchangeError(ErrorCode.INVALID_STATE, "the subscription changed under this step")


async def add_charge(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    """Record a period's charge; a second charge of a period is refused by the key."""
    await connection.execute(subscription_charges.insert().values(**values))


async def due_subscription_ids(
    connection: AsyncConnection, /, *, now_ms: int, limit: int
) -> list[str]:
    rows = await _select_due_subscriptions.rows(connection, (now_ms, limit))
    return [str(found) for (found,) in rows]


# Run every second on every worker, mostly finding nothing: prepared.
_select_due_subscriptions = PreparedStatement(
    lambda _dialect: (
        sa.select(subscriptions.c.subscription_id)
        .where(subscriptions.c.due_at_ms <= sa.bindparam("now_ms"))
        .order_by(subscriptions.c.due_at_ms)
        .limit(sa.bindparam("limit"))
    ),
    ("now_ms", "limit"),
)


async def list_subscriptions(
    connection: AsyncConnection,
    /,
    *,
    buyer_ids: list[str] | None = None,
    provider_ids: list[str] | None = None,
    after_id: str | None = None,
    limit: int,
) -> tuple[list[SubscriptionRow], bool]:
    """Subscriptions of these buyers or providers, by id, one page; and whether more follow."""
    statement = sa.select(subscriptions)
    if buyer_ids is not None:
        statement = statement.where(subscriptions.c.buyer_id.in_(buyer_ids))
    if provider_ids is not None:
        statement = statement.where(subscriptions.c.provider_id.in_(provider_ids))
    if after_id is not None:
        statement = statement.where(subscriptions.c.subscription_id > after_id)
    statement = statement.order_by(subscriptions.c.subscription_id).limit(limit + 1)
    rows = [_subscription(row) for row in (await connection.execute(statement)).mappings()]
    return rows[:limit], len(rows) > limit


async def subscription_problems(connection: AsyncConnection, /) -> list[str]:
    """For the invariants: subscriptions whose charges are not exactly periods 1..n,
    and charges the ledger does not hold exactly once (or holds without a charge)."""
    counted = (
        sa.select(
            subscription_charges.c.subscription_id,
            sa.func.count().label("charges"),
            sa.func.max(subscription_charges.c.period).label("last_period"),
            sa.func.sum(subscription_charges.c.amount_millicredits).label("amount"),
        )
        .group_by(subscription_charges.c.subscription_id)
        .subquery()
    )
    statement = (
        sa.select(subscriptions.c.subscription_id)
        .select_from(
            subscriptions.outerjoin(
                counted, counted.c.subscription_id == subscriptions.c.subscription_id
            )
        )
        .where(
            sa.or_(
                sa.func.coalesce(counted.c.charges, 0) != subscriptions.c.periods_charged,
                sa.func.coalesce(counted.c.last_period, 0) != subscriptions.c.periods_charged,
                sa.func.coalesce(counted.c.amount, 0) != subscriptions.c.charged_millicredits,
            )
        )
        .limit(100)
    )
    problems = [
        f"subscription {found}: its charges are not one per period 1..n"
        for found in (await connection.execute(statement)).scalars()
    ]
    charged = await connection.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(subscription_charges.c.amount_millicredits), 0),
        )
    )
    charge_count, charge_total = charged.one()
    held = await connection.execute(
        sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(ledger_transfers.c.amount), 0)
        ).where(
            ledger_transfers.c.code == int(TransferCode.ESCROW_LOCK),
            ledger_transfers.c.flags.op("&")(int(TransferFlags.PENDING)) != 0,
            ledger_transfers.c.user_data.like(
                _CHARGE_PREFIX.replace("_", "\\_") + "%", escape="\\"
            ),
        )
    )
    hold_count, hold_total = held.one()
    if (int(hold_count), int(hold_total)) != (int(charge_count), int(charge_total)):
        problems.append(
            f"subscription charges {charge_count} for {charge_total} mcr, but the ledger "
            f"holds {hold_count} charges for {hold_total} mcr"
        )
    return problems


def _subscription(row: sa.RowMapping) -> SubscriptionRow:
    values = dict(row)
    values["state"] = SubscriptionState(values["state"])
    return SubscriptionRow(**values)


def _values(row: SubscriptionRow) -> dict[str, Any]:
    values = {field: getattr(row, field) for field in SubscriptionRow.__slots__}
    values["state"] = row.state.value
    return values
