"""Catalog search (pure): what a ``catalog.search`` request asks for, checked.

The request's fields are already bounded by the protocol (page size, offset,
text length, number of tags); this module turns them into a
:class:`SearchQuery` the repository can run, refusing what the bounds alone
cannot catch (a price range upside down). Paging is never clamped: a page
other than the one asked for would be a silent wrong answer, so an offset or
limit outside the protocol's bounds is refused by the decoder (``malformed``).

It also decides how a search runs (:func:`choose_plan`). A search either
*starts from a selective filter* (the few listings a rare word, a capability,
a tag or a narrow price range match, fetched through that filter's index and
then sorted), or *walks the sort order* (the index of the requested order,
keeping each listing that passes every filter until the page is full). The
first is fast when some filter matches few listings, the second when every
filter matches many; the repository counts each filter's matches up to
``SEARCH_CANDIDATES_MAX`` (cheap: an index range read that stops there) and
the plan follows from those counts. Databases cannot make this choice alone:
SQLite has no statistics on the full-text index or on value ranges.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent_client.protocol import SearchCatalog
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import (
    SEARCH_CANDIDATES_MAX,
    SEARCH_OFFSET_MAX,
    SEARCH_PAGE_SIZE_MAX,
    SEARCH_PROBE_PAGE_END_MAX,
    SEARCH_TAG_CANDIDATES_MAX,
    SEARCH_TERMS_MAX,
)

__all__ = [
    "Filter",
    "SearchPlan",
    "SearchQuery",
    "SearchSort",
    "choose_plan",
    "indexed_filters",
    "search_query_for",
    "text_terms",
]

# Letters and digits in any script; everything else (punctuation, dots of a
# capability, underscores) separates words, as in both full-text indexes.
_WORD = re.compile(r"[^\W_]+")


class SearchSort(enum.StrEnum):
    PRICE = "price"  # cheapest first
    RATING = "rating"  # best mean rating first, unrated last
    SETTLED = "settled"  # most settled contracts first
    NEWEST = "newest"  # most recently created first


class Filter(enum.Enum):
    """The filters with an index a search can start from."""

    TEXT = "text"
    CAPABILITY = "capability"
    PRICE = "price"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Active listings matching every filter given, in ``sort`` order."""

    capability: str | None = None
    text_terms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    price_min_millicredits: int | None = None
    price_max_millicredits: int | None = None
    rating_min: float | None = None
    settled_count_min: int | None = None
    sort: SearchSort = SearchSort.PRICE
    limit: int = 20
    offset: int = 0

    def __post_init__(self) -> None:
        assert 1 <= self.limit <= SEARCH_PAGE_SIZE_MAX
        assert 0 <= self.offset <= SEARCH_OFFSET_MAX
        assert len(self.text_terms) <= SEARCH_TERMS_MAX
        assert all(_WORD.fullmatch(term) for term in self.text_terms)


def text_terms(text: str | None, /) -> tuple[str, ...]:
    """The distinct lower-case words of a search text, at most ``SEARCH_TERMS_MAX``.

    Only words reach the full-text index, never the user's operators or
    quotes, so any text is a valid query on both databases. A text without
    words filters nothing.
    """
    if not text:
        return ()
    words = dict.fromkeys(_WORD.findall(text.lower()))
    return tuple(words)[:SEARCH_TERMS_MAX]


def search_query_for(request: SearchCatalog, /) -> SearchQuery:
    price_min, price_max = request.price_min_millicredits, request.price_max_millicredits
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"price_min_millicredits {price_min} is above price_max_millicredits {price_max}",
        )
    return SearchQuery(
        capability=request.capability,
        text_terms=text_terms(request.text),
        tags=tuple(sorted(set(request.tags))),
        price_min_millicredits=price_min,
        price_max_millicredits=price_max,
        rating_min=request.rating_min,
        settled_count_min=request.settled_count_min,
        sort=SearchSort(request.sort),
        limit=request.limit,
        offset=request.offset,
    )


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """Where a search starts: a selective filter (and which tag, for TAG), or
    the sort order itself when ``start`` is None.

    ``probe_text`` (walks only): test each listing reached against the
    full-text index, instead of first collecting every listing the words
    match. Worth it only when the words match most listings, so that few
    listings are tested before the page is full.
    """

    start: Filter | None = None
    tag: str | None = None
    probe_text: bool = False

    def __post_init__(self) -> None:
        assert (self.start is Filter.TAG) == (self.tag is not None)
        assert not (self.probe_text and self.start is not None)


def indexed_filters(query: SearchQuery, /) -> list[tuple[Filter, str | None]]:
    """The query's filters a search could start from (a tag names itself)."""
    filters: list[tuple[Filter, str | None]] = []
    if query.text_terms:
        filters.append((Filter.TEXT, None))
    if query.capability is not None:
        filters.append((Filter.CAPABILITY, None))
    if query.price_min_millicredits is not None or query.price_max_millicredits is not None:
        filters.append((Filter.PRICE, None))
    filters.extend((Filter.TAG, tag) for tag in query.tags)
    return filters


def choose_plan(
    counts: Mapping[tuple[Filter, str | None], int],
    /,
    *,
    listing_count: int = 0,
    page_end: int = 0,
    candidates_max: int = SEARCH_CANDIDATES_MAX,
    tag_candidates_max: int = SEARCH_TAG_CANDIDATES_MAX,
) -> SearchPlan:
    """Start from the filter with the fewest matches if it has fewer than
    ``candidates_max`` (``tag_candidates_max`` for a tag); otherwise walk the
    sort order.

    ``counts`` are each filter's matches, counted up to ``candidates_max``
    (the text's up to ``SEARCH_TEXT_COUNT_MAX``). Starting from a filter costs
    in proportion to its matches (each one is read and the survivors sorted);
    walking the sort order costs in proportion to how far the page lies
    (``page_end``: offset + limit + 1) and how rare the survivors are, which
    is small when every filter matches at least ``candidates_max`` listings.
    A walk tests a tag with one primary-key probe per listing it reaches, so
    only a rarer tag is worth starting from.
    A walk probes the full-text index listing by listing when the text
    matches at least half of ``listing_count`` and the page ends within
    ``SEARCH_PROBE_PAGE_END_MAX``: at most twice that many probes, where
    collecting the matches first would read half the catalog.
    """
    assert all(count >= 0 for count in counts.values())
    selective = [
        (count, filter_.value, tag or "")
        for (filter_, tag), count in counts.items()
        if count < (tag_candidates_max if filter_ is Filter.TAG else candidates_max)
    ]
    if selective:
        _, name, tag = min(selective)
        start = Filter(name)
        return SearchPlan(start=start, tag=tag if start is Filter.TAG else None)
    text_count = counts.get((Filter.TEXT, None), 0)
    common_text = listing_count > 0 and 2 * text_count >= listing_count
    return SearchPlan(probe_text=common_text and page_end <= SEARCH_PROBE_PAGE_END_MAX)
