"""The SQL of direct transfers: one record per transfer, beside its ledger chain.

The record keeps what the ledger cannot (the payer's ``transfer_id`` and the
memo) and is what a retry is answered from. Like the other repositories,
every function takes the connection of an already-begun transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import transfers

__all__ = ["get_transfer", "insert_transfer"]


async def get_transfer(connection: AsyncConnection, reference: str, /) -> dict[str, Any] | None:
    row = (
        (await connection.execute(sa.select(transfers).where(transfers.c.reference == reference)))
        .mappings()
        .one_or_none()
    )
    return dict(row) if row is not None else None


async def insert_transfer(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    await connection.execute(transfers.insert().values(**values))
