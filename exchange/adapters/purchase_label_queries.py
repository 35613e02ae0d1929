"""The exchange's SQL behind purchase labels: what a reference bought, from whom (reads only).

Each function takes a batch of ids and answers with one query per chunk of
``IN_LIST_SIZE_MAX`` ids, so a page of history costs a handful of queries
whatever its length (no query per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import (
    contracts,
    goods_items,
    goods_licences,
    metered_sessions,
    subscription_charges,
    subscriptions,
)

__all__ = [
    "IN_LIST_SIZE_MAX",
    "contract_rows",
    "licence_rows",
    "metered_rows",
    "subscription_charge_rows",
    "subscription_rows",
]

# Well under every database's limit on bound parameters (SQLite's is 32,766).
IN_LIST_SIZE_MAX = 500


def _chunks(ids: Sequence[Any], /) -> list[list[Any]]:
    unique = sorted(set(ids))
    return [unique[i : i + IN_LIST_SIZE_MAX] for i in range(0, len(unique), IN_LIST_SIZE_MAX)]


async def _rows(
    connection: AsyncConnection, statement: Any, key: Any, ids: Sequence[Any], /
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for chunk in _chunks(ids):
        result = await connection.execute(statement.where(key.in_(chunk)))
        found.extend(dict(row) for row in result.mappings())
    return found


async def contract_rows(
    connection: AsyncConnection, contract_ids: Sequence[str], /
) -> list[dict[str, Any]]:
    return await _deal_rows(connection, contracts, contract_ids)


async def metered_rows(
    connection: AsyncConnection, contract_ids: Sequence[str], /
) -> list[dict[str, Any]]:
    return await _deal_rows(connection, metered_sessions, contract_ids)


async def _deal_rows(
    connection: AsyncConnection, table: sa.Table, contract_ids: Sequence[str], /
) -> list[dict[str, Any]]:
    """A contract's or a metered session's capability, buyer, provider and fee, by contract id."""
    columns = table.c
    statement = sa.select(
        columns.contract_id,
        columns.capability,
        columns.buyer_id,
        columns.provider_id,
        columns.fee_millicredits,
    )
    return await _rows(connection, statement, columns.contract_id, contract_ids)


async def subscription_rows(
    connection: AsyncConnection, subscription_ids: Sequence[str], /
) -> list[dict[str, Any]]:
    statement = sa.select(
        subscriptions.c.subscription_id,
        subscriptions.c.plan,
        subscriptions.c.capability,
        subscriptions.c.buyer_id,
        subscriptions.c.provider_id,
    )
    return await _rows(connection, statement, subscriptions.c.subscription_id, subscription_ids)


async def subscription_charge_rows(
    connection: AsyncConnection, periods: Sequence[tuple[str, int]], /
) -> list[dict[str, Any]]:
    """The charges of these (subscription id, period) pairs."""
    key = sa.tuple_(subscription_charges.c.subscription_id, subscription_charges.c.period)
    statement = sa.select(
        subscription_charges.c.subscription_id,
        subscription_charges.c.period,
        subscription_charges.c.fee_millicredits,
    )
    return await _rows(connection, statement, key, periods)


async def licence_rows(
    connection: AsyncConnection, licence_ids: Sequence[str], /
) -> list[dict[str, Any]]:
    statement = sa.select(
        goods_licences.c.licence_id,
        goods_items.c.title,
        goods_licences.c.buyer_id,
        goods_licences.c.provider_id,
        goods_licences.c.fee_millicredits,
    ).join_from(goods_licences, goods_items, goods_licences.c.item_id == goods_items.c.item_id)
    return await _rows(connection, statement, goods_licences.c.licence_id, licence_ids)
