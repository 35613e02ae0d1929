"""The catalog's SQL: listings and their revisions and tags, search, ratings, reputation.

Like :mod:`exchange.adapters.contract_store`, every function takes the connection of an
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

from agent_client.limits import PRICE_MILLICREDITS_MAX
from exchange.adapters.exchange_tables import (
    contracts,
    listing_revisions,
    listing_tags,
    listings,
    ratings,
    reputation_buyers,
)
from exchange.domain.contract_states import SETTLED_STATES, ContractState
from exchange.domain.search_plans import (
    Filter,
    SearchPlan,
    SearchQuery,
    SearchSort,
    choose_plan,
    indexed_filters,
)
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SEARCH_CANDIDATES_MAX, SEARCH_TEXT_COUNT_MAX
from wallet.prepared_statements import PreparedStatement, among, id_list

__all__ = [
    "add_listing_revision",
    "add_rating_to_listing",
    "get_listing",
    "get_listings",
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


async def get_listings(
    connection: AsyncConnection, listing_ids: Sequence[str], /
) -> dict[str, dict[str, Any]]:
    """The listings among ``listing_ids`` that exist, by id (one query)."""
    if not listing_ids:
        return {}
    values = (id_list(connection, sorted(set(listing_ids))),)
    rows = await _select_listings.rows(connection, values)
    return {str(row[0]): dict(zip(_LISTING_COLUMNS, row, strict=True)) for row in rows}


_LISTING_COLUMNS = tuple(column.name for column in listings.columns)
assert _LISTING_COLUMNS[0] == "listing_id"
_select_listings = PreparedStatement(
    lambda dialect: sa.select(listings).where(among(dialect, listings.c.listing_id, "ids")),
    ("ids",),
)


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
    connection: AsyncConnection, query: SearchQuery, /, *, plan: SearchPlan | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Active listings matching every filter, in the query's order; and whether more follow.

    First counts each indexed filter's matches (one round trip, each count
    stopping at its bound), then runs the search the way :func:`choose_plan`
    picks. Every plan gives the same answer, only faster or slower; ``plan``
    pins one (the tests check each against the others).
    """
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        # A search's statement is prepared once and run with ever other values;
        # after five runs PostgreSQL may switch to a generic plan, blind to the
        # values, and a common word with a narrow price range then took 20 to
        # 60 ms instead of 1 (measured). Planning each search for its own values
        # costs a fraction of a millisecond; SET LOCAL ends with the transaction.
        await connection.exec_driver_sql(_CUSTOM_PLANS)
    if plan is None:
        counts, listing_count = await _candidate_counts(connection, query, postgresql=postgresql)
        plan = choose_plan(
            counts, listing_count=listing_count, page_end=query.offset + query.limit + 1
        )
    search = _SearchSql(query, plan, postgresql=postgresql)
    result = await connection.execute(sa.text(search.statement()), search.parameters)
    rows = [dict(row) for row in result.mappings()]
    return rows[: query.limit], len(rows) > query.limit


async def _candidate_counts(
    connection: AsyncConnection, query: SearchQuery, /, *, postgresql: bool
) -> tuple[dict[tuple[Filter, str | None], int], int]:
    """Each indexed filter's matches, counted up to its bound; and, when the
    text is among them, about how many listings there are (SQLite only)."""
    filters = indexed_filters(query)
    if postgresql:
        # PostgreSQL's planner keeps statistics on text, capability and price
        # and chooses well; a tag lives in a join table it estimates poorly.
        filters = [(filter_, tag) for filter_, tag in filters if filter_ is Filter.TAG]
    if not filters:
        return {}, 0
    parameters = _filter_parameters(query)
    parameters.update(candidates_max=SEARCH_CANDIDATES_MAX, text_count_max=SEARCH_TEXT_COUNT_MAX)
    columns = []
    for index, (filter_, tag) in enumerate(filters):
        if tag is not None:
            parameters[f"count_tag_{index}"] = tag
        source = _candidate_source(filter_, f"count_tag_{index}", postgresql=postgresql)
        bound = ":text_count_max" if filter_ is Filter.TEXT else ":candidates_max"
        columns.append(f"(SELECT count(*) FROM ({source} LIMIT {bound}) AS counted_{index})")
    if (Filter.TEXT, None) in filters:
        # Every listing ever created has a document id, in order: the largest
        # is the number of listings, read from an index without counting them.
        columns.append("(SELECT coalesce(max(document_id), 0) FROM exchange_listings)")
    row = (await connection.execute(sa.text("SELECT " + ", ".join(columns)), parameters)).one()
    counts = {filter_: int(count) for filter_, count in zip(filters, row, strict=False)}
    listing_count = int(row[len(filters)]) if len(row) > len(filters) else 0
    return counts, listing_count


