"""The catalog's SQL: listings and their revisions and tags, search, ratings, reputation.

Like :mod:`exchange.repository`, every function takes the connection of an
already-begun transaction. Full-text search is the one place where the two
databases differ: FTS5 on SQLite, a ``tsvector`` column on PostgreSQL (both
created by migration ``catalog_0001``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.errors import ErrorCode, ExchangeError
from exchange.reputation import SettledOutcome, settled_states
from exchange.schema import (
    contracts,
    listing_revisions,
    listing_tags,
    listings,
    ratings,
    reputation_buyers,
)
from exchange.search import SearchQuery, SearchSort

__all__ = [
    "add_listing_revision",
    "add_rating_to_listing",
    "get_listing",
    "get_rating",
    "insert_listing",
    "insert_rating",
    "listing_revision_rows",
    "provider_listings",
    "provider_reputation_totals",
    "provider_unique_buyer_count",
    "recent_ratings",
    "replace_listing_tags",
    "reputation_drift",
    "search_listings",
    "update_listing",
]

ACTIVE = "active"

# The ORDER BY of each sort; a final listing id makes pages stable. Each
# matches an index of migration catalog_0001 (read backwards when descending).
_ORDER_BY: dict[SearchSort, tuple[sa.ColumnElement[Any], ...]] = {
    SearchSort.PRICE: (listings.c.price_millicredits, listings.c.listing_id),
    SearchSort.RATING: (
        listings.c.rating_mean.desc(),
        listings.c.rating_count.desc(),
        listings.c.listing_id.desc(),
    ),
    SearchSort.SETTLED: (listings.c.settled_count.desc(), listings.c.listing_id.desc()),
    SearchSort.NEWEST: (listings.c.created_at_ms.desc(), listings.c.listing_id.desc()),
}

# SQLite's full-text tables (not in exchange.schema: they exist on SQLite only).
_fts = sa.table("exchange_listings_fts", sa.column("rowid", sa.Integer))
_search_ids = sa.table(
    "exchange_listing_search_ids",
    sa.column("document_id", sa.Integer),
    sa.column("listing_id", sa.Text),
)


async def get_listing(
    connection: AsyncConnection, listing_id: str, /, *, for_update: bool = False
) -> dict[str, Any] | None:
    statement = sa.select(listings).where(listings.c.listing_id == listing_id)
    if for_update:
        # PostgreSQL: two edits of one listing queue up instead of both
        # deriving the same next revision. SQLite has one writer anyway.
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().one_or_none()
    return dict(row) if row is not None else None


async def insert_listing(connection: AsyncConnection, values: Mapping[str, Any], /) -> bool:
    """Insert a new listing; False (and nothing written) when it already exists."""
    result = await connection.execute(
        _insert_ignoring_conflicts(connection, listings).values(**values)
    )
    return result.rowcount == 1


async def update_listing(
    connection: AsyncConnection, listing_id: str, changes: Mapping[str, Any], /
) -> None:
    result = await connection.execute(
        listings.update().where(listings.c.listing_id == listing_id).values(**changes)
    )
    assert result.rowcount == 1, listing_id


async def add_listing_revision(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    await connection.execute(listing_revisions.insert().values(**values))


async def replace_listing_tags(
    connection: AsyncConnection, listing_id: str, tags: Sequence[str], /
) -> None:
    await connection.execute(listing_tags.delete().where(listing_tags.c.listing_id == listing_id))
    if tags:
        await connection.execute(
            listing_tags.insert(), [{"tag": tag, "listing_id": listing_id} for tag in tags]
        )


async def listing_revision_rows(
    connection: AsyncConnection, listing_id: str, /, *, limit: int, before_revision: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """A listing's revisions, newest first; and whether older ones follow."""
    statement = sa.select(listing_revisions).where(listing_revisions.c.listing_id == listing_id)
    if before_revision is not None:
        statement = statement.where(listing_revisions.c.revision < before_revision)
    statement = statement.order_by(listing_revisions.c.revision.desc()).limit(limit + 1)
    rows = [dict(row) for row in (await connection.execute(statement)).mappings()]
    return rows[:limit], len(rows) > limit


