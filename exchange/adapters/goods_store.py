"""The exchange's SQL for digital goods: items, versions, licences.

Every function takes the connection of an already-begun transaction; the
use case decides what is atomic (a licence and the ledger charge of its
price commit together). A licence is unique per (item, buyer): two racing
purchases by one buyer cannot both insert one, and the loser's transaction
is retried by the unit of work (a unique violation is a lost race), where
it finds the winner's licence.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import (
    goods_drafts,
    goods_items,
    goods_licences,
    goods_versions,
)
from exchange.domain.goods_rules import GoodsItemRow, GoodsVersionRow, LicenceRow
from exchange.errors import ErrorCode, ExchangeError
from wallet.ledger_tables import ledger_transfers
from wallet.prepared_statements import PreparedStatement

__all__ = [
    "add_draft",
    "count_provider_items",
    "get_item",
    "get_licence",
    "get_version",
    "goods_payment_problems",
    "holders_reached",
    "insert_item",
    "insert_licence",
    "insert_version",
    "list_items",
    "mark_notified",
    "remove_draft",
    "update_item",
    "versions_announcing",
]

# How a read locks the item row: not at all, against a new version (a purchase,
# so that it sells the current version), or for writing (a publish).
ItemLock = Literal["none", "share", "update"]


async def get_item(
    connection: AsyncConnection, item_id: str, /, *, lock: ItemLock = "none"
) -> GoodsItemRow | None:
    statement = sa.select(goods_items).where(goods_items.c.item_id == item_id)
    if lock != "none":
        statement = statement.with_for_update(read=lock == "share")
    row = (await connection.execute(statement)).mappings().one_or_none()
    return None if row is None else GoodsItemRow(**dict(row))


async def insert_item(connection: AsyncConnection, item: GoodsItemRow, /) -> None:
    await connection.execute(goods_items.insert().values(**asdict(item)))


async def update_item(
    connection: AsyncConnection, before: GoodsItemRow, after: GoodsItemRow, /
) -> None:
    """Write ``after`` over ``before``, compare-and-set on the version a racing publish moves."""
    result = await connection.execute(
        goods_items.update()
        .where(
            goods_items.c.item_id == before.item_id,
            goods_items.c.current_version == before.current_version,
        )
        .values(**asdict(after))
    )
    if result.rowcount != 1:
        raise ExchangeError(ErrorCode.INVALID_STATE, "another version was published; retry")


async def count_provider_items(connection: AsyncConnection, provider_id: str, /) -> int:
    statement = sa.select(sa.func.count()).where(goods_items.c.provider_id == provider_id)
    return int((await connection.execute(statement)).scalar_one())


async def list_items(
    connection: AsyncConnection, /, *, provider_id: str | None, limit: int, offset: int
) -> tuple[list[GoodsItemRow], bool]:
    """Items oldest first, one page; and whether more follow."""
    statement = sa.select(goods_items)
    if provider_id is not None:
        statement = statement.where(goods_items.c.provider_id == provider_id)
    statement = (
        statement.order_by(goods_items.c.created_at_ms, goods_items.c.item_id)
        .offset(offset)
        .limit(limit + 1)
    )
    rows = [GoodsItemRow(**dict(row)) for row in (await connection.execute(statement)).mappings()]
    return rows[:limit], len(rows) > limit


async def get_version(
    connection: AsyncConnection, item_id: str, version: int, /, *, for_update: bool = False
) -> GoodsVersionRow | None:
    statement = sa.select(goods_versions).where(
        goods_versions.c.item_id == item_id, goods_versions.c.version == version
    )
    if for_update:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().one_or_none()
    return None if row is None else GoodsVersionRow(**dict(row))


async def insert_version(connection: AsyncConnection, version: GoodsVersionRow, /) -> None:
    await connection.execute(goods_versions.insert().values(**asdict(version)))


async def get_licence(
    connection: AsyncConnection, item_id: str, buyer_id: str, /
) -> LicenceRow | None:
    statement = sa.select(goods_licences).where(
        goods_licences.c.item_id == item_id, goods_licences.c.buyer_id == buyer_id
    )
    row = (await connection.execute(statement)).mappings().one_or_none()
    return None if row is None else LicenceRow(**dict(row))


async def insert_licence(connection: AsyncConnection, licence: LicenceRow, /) -> None:
    await connection.execute(goods_licences.insert().values(**asdict(licence)))


async def holders_reached(
    connection: AsyncConnection, item_id: str, version: int, /, *, after: str | None, limit: int
) -> list[tuple[str, str]]:
    """(licence id, buyer id) of the licences covering ``version``, in id order, after
    the licence id ``after``: the next batch a new version is announced to."""
    statement = sa.select(goods_licences.c.licence_id, goods_licences.c.buyer_id).where(
        goods_licences.c.item_id == item_id,
        goods_licences.c.min_version <= version,
        sa.or_(goods_licences.c.max_version.is_(None), goods_licences.c.max_version >= version),
    )
    if after is not None:
        statement = statement.where(goods_licences.c.licence_id > after)
    statement = statement.order_by(goods_licences.c.licence_id).limit(limit)
    return [(str(row[0]), str(row[1])) for row in await connection.execute(statement)]


async def mark_notified(
    connection: AsyncConnection, item_id: str, version: int, /, *, through: str | None, done: bool
) -> None:
    await connection.execute(
        goods_versions.update()
        .where(goods_versions.c.item_id == item_id, goods_versions.c.version == version)
        .values(notified_through=through, notices_done=done)
    )


async def versions_announcing(
    connection: AsyncConnection, /, *, limit: int
) -> list[tuple[str, int]]:
    """Versions whose holders are not all notified yet."""
    rows = await _select_versions_announcing.rows(connection, (limit,))
    return [(str(item_id), int(version)) for item_id, version in rows]


# Run every second on every worker, mostly finding nothing: prepared.
_select_versions_announcing = PreparedStatement(
    lambda _dialect: (
        sa.select(goods_versions.c.item_id, goods_versions.c.version)
        .where(goods_versions.c.notices_done.is_(False))
        .order_by(goods_versions.c.published_at_ms)
        .limit(sa.bindparam("limit"))
    ),
    ("limit",),
)


async def goods_payment_problems(connection: AsyncConnection, /) -> dict[str, int]:
    """For the invariants: licences whose price is not what the ledger posted for them,
    and ledger charges of a licence id that no licence row holds."""
    # A licence's charge is the escrow chain of its id (escrow/machine.py): the hold
    # posted in full for the price, and paid out at once.
    posted_id = sa.literal("escrow:") + goods_licences.c.licence_id + sa.literal(":post")
    unpaid = await connection.execute(
        sa.select(sa.func.count())
        .select_from(goods_licences.outerjoin(ledger_transfers, ledger_transfers.c.id == posted_id))
        .where(
            sa.or_(
                ledger_transfers.c.id.is_(None),
                ledger_transfers.c.amount != goods_licences.c.price_millicredits,
            )
        )
    )
    orphaned = await connection.execute(
        sa.select(sa.func.count(sa.distinct(ledger_transfers.c.user_data))).where(
            ledger_transfers.c.user_data.startswith("lic_", autoescape=True),
            ledger_transfers.c.user_data.not_in(sa.select(goods_licences.c.licence_id)),
        )
    )
    return {
        "licences_not_paid": int(unpaid.scalar_one()),
        "payments_without_licence": int(orphaned.scalar_one()),
    }


async def add_draft(
    connection: AsyncConnection, storage_key: str, provider_id: str, /, *, now_ms: int
) -> int | None:
    """Record an upload's version as a draft; None when it was one already, else how
    many drafts the provider had before it."""
    exists = await connection.execute(
        sa.select(goods_drafts.c.storage_key).where(goods_drafts.c.storage_key == storage_key)
    )
    if exists.first() is not None:
        return None
    count = await connection.execute(
        sa.select(sa.func.count()).where(goods_drafts.c.provider_id == provider_id)
    )
    before = int(count.scalar_one())
    await connection.execute(
        goods_drafts.insert().values(
            storage_key=storage_key, provider_id=provider_id, created_at_ms=now_ms
        )
    )
    return before


async def remove_draft(connection: AsyncConnection, storage_key: str, /) -> None:
    """A published version is no draft any more."""
    await connection.execute(goods_drafts.delete().where(goods_drafts.c.storage_key == storage_key))