def _candidate_source(filter_: Filter, tag_parameter: str, /, *, postgresql: bool) -> str:
    """The listing ids one filter matches, read through that filter's index."""
    if filter_ is Filter.TEXT:
        if postgresql:
            return f"SELECT listing_id FROM exchange_listings WHERE {_PG_TEXT_MATCH}"
        # Counted only (a SQLite search starting from the text joins it itself).
        return "SELECT rowid FROM exchange_listings_fts WHERE exchange_listings_fts MATCH :match"
    if filter_ is Filter.CAPABILITY:
        return (
            "SELECT listing_id FROM exchange_listings "
            f"WHERE capability = :capability AND status = '{ACTIVE}'"
        )
    if filter_ is Filter.PRICE:
        return (
            f"SELECT listing_id FROM exchange_listings WHERE status = '{ACTIVE}' AND {_PRICE_RANGE}"
        )
    return f"SELECT listing_id FROM exchange_listing_tags WHERE tag = :{tag_parameter}"


_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"
# Listings' own columns (PostgreSQL's generated tsvector stays in the database).
_COLUMNS = ", ".join(f"l.{column.name}" for column in listings.columns)
_PG_TEXT_MATCH = "search_document @@ plainto_tsquery('english'::regconfig, :words)"
# A missing bound is the widest one, so one range expression serves all cases.
_PRICE_RANGE = "price_millicredits >= :price_min AND price_millicredits <= :price_max"
# Per sort: its index (migration catalog_0001) and the ORDER BY it serves; a
# final listing id makes pages stable.
_SORTS = {
    SearchSort.PRICE: ("exchange_listings_by_price", "l.price_millicredits, l.listing_id"),
    SearchSort.RATING: (
        "exchange_listings_by_rating",
        "l.rating_mean DESC, l.rating_count DESC, l.listing_id DESC",
    ),
    SearchSort.SETTLED: (
        "exchange_listings_by_settled",
        "l.settled_count DESC, l.listing_id DESC",
    ),
    SearchSort.NEWEST: (
        "exchange_listings_by_created",
        "l.created_at_ms DESC, l.listing_id DESC",
    ),
}


def _filter_parameters(query: SearchQuery, /) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "capability": query.capability,
        "price_min": query.price_min_millicredits or 0,
        "price_max": query.price_max_millicredits or PRICE_MILLICREDITS_MAX,
        "rating_min": query.rating_min,
        "settled_count_min": query.settled_count_min,
        # Each term quoted: terms are letters and digits only (exchange.domain.search_plans),
        # so no FTS5 operator can reach the match expression.
        "match": " ".join(f'"{term}"' for term in query.text_terms),
        "words": " ".join(query.text_terms),
    }
    parameters.update({f"tag_{index}": tag for index, tag in enumerate(query.tags)})
    return parameters