async def search_listings(
    connection: AsyncConnection, query: SearchQuery, /
) -> tuple[list[dict[str, Any]], bool]:
    """Active listings matching every filter, in the query's order; and whether more follow."""
    statement = sa.select(listings).where(listings.c.status == ACTIVE)
    if query.capability is not None:
        statement = statement.where(listings.c.capability == query.capability)
    if query.price_min_millicredits is not None:
        statement = statement.where(listings.c.price_millicredits >= query.price_min_millicredits)
    if query.price_max_millicredits is not None:
        statement = statement.where(listings.c.price_millicredits <= query.price_max_millicredits)
    if query.rating_min is not None:
        statement = statement.where(listings.c.rating_mean >= query.rating_min)
    if query.settled_count_min is not None:
        statement = statement.where(listings.c.settled_count >= query.settled_count_min)
    for tag in query.tags:
        tagged = sa.select(listing_tags.c.listing_id).where(listing_tags.c.tag == tag)
        statement = statement.where(listings.c.listing_id.in_(tagged))
    if query.text_terms:
        statement = statement.where(_text_match(connection.dialect.name, query.text_terms))
    statement = (
        statement.order_by(*_ORDER_BY[query.sort]).limit(query.limit + 1).offset(query.offset)
    )
    rows = [dict(row) for row in (await connection.execute(statement)).mappings()]
    return rows[: query.limit], len(rows) > query.limit


def _text_match(dialect_name: str, terms: Sequence[str]) -> sa.ColumnElement[bool]:
    """Listings whose capability, description or tags contain every term (stemmed)."""
    assert terms
    if dialect_name == "postgresql":
        return sa.literal_column("exchange_listings.search_document").op("@@")(
            sa.func.plainto_tsquery(sa.literal_column("'english'::regconfig"), " ".join(terms))
        )
    # Each term quoted: terms are letters and digits only (exchange.search), so
    # no FTS5 operator can reach the match expression.
    match = " ".join(f'"{term}"' for term in terms)
    documents = sa.select(_fts.c.rowid).where(
        sa.literal_column("exchange_listings_fts").op("MATCH")(match)
    )
    matching = sa.select(_search_ids.c.listing_id).where(_search_ids.c.document_id.in_(documents))
    return listings.c.listing_id.in_(matching)


