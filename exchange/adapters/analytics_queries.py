"""The SQL behind a provider's analytics: its contracts, ratings and metered sessions.

Each query reads one provider's rows since a time, newest first, and stops
at a bound (the figures then cover the newest rows and say so).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import (
    contract_events,
    contracts,
    goods_items,
    goods_licences,
    metered_sessions,
    ratings,
    subscription_charges,
    subscriptions,
)
from exchange.domain.analytics_math import ContractFact, MeteredFact, RatingFact, SaleFact

__all__ = [
    "contract_facts",
    "goods_facts",
    "metered_facts",
    "rating_facts",
    "subscription_facts",
]


async def contract_facts(
    connection: AsyncConnection, provider_id: str, /, *, since_ms: int, limit: int
) -> list[ContractFact]:
    # Per contract, through the events' index on the contract id.
    delivered_at_ms = (
        sa.select(sa.func.min(contract_events.c.at_ms))
        .where(
            contract_events.c.contract_id == contracts.c.contract_id,
            contract_events.c.event == "deliver",
        )
        .scalar_subquery()
    )
    statement = (
        sa.select(
            contracts.c.capability,
            contracts.c.state,
            contracts.c.created_at_ms,
            delivered_at_ms.label("at_ms"),
            contracts.c.net_millicredits,
            contracts.c.fee_millicredits,
            contracts.c.dispute_reason,
        )
        .where(contracts.c.provider_id == provider_id, contracts.c.created_at_ms >= since_ms)
        .order_by(contracts.c.created_at_ms.desc())
        .limit(limit)
    )
    return [
        ContractFact(
            capability=row.capability,
            state=row.state,
            created_at_ms=int(row.created_at_ms),
            delivered_at_ms=None if row.at_ms is None else int(row.at_ms),
            # A settled contract's fee is the one charged; before, only the
            # fee a full release would take, which is not revenue yet.
            net_millicredits=None if row.net_millicredits is None else int(row.net_millicredits),
            fee_millicredits=int(row.fee_millicredits) if row.net_millicredits is not None else 0,
            refunded=row.state == "refunded",
            disputed=row.dispute_reason is not None,
        )
        for row in await connection.execute(statement)
    ]


async def rating_facts(
    connection: AsyncConnection, provider_id: str, /, *, since_ms: int, limit: int
) -> list[RatingFact]:
    statement = (
        sa.select(ratings.c.capability, ratings.c.stars, ratings.c.rated_at_ms)
        .where(ratings.c.provider_id == provider_id, ratings.c.rated_at_ms >= since_ms)
        .order_by(ratings.c.rated_at_ms.desc())
        .limit(limit)
    )
    return [
        RatingFact(row.capability, int(row.stars), int(row.rated_at_ms))
        for row in await connection.execute(statement)
    ]


async def metered_facts(
    connection: AsyncConnection, provider_id: str, /, *, since_ms: int, limit: int
) -> list[MeteredFact]:
    statement = (
        sa.select(
            metered_sessions.c.capability,
            metered_sessions.c.claimed_units,
            metered_sessions.c.net_millicredits,
            metered_sessions.c.fee_millicredits,
            metered_sessions.c.created_at_ms,
        )
        .where(
            metered_sessions.c.provider_id == provider_id,
            metered_sessions.c.created_at_ms >= since_ms,
        )
        .order_by(metered_sessions.c.created_at_ms.desc())
        .limit(limit)
    )
    return [
        MeteredFact(
            row.capability,
            int(row.claimed_units),
            int(row.net_millicredits),
            int(row.fee_millicredits),
            int(row.created_at_ms),
        )
        for row in await connection.execute(statement)
    ]


async def subscription_facts(
    connection: AsyncConnection, provider_id: str, /, *, since_ms: int, limit: int
) -> list[SaleFact]:
    """Each period charged to the provider's subscribers in the window."""
    statement = (
        sa.select(
            subscriptions.c.capability,
            subscription_charges.c.net_millicredits,
            subscription_charges.c.fee_millicredits,
            subscription_charges.c.charged_at_ms,
        )
        .select_from(
            subscription_charges.join(
                subscriptions,
                subscriptions.c.subscription_id == subscription_charges.c.subscription_id,
            )
        )
        .where(
            subscriptions.c.provider_id == provider_id,
            subscription_charges.c.charged_at_ms >= since_ms,
        )
        .order_by(subscription_charges.c.charged_at_ms.desc())
        .limit(limit)
    )
    return [
        SaleFact(
            "subscription",
            row.capability,
            int(row.net_millicredits),
            int(row.fee_millicredits),
            int(row.charged_at_ms),
        )
        for row in await connection.execute(statement)
    ]


async def goods_facts(
    connection: AsyncConnection, provider_id: str, /, *, since_ms: int, limit: int
) -> list[SaleFact]:
    """Each licence of the provider's digital goods sold in the window."""
    statement = (
        sa.select(
            goods_items.c.capability,
            goods_licences.c.net_millicredits,
            goods_licences.c.fee_millicredits,
            goods_licences.c.created_at_ms,
        )
        .select_from(
            goods_licences.join(goods_items, goods_items.c.item_id == goods_licences.c.item_id)
        )
        .where(
            goods_licences.c.provider_id == provider_id,
            goods_licences.c.created_at_ms >= since_ms,
        )
        .order_by(goods_licences.c.created_at_ms.desc())
        .limit(limit)
    )
    return [
        SaleFact(
            "goods",
            row.capability,
            int(row.net_millicredits),
            int(row.fee_millicredits),
            int(row.created_at_ms),
        )
        for row in await connection.execute(statement)
    ]
