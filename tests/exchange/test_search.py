"""Catalog search, listing revisions and schema checks, over real NATS and a real database.

Proves on SQLite (FTS5) and PostgreSQL (tsvector): search matches stemmed
words of capabilities, descriptions and tags, and any text is just words (no
query operators reach the index); it filters by capability, tags, price range
and minimum reputation and sorts by price, rating, settled count or age;
pages walk every result once, while absurd paging, too many or malformed tags
and an upside-down price range are refused with their codes; a page of large
listings is cut to fit one message and says so. Editing a listing records a
revision (advertising the same fields again does not), deactivating hides it
from search and from new contracts, reactivating brings it back, and the
history pages newest first. A listing with an invalid JSON Schema is refused
and nothing is stored.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import ExchangeError, QuoteRequest

PRICE = 1_000
GRANT = 100_000


async def error_code(call):
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value.code


async def listed(exchange, capability, description, *, price=PRICE, tags=()):
    provider = await exchange.agent()
    await provider.advertise(
        capability, description=description, price_millicredits=price, tags=tags
    )
    return provider


def capabilities(reply):
    return [listing.capability for listing in reply.listings]


async def test_text_search_matches_stemmed_words_of_capability_description_and_tags(exchange):
    await listed(exchange, "text.translate", "Translates English text into French", tags=["fr"])
    await listed(exchange, "image.resize", "Resizes pictures", tags=["images", "fast"])
    await listed(exchange, "text.upper", "Upper-cases text", tags=["fast"])
    searcher = await exchange.agent()
    assert capabilities(await searcher.search(text="translating")) == ["text.translate"]
    assert capabilities(await searcher.search(text="RESIZE")) == ["image.resize"]
    assert capabilities(await searcher.search(text="upper")) == ["text.upper"]
    assert sorted(capabilities(await searcher.search(text="fast"))) == [
        "image.resize",
        "text.upper",
    ]
    # Every word must match.
    assert capabilities(await searcher.search(text="text french")) == ["text.translate"]
    assert capabilities(await searcher.search(text="french pictures")) == []


@pytest.mark.parametrize(
    "text", ['NOT "a* OR (b', "text:upper", "^^^ ---", "'; DROP TABLE x; --", "upper*"]
)
async def test_any_search_text_is_taken_as_plain_words(exchange, text):
    await listed(exchange, "text.upper", "Upper-cases text")
    searcher = await exchange.agent()
    reply = await searcher.search(text=text)
    assert reply.has_more is False


async def test_search_filters_by_capability_tags_price_range_and_reputation(exchange):
    await listed(exchange, "text.upper", "shout", price=500, tags=["text", "cheap"])
    await listed(exchange, "text.upper", "shout", price=1_500, tags=["text"])
    await listed(exchange, "text.lower", "whisper", price=900, tags=["text", "cheap"])
    searcher = await exchange.agent()

    def prices(reply):
        return [listing.price_millicredits for listing in reply.listings]

    assert prices(await searcher.search(capability="text.upper")) == [500, 1_500]
    assert prices(await searcher.search(tags=["cheap"])) == [500, 900]
    assert prices(await searcher.search(tags=["cheap", "text"], capability="text.lower")) == [900]
    assert prices(await searcher.search(tags=["nothing"])) == []
    assert prices(await searcher.search(price_min_millicredits=600)) == [900, 1_500]
    assert prices(
        await searcher.search(price_min_millicredits=600, price_max_millicredits=1_000)
    ) == [900]
    assert prices(await searcher.search(rating_min=1)) == []
    assert prices(await searcher.search(settled_count_min=1)) == []
    assert prices(await searcher.search(settled_count_min=0)) == [500, 900, 1_500]
    [listing] = (await searcher.search(capability="text.lower")).listings
    assert listing.tags == ["cheap", "text"]
    assert listing.reputation is not None and listing.reputation.settled_count == 0


async def test_search_sorts_by_price_rating_settled_count_and_newest(exchange):
    async def echo(task):
        return task

    for name, price in (("a", 3_000), ("b", 1_000), ("c", 2_000)):
        provider = await exchange.agent()
        await provider.advertise(f"sort.{name}", description="echo", price_millicredits=price)
        await provider.serve(f"sort.{name}", echo, pricing=price)
        # Distinct creation times, so that "newest" has one right answer.
        await asyncio.sleep(0.01)
    buyer = await exchange.funded_agent(GRANT)

    async def settle_and_rate(name, stars):
        quotes = await buyer.request_quotes(
            QuoteRequest(f"sort.{name}", "x", budget_millicredits=GRANT, quotes_max=1)
        )
        contract = await buyer.hire(quotes[0], {})
        await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
        await contract.rate(stars)

    # a: two contracts rated 3 (mean 3); b: one rated 5; c: none.
    await settle_and_rate("a", 3)
    await settle_and_rate("a", 3)
    await settle_and_rate("b", 5)

    async def order(**options):
        return [capability[-1] for capability in capabilities(await buyer.search(**options))]

    assert await order() == ["b", "c", "a"]
    assert await order(sort="price") == ["b", "c", "a"]
    assert await order(sort="rating") == ["b", "a", "c"]
    assert await order(sort="settled") == ["a", "b", "c"]
    assert await order(sort="newest") == ["c", "b", "a"]
    assert await order(rating_min=4) == ["b"]
    assert await order(rating_min=3, sort="rating") == ["b", "a"]
    assert await order(settled_count_min=2) == ["a"]
    await exchange.check_invariants()


async def test_pages_walk_every_result_once(exchange):
    for index in range(25):
        await listed(exchange, "paged.cap", f"listing {index}", price=1_000 + index)
    searcher = await exchange.agent()
    seen, offset, has_more = [], 0, True
    while has_more:
        reply = await searcher.search(capability="paged.cap", limit=10, offset=offset)
        assert reply.offset == offset
        seen.extend(listing.price_millicredits for listing in reply.listings)
        offset, has_more = offset + len(reply.listings), reply.has_more
    assert seen == [1_000 + index for index in range(25)]
    assert (await searcher.search(capability="paged.cap", offset=25)).listings == []


@pytest.mark.parametrize(
    "options",
    [
        {"offset": 10_001},
        {"offset": -1},
        {"limit": 0},
        {"limit": 101},
        {"limit": 10**9, "offset": 10**12},
        {"tags": ["a", "b", "c", "d", "e"]},
        {"tags": ["Upper"]},
        {"text": "x" * 129},
        {"rating_min": 5.5},
        {"sort": "random"},
    ],
    ids=[
        "offset-too-deep",
        "negative-offset",
        "empty-page",
        "page-too-large",
        "absurd",
        "too-many-tags",
        "bad-tag",
        "text-too-long",
        "rating-above-five",
        "unknown-sort",
    ],
)
async def test_absurd_paging_and_out_of_bounds_filters_are_malformed(exchange, options):
    searcher = await exchange.agent()
    assert await error_code(searcher.search(**options)) == "malformed"


async def test_an_upside_down_price_range_is_an_invalid_request(exchange):
    searcher = await exchange.agent()
    call = searcher.search(price_min_millicredits=2_000, price_max_millicredits=1_000)
    assert await error_code(call) == "invalid_request"


async def test_a_page_of_large_listings_is_cut_to_fit_one_message_and_says_so(exchange):
    # About 15 KiB of schema per listing: sixty of them cannot share one reply
    # (a signed reply's body stays under REPLY_BODY_BYTES_MAX, about 750 KiB).
    schema = {"type": "object", "description": "x" * 15_000}
    for index in range(60):
        provider = await exchange.agent()
        await provider.advertise(
            "big.schema", description="big", price_millicredits=1_000 + index, input_schema=schema
        )
    searcher = await exchange.agent()
    first = await searcher.search(capability="big.schema", limit=100)
    assert 0 < len(first.listings) < 60 and first.has_more
    rest = await searcher.search(capability="big.schema", limit=100, offset=len(first.listings))
    assert len(first.listings) + len(rest.listings) == 60 and not rest.has_more


async def test_editing_records_revisions_and_the_same_fields_again_change_nothing(exchange):
    provider = await listed(exchange, "text.upper", "Upper-cases text", tags=["text"])
    again = await provider.advertise(
        "text.upper", description="Upper-cases text", price_millicredits=PRICE, tags=["text"]
    )
    assert again.revision == 1
    edited = await provider.advertise(
        "text.upper", description="Shouts text", price_millicredits=2 * PRICE, tags=["loud"]
    )
    assert (edited.revision, edited.tags, edited.price_millicredits) == (2, ["loud"], 2 * PRICE)
    searcher = await exchange.agent()
    assert capabilities(await searcher.search(text="shouts", tags=["loud"])) == ["text.upper"]
    assert capabilities(await searcher.search(text="upper")) == ["text.upper"]
    # The old description left the text index with its revision.
    assert capabilities(await searcher.search(text="cases")) == []
    assert capabilities(await searcher.search(tags=["text"])) == []

    history = await searcher.listing_history(provider.agent_id, "text.upper")
    assert [revision.revision for revision in history.revisions] == [2, 1]
    assert [revision.description for revision in history.revisions] == [
        "Shouts text",
        "Upper-cases text",
    ]
    assert history.listing_id == f"{provider.agent_id}/text.upper" and not history.has_more


async def test_deactivating_hides_a_listing_and_refuses_new_contracts_until_reactivated(
    exchange,
):
    async def upper(task):
        return task

    provider = await listed(exchange, "text.upper", "Upper-cases text")
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    hidden = await provider.deactivate("text.upper")
    assert (hidden.status, hidden.revision) == ("inactive", 2)
    assert (await buyer.search(capability="text.upper")).listings == []
    # Quotes travel peer to peer, but the exchange opens no contract on them.
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    assert await error_code(buyer.hire(quotes[0], {"text": "a"})) == "not_found"
    assert (await buyer.balance()).available_millicredits == GRANT

    shown = await provider.reactivate("text.upper")
    assert (shown.status, shown.revision) == ("active", 3)
    assert (await provider.reactivate("text.upper")).revision == 3
    assert capabilities(await buyer.search(capability="text.upper")) == ["text.upper"]
    history = await buyer.listing_history(provider.agent_id, "text.upper", limit=2)
    assert [revision.status for revision in history.revisions] == ["active", "inactive"]
    assert history.has_more
    older = await buyer.listing_history(provider.agent_id, "text.upper", before_revision=2)
    assert [revision.revision for revision in older.revisions] == [1]
    await exchange.check_invariants()


async def test_changing_the_status_of_an_unknown_listing_or_reading_its_history_is_not_found(
    exchange,
):
    provider = await exchange.agent()
    assert await error_code(provider.deactivate("never.listed")) == "not_found"
    assert await error_code(provider.listing_history(provider.agent_id, "never.listed")) == (
        "not_found"
    )


@pytest.mark.parametrize(
    "schemas",
    [
        {"input_schema": {"type": "nonsense"}},
        {"output_schema": {"minimum": "five"}},
        {"input_schema": {"properties": {"x": {"type": 7}}}},
        {"output_schema": {"required": "x"}},
    ],
    ids=["unknown-type", "minimum-not-a-number", "nested-bad-type", "required-not-a-list"],
)
async def test_a_listing_with_an_invalid_json_schema_is_refused_and_not_stored(exchange, schemas):
    provider = await exchange.agent()
    call = provider.advertise("text.upper", description="u", price_millicredits=PRICE, **schemas)
    assert await error_code(call) == "invalid_schema"
    assert (await provider.search(capability="text.upper")).listings == []
    history = provider.listing_history(provider.agent_id, "text.upper")
    assert await error_code(history) == "not_found"


async def test_a_listing_with_a_valid_json_schema_keeps_it(exchange):
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 100}},
        "required": ["text"],
    }
    provider = await exchange.agent()
    listing = await provider.advertise(
        "text.upper", description="u", price_millicredits=PRICE, input_schema=schema
    )
    assert listing.input_schema == schema


@pytest.mark.parametrize("tags", [["x"] * 9, ["a b"], ["-leading"], ["x" * 33]])
async def test_too_many_or_malformed_listing_tags_are_refused(exchange, tags):
    provider = await exchange.agent()
    call = provider.advertise("text.upper", description="u", price_millicredits=PRICE, tags=tags)
    assert await error_code(call) == "malformed"


async def test_only_an_operator_changes_another_providers_listing(exchange):
    from agent_client import ExchangeError, OperatorClient

    provider = await exchange.agent()
    await provider.advertise("text.upper", description="d", price_millicredits=1_000)
    stranger = await exchange.agent()
    with pytest.raises(ExchangeError) as caught:
        await OperatorClient(stranger).deactivate_listing(provider.agent_id, "text.upper")
    assert caught.value.code == "forbidden"
    assert len((await stranger.search(capability="text.upper")).listings) == 1
    operator = await exchange.agent(exchange.operator_keys)
    hidden = await OperatorClient(operator).deactivate_listing(provider.agent_id, "text.upper")
    assert hidden.status == "inactive"
    assert (await stranger.search(capability="text.upper")).listings == []