class _SearchSql:
    """One search as SQL text with bound parameters, following its plan.

    Only fixed fragments and index names from this module reach the text;
    every value is a bound parameter. SQLite is told its plan (INDEXED BY,
    and CROSS JOIN, which SQLite never reorders); PostgreSQL starts from a
    filter through a MATERIALIZED common table expression, which it does not
    inline, and otherwise plans the walk itself.
    """

    def __init__(self, query: SearchQuery, plan: SearchPlan, /, *, postgresql: bool) -> None:
        self.query = query
        self.plan = plan
        self.postgresql = postgresql
        self.parameters = _filter_parameters(query)
        self.parameters.update(limit=query.limit + 1, offset=query.offset)
        self.parameters["start_tag"] = plan.tag

    def statement(self) -> str:
        sort_index, order = _SORTS[self.query.sort]
        conditions = " AND ".join(self._conditions())
        if not self.postgresql:
            return (
                f"SELECT {_COLUMNS} FROM {self._source(sort_index)} WHERE {conditions} "
                f"ORDER BY {order} LIMIT :limit OFFSET :offset"
            )
        if self.plan.start is not None:
            candidates = _candidate_source(self.plan.start, "start_tag", postgresql=True)
            # LATERAL (kept apart by OFFSET 0, which PostgreSQL never flattens):
            # one primary-key lookup per candidate, never a scan of every
            # listing to hash-join a few hundred candidates.
            return (
                f"WITH candidates AS MATERIALIZED ({candidates}) SELECT {_COLUMNS} "
                "FROM candidates AS c CROSS JOIN LATERAL (SELECT * FROM exchange_listings "
                "WHERE listing_id = c.listing_id OFFSET 0) AS l "
                f"WHERE {conditions} ORDER BY {order} LIMIT :limit OFFSET :offset"
            )
        # The page's ids first, then their rows: skipping to a deep offset then
        # reads only the sort index (an index-only scan), not every skipped row.
        return (
            f"SELECT {_COLUMNS} FROM (SELECT l.listing_id FROM exchange_listings AS l "
            f"WHERE {conditions} ORDER BY {order} LIMIT :limit OFFSET :offset) AS page "
            f"JOIN exchange_listings AS l ON l.listing_id = page.listing_id ORDER BY {order}"
        )

    def _source(self, sort_index: str) -> str:
        """SQLite's FROM clause: the plan spelled out, so the planner cannot pick another."""
        start = self.plan.start
        if start is Filter.TEXT:
            return (
                "exchange_listings_fts AS f "
                "CROSS JOIN exchange_listings AS l ON l.document_id = f.rowid"
            )
        if start is Filter.TAG:
            return (
                "exchange_listing_tags AS t "
                "CROSS JOIN exchange_listings AS l ON l.listing_id = t.listing_id"
            )
        index = {
            None: sort_index,
            Filter.CAPABILITY: "exchange_listings_by_capability",
            Filter.PRICE: "exchange_listings_by_price",
        }[start]
        return f"exchange_listings AS l INDEXED BY {index}"

    def _conditions(self) -> list[str]:
        query, start = self.query, self.plan.start
        conditions = [f"l.status = '{ACTIVE}'"]
        if query.capability is not None:
            conditions.append("l.capability = :capability")
        if query.price_min_millicredits is not None or query.price_max_millicredits is not None:
            conditions.append(_PRICE_RANGE.replace("price_millicredits", "l.price_millicredits"))
        if query.rating_min is not None:
            conditions.append("l.rating_mean >= :rating_min")
        if query.settled_count_min is not None:
            conditions.append("l.settled_count >= :settled_count_min")
        if query.text_terms:
            conditions.append(self._text_condition())
        for index, tag in enumerate(query.tags):
            if start is Filter.TAG and tag == self.plan.tag:
                if not self.postgresql:
                    conditions.append("t.tag = :start_tag")
                continue
            # One primary-key probe per listing reached: cheaper than
            # collecting every listing a common tag is on.
            conditions.append(
                "EXISTS (SELECT 1 FROM exchange_listing_tags AS x "
                f"WHERE x.tag = :tag_{index} AND x.listing_id = l.listing_id)"
            )
        return conditions

    def _text_condition(self) -> str:
        if self.postgresql:
            return "l." + _PG_TEXT_MATCH
        if self.plan.start is Filter.TEXT:
            return "f.exchange_listings_fts MATCH :match"
        if self.plan.probe_text:
            return (
                "EXISTS (SELECT 1 FROM exchange_listings_fts AS p "
                "WHERE p.exchange_listings_fts MATCH :match AND p.rowid = l.document_id)"
            )
        # Membership in the set of matching documents, built once per search.
        return (
            "+l.document_id IN (SELECT rowid FROM exchange_listings_fts "
            "WHERE exchange_listings_fts MATCH :match)"
        )


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
    settled = [state.value for state in SETTLED_STATES]

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
        "refund_count": settled_count(contracts.c.state == ContractState.REFUNDED.value),
        "dispute_count": settled_count(contracts.c.state == ContractState.RESOLVED.value),
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
