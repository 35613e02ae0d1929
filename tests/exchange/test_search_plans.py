"""Every search plan gives the same, right answer, on SQLite and PostgreSQL.

A search either starts from a selective filter or walks its sort order
(exchange.domain.search_plans.choose_plan), and each database runs each plan through
different SQL. This builds 400 listings with known words, tags, prices and
reputations, then runs queries covering every filter, every sort and several
pages under every plan that applies, and compares each answer with the same
search done in Python over the listings. It also proves the planner's choice:
the fewest matches below the bound start the search, otherwise the walk,
which probes the full-text index only for words most listings contain.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange import migrate_database
from exchange.adapters import listing_store
from exchange.domain.search_plans import Filter, SearchPlan, SearchQuery, SearchSort, choose_plan
from wallet import open_database
from wallet.database import read_transaction

# Words no stemmer changes, so that Python can tell which listings match.
WORDS = ["zork", "blip", "quax", "frob", "wug", "dax", "plonk", "grum", "vex", "tav"]
TAGS = ["red", "green", "blue", "fast", "cheap"]
CAPABILITIES = ["text.upper", "text.lower", "image.resize"]
LISTING_COUNT = 400


def make_listings(rng: random.Random) -> list[dict]:
    rows = []
    for index in range(LISTING_COUNT):
        provider_id = f"U{index:055d}"
        capability = rng.choice(CAPABILITIES)
        # Skewed word use: the first words are common, the last ones rare.
        words = rng.choices(WORDS, weights=[2**-rank for rank in range(len(WORDS))], k=4)
        settled = rng.randint(0, 30)
        rating_count = rng.randint(0, settled)
        rating_sum = rating_count * rng.randint(1, 5)
        rows.append(
            {
                "listing_id": f"{provider_id}/{capability}",
                "provider_id": provider_id,
                "capability": capability,
                "description": " ".join(words),
                "price_millicredits": rng.randint(1, 50) * 100,
                "input_schema": "{}",
                "output_schema": "{}",
                "version": "1.0.0",
                "status": "inactive" if index % 10 == 0 else "active",
                "created_at_ms": 1_000_000 + rng.randint(0, 50) * 1000,
                "updated_at_ms": 1_000_000,
                "tags": " ".join(sorted(set(rng.sample(TAGS, rng.randint(0, 3))))),
                "revision": 1,
                "settled_count": settled,
                "on_time_count": settled,
                "dispute_count": 0,
                "refund_count": 0,
                "rating_count": rating_count,
                "rating_sum": rating_sum,
                "unique_buyer_count": min(settled, 1),
                "rating_mean": rating_sum / rating_count if rating_count else 0.0,
            }
        )
    return rows


@pytest_asyncio.fixture
async def catalog(database_url: str) -> AsyncIterator[tuple[AsyncEngine, list[dict]]]:
    await migrate_database(database_url)
    engine = open_database(database_url)
    rows = make_listings(random.Random(7))
    async with engine.begin() as connection:
        for row in rows:
            assert await listing_store.insert_listing(connection, row)
            await listing_store.replace_listing_tags(
                connection, row["listing_id"], row["tags"].split()
            )
    try:
        yield engine, rows
    finally:
        await engine.dispose()


_SORT_KEYS = {
    SearchSort.PRICE: lambda row: (row["price_millicredits"], row["listing_id"]),
    SearchSort.RATING: lambda row: (row["rating_mean"], row["rating_count"], row["listing_id"]),
    SearchSort.SETTLED: lambda row: (row["settled_count"], row["listing_id"]),
    SearchSort.NEWEST: lambda row: (row["created_at_ms"], row["listing_id"]),
}


def expected_page(rows: list[dict], query: SearchQuery) -> tuple[list[str], bool]:
    def matches(row: dict) -> bool:
        text = set(row["description"].split()) | set(row["capability"].split("."))
        text |= set(row["tags"].split())
        price = row["price_millicredits"]
        return (
            row["status"] == "active"
            and query.capability in (None, row["capability"])
            and all(term in text for term in query.text_terms)
            and all(tag in row["tags"].split() for tag in query.tags)
            and price >= (query.price_min_millicredits or 0)
            and price <= (query.price_max_millicredits or 10**15)
            and row["rating_mean"] >= (query.rating_min or 0)
            and row["settled_count"] >= (query.settled_count_min or 0)
        )

    ordered = sorted(
        filter(matches, rows),
        key=_SORT_KEYS[query.sort],
        reverse=query.sort is not SearchSort.PRICE,
    )
    page = ordered[query.offset : query.offset + query.limit]
    return [row["listing_id"] for row in page], len(ordered) > query.offset + query.limit


QUERIES = [
    SearchQuery(),
    SearchQuery(sort=SearchSort.RATING, offset=30),
    SearchQuery(sort=SearchSort.SETTLED, limit=7, offset=7),
    SearchQuery(sort=SearchSort.NEWEST, limit=100),
    SearchQuery(text_terms=("zork",)),
    SearchQuery(text_terms=("tav",), sort=SearchSort.RATING),
    SearchQuery(text_terms=("zork", "blip"), price_max_millicredits=2_500),
    SearchQuery(text_terms=("text",), tags=("red",), sort=SearchSort.NEWEST),
    SearchQuery(text_terms=("fast",), limit=5, offset=5),
    SearchQuery(capability="text.upper", sort=SearchSort.SETTLED),
    SearchQuery(capability="image.resize", text_terms=("quax",), tags=("blue",)),
    SearchQuery(tags=("green", "fast"), rating_min=3.0, sort=SearchSort.RATING),
    SearchQuery(price_min_millicredits=1_000, price_max_millicredits=2_000, sort=SearchSort.NEWEST),
    SearchQuery(settled_count_min=20, rating_min=4.0, sort=SearchSort.RATING),
    SearchQuery(capability="text.lower", price_min_millicredits=4_000, limit=3, offset=2),
    SearchQuery(text_terms=("nothing",)),
]


def plans_for(query: SearchQuery) -> list[SearchPlan]:
    plans = [SearchPlan()]
    if query.text_terms:
        plans.extend([SearchPlan(probe_text=True), SearchPlan(start=Filter.TEXT)])
    if query.capability is not None:
        plans.append(SearchPlan(start=Filter.CAPABILITY))
    if query.price_min_millicredits is not None or query.price_max_millicredits is not None:
        plans.append(SearchPlan(start=Filter.PRICE))
    plans.extend(SearchPlan(start=Filter.TAG, tag=tag) for tag in query.tags)
    return plans


@pytest.mark.parametrize("query", QUERIES, ids=[str(index) for index in range(len(QUERIES))])
async def test_every_plan_returns_the_page_a_search_in_python_returns(catalog, query):
    engine, rows = catalog
    expected = expected_page(rows, query)
    async with read_transaction(engine) as connection:
        chosen = await listing_store.search_listings(connection, query)
        assert ([row["listing_id"] for row in chosen[0]], chosen[1]) == expected
        for plan in plans_for(query):
            found, has_more = await listing_store.search_listings(connection, query, plan=plan)
            assert ([row["listing_id"] for row in found], has_more) == expected, plan


def test_the_filter_with_the_fewest_matches_below_the_bound_starts_the_search():
    text, capability = (Filter.TEXT, None), (Filter.CAPABILITY, None)
    assert choose_plan({}) == SearchPlan()
    assert choose_plan({text: 50, capability: 10}, candidates_max=100) == SearchPlan(
        start=Filter.CAPABILITY
    )
    assert choose_plan({text: 50, (Filter.TAG, "red"): 20}, candidates_max=100) == SearchPlan(
        start=Filter.TAG, tag="red"
    )
    assert choose_plan({text: 100, capability: 100}, candidates_max=100) == SearchPlan()
    # A walk probes a tag cheaply, so only a rarer tag starts the search.
    assert choose_plan({(Filter.TAG, "red"): 600}) == SearchPlan()
    assert choose_plan({(Filter.TAG, "red"): 400}) == SearchPlan(start=Filter.TAG, tag="red")
    assert choose_plan({capability: 600}) == SearchPlan(start=Filter.CAPABILITY)


def test_a_walk_probes_the_text_only_for_words_most_listings_contain_on_early_pages():
    text = (Filter.TEXT, None)
    common = {"listing_count": 1_000, "candidates_max": 100}
    assert choose_plan({text: 500}, page_end=21, **common) == SearchPlan(probe_text=True)
    assert choose_plan({text: 499}, page_end=21, **common) == SearchPlan()
    assert choose_plan({text: 900}, page_end=51, **common) == SearchPlan()
    assert choose_plan({text: 900}, page_end=21, listing_count=0, candidates_max=100) == (
        SearchPlan()
    )


async def test_a_search_run_many_times_is_planned_for_its_own_values(catalog):
    """PostgreSQL switches a statement run often to a generic plan, blind to the values
    (a common word with a narrow price range then took 20 to 60 ms instead of 1). A search
    plans for its own values, only inside its own transaction; the answers stay right."""
    engine, rows = catalog
    for price_max in range(500, 5_000, 500):  # more runs than PostgreSQL's five custom plans
        query = SearchQuery(text_terms=("zork",), price_max_millicredits=price_max)
        async with read_transaction(engine) as connection:
            found, has_more = await listing_store.search_listings(connection, query)
            assert ([row["listing_id"] for row in found], has_more) == expected_page(rows, query)
            if engine.dialect.name == "postgresql":
                mode = await connection.exec_driver_sql("SHOW plan_cache_mode")
                assert mode.scalar_one() == "force_custom_plan"
    if engine.dialect.name == "postgresql":
        async with read_transaction(engine) as connection:
            mode = await connection.exec_driver_sql("SHOW plan_cache_mode")
            assert mode.scalar_one() == "auto"  # every other statement keeps the default