async def insert_rating(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    # The use case checks first; this catches two ratings of one contract
    # racing past that check. The caller's transaction then rolls back whole.
    try:
        await connection.execute(ratings.insert().values(**values))
    except IntegrityError as exc:
        raise ExchangeError(
            ErrorCode.ALREADY_RATED,
            "this contract is already rated",
            contract_id=str(values["contract_id"]),
        ) from exc


async def get_rating(connection: AsyncConnection, contract_id: str, /) -> dict[str, Any] | None:
    row = (
        (await connection.execute(sa.select(ratings).where(ratings.c.contract_id == contract_id)))
        .mappings()
        .one_or_none()
    )
    return dict(row) if row is not None else None


async def add_rating_to_listing(
    connection: AsyncConnection, /, *, provider_id: str, capability: str, stars: int
) -> None:
    # Expressions on the right read the row as it is when the update applies
    # (PostgreSQL re-reads it after waiting for a concurrent rating's lock).
    await connection.execute(
        listings.update()
        .where(listings.c.provider_id == provider_id, listings.c.capability == capability)
        .values(
            rating_count=listings.c.rating_count + 1,
            rating_sum=listings.c.rating_sum + stars,
            rating_mean=sa.cast(listings.c.rating_sum + stars, sa.Float)
            / (listings.c.rating_count + 1),
        )
    )


async def provider_listings(
    connection: AsyncConnection, provider_id: str, /, *, capability: str | None, limit: int
) -> list[dict[str, Any]]:
    """A provider's listings (any status), busiest first."""
    statement = sa.select(listings).where(listings.c.provider_id == provider_id)
    if capability is not None:
        statement = statement.where(listings.c.capability == capability)
    statement = statement.order_by(listings.c.settled_count.desc(), listings.c.capability).limit(
        limit
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def provider_reputation_totals(
    connection: AsyncConnection, provider_id: str, /
) -> dict[str, Any]:
    """The sums of a provider's counters over all its listings."""
    names = (
        "settled_count",
        "on_time_count",
        "dispute_count",
        "refund_count",
        "rating_count",
        "rating_sum",
    )
    statement = sa.select(
        *(sa.func.coalesce(sa.func.sum(listings.c[name]), 0).label(name) for name in names)
    ).where(listings.c.provider_id == provider_id)
    return dict((await connection.execute(statement)).mappings().one())


async def provider_unique_buyer_count(
    connection: AsyncConnection, provider_id: str, /, *, capability: str | None
) -> int:
    """Distinct buyers of a provider's settled contracts (across capabilities when None)."""
    statement = sa.select(sa.func.count(sa.distinct(reputation_buyers.c.buyer_id))).where(
        reputation_buyers.c.provider_id == provider_id
    )
    if capability is not None:
        statement = statement.where(reputation_buyers.c.capability == capability)
    return int((await connection.execute(statement)).scalar_one())


async def recent_ratings(
    connection: AsyncConnection, provider_id: str, /, *, capability: str | None, limit: int
) -> list[dict[str, Any]]:
    if limit == 0:
        return []
    statement = sa.select(ratings).where(ratings.c.provider_id == provider_id)
    if capability is not None:
        statement = statement.where(ratings.c.capability == capability)
    statement = statement.order_by(ratings.c.rated_at_ms.desc(), ratings.c.contract_id).limit(limit)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def reputation_drift(connection: AsyncConnection, /) -> list[str]:
    """Listings whose reputation counters differ from a recount (must be none).

    The counters are kept incrementally (a trigger on contract settlement and
    the rating use case); this recounts from contracts and ratings, so a
    settlement path that bypassed the trigger, or a settled state the trigger
    does not know, shows up here.
    """
    settled = [state.value for state in settled_states()]

    def settled_count(*conditions: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.count())
            .where(
                contracts.c.provider_id == listings.c.provider_id,
                contracts.c.capability == listings.c.capability,
                contracts.c.state.in_(settled),
                *conditions,
            )
            .scalar_subquery()
        )

    rated = sa.and_(
        ratings.c.provider_id == listings.c.provider_id,
        ratings.c.capability == listings.c.capability,
    )
    buyers = (
        sa.select(sa.func.count(sa.distinct(contracts.c.buyer_id)))
        .where(
            contracts.c.provider_id == listings.c.provider_id,
            contracts.c.capability == listings.c.capability,
            contracts.c.state.in_(settled),
        )
        .scalar_subquery()
    )
    recounts = {
        "settled_count": settled_count(),
        "on_time_count": settled_count(contracts.c.result_sha256.is_not(None)),
        "refund_count": settled_count(contracts.c.state == SettledOutcome.REFUNDED.value),
        "dispute_count": settled_count(contracts.c.state == SettledOutcome.RESOLVED.value),
        "unique_buyer_count": buyers,
        "rating_count": sa.select(sa.func.count()).where(rated).scalar_subquery(),
        "rating_sum": sa.select(sa.func.coalesce(sa.func.sum(ratings.c.stars), 0))
        .where(rated)
        .scalar_subquery(),
    }
    statement = sa.select(
        listings.c.listing_id,
        listings.c.rating_mean,
        *(listings.c[name] for name in recounts),
        *(recount.label(f"recount_{name}") for name, recount in recounts.items()),
    )
    problems: list[str] = []
    for row in (await connection.execute(statement)).mappings():
        for name in recounts:
            if int(row[name]) != int(row[f"recount_{name}"]):
                problems.append(
                    f"listing {row['listing_id']}: {name} {row[name]} "
                    f"!= recount {row[f'recount_{name}']}"
                )
        expected_mean = row["rating_sum"] / row["rating_count"] if row["rating_count"] else 0.0
        if abs(float(row["rating_mean"]) - expected_mean) > 1e-9:
            problems.append(f"listing {row['listing_id']}: rating_mean {row['rating_mean']}")
    return problems


def _insert_ignoring_conflicts(connection: AsyncConnection, table: sa.Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
