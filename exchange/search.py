"""Catalog search (pure): what a ``catalog.search`` request asks for, checked.

The request's fields are already bounded by the protocol (page size, offset,
text length, number of tags); this module turns them into a
:class:`SearchQuery` the repository can run, refusing what the bounds alone
cannot catch (a price range upside down). Paging is never clamped: a page
other than the one asked for would be a silent wrong answer, so an offset or
limit outside the protocol's bounds is refused by the decoder (``malformed``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from agent_client.protocol import SearchCatalog
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SEARCH_OFFSET_MAX, SEARCH_PAGE_SIZE_MAX, SEARCH_TERMS_MAX

__all__ = ["SearchQuery", "SearchSort", "search_query_for", "text_terms"]

# Letters and digits in any script; everything else (punctuation, dots of a
# capability, underscores) separates words, as in both full-text indexes.
_WORD = re.compile(r"[^\W_]+")


class SearchSort(enum.StrEnum):
    PRICE = "price"  # cheapest first
    RATING = "rating"  # best mean rating first, unrated last
    SETTLED = "settled"  # most settled contracts first
    NEWEST = "newest"  # most recently created first


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
