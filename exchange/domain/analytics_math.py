"""A provider's analytics (pure): figures per listing from its contracts and ratings.

The use case reads plain facts (each contract, rating and metered session of
one provider within a window) and this module turns them into figures per
capability: contracts opened, metered units, revenue net of fees, fees,
refunds, disputes, ratings, delivery-time percentiles, and the same per UTC
day for charts. Integers only; a percentile is the nearest-rank one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "MILLISECONDS_PER_DAY",
    "ContractFact",
    "DayFigures",
    "ListingFigures",
    "MeteredFact",
    "RatingFact",
    "SaleFact",
    "listing_figures",
    "nearest_rank",
]

MILLISECONDS_PER_DAY = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class ContractFact:
    capability: str
    state: str
    created_at_ms: int
    # When the provider delivered (None: not delivered).
    delivered_at_ms: int | None
    # Both None until settled.
    net_millicredits: int | None
    fee_millicredits: int
    refunded: bool
    disputed: bool


@dataclass(frozen=True, slots=True)
class RatingFact:
    capability: str
    stars: int
    rated_at_ms: int


@dataclass(frozen=True, slots=True)
class MeteredFact:
    capability: str
    claimed_units: int
    net_millicredits: int
    fee_millicredits: int
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class SaleFact:
    """A sale that is not a contract: a subscription's period, a digital good."""

    kind: Literal["subscription", "goods"]
    capability: str
    net_millicredits: int
    fee_millicredits: int
    sold_at_ms: int


@dataclass(slots=True)
class DayFigures:
    day_start_ms: int
    contracts: int = 0
    revenue_net_millicredits: int = 0
    rating_count: int = 0
    rating_sum: int = 0


@dataclass(slots=True)
class ListingFigures:
    capability: str
    contracts: int = 0
    metered_sessions: int = 0
    metered_units: int = 0
    subscription_periods: int = 0
    goods_sold: int = 0
    revenue_net_millicredits: int = 0
    fees_millicredits: int = 0
    refunds: int = 0
    disputes: int = 0
    rating_count: int = 0
    rating_sum: int = 0
    delivery_ms: list[int] = field(default_factory=list)
    days: dict[int, DayFigures] = field(default_factory=dict)

    def day(self, at_ms: int, /) -> DayFigures:
        start_ms = at_ms - at_ms % MILLISECONDS_PER_DAY
        found = self.days.get(start_ms)
        if found is None:
            found = self.days[start_ms] = DayFigures(start_ms)
        return found

    def delivery_percentile_ms(self, q: float, /) -> int | None:
        return nearest_rank(sorted(self.delivery_ms), q)


def nearest_rank(sorted_values: Sequence[int], q: float, /) -> int | None:
    """The ``q`` quantile (0 < q <= 1) by nearest rank; None without values."""
    assert 0 < q <= 1
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * int(q * 1000) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def listing_figures(
    contracts: Iterable[ContractFact],
    ratings: Iterable[RatingFact],
    metered: Iterable[MeteredFact],
    sales: Iterable[SaleFact] = (),
    /,
) -> list[ListingFigures]:
    """Figures per capability, in capability order; days in time order."""
    by_capability: defaultdict[str, ListingFigures] = defaultdict(lambda: ListingFigures(""))

    def listing(capability: str) -> ListingFigures:
        figures = by_capability[capability]
        figures.capability = capability
        return figures

    for contract in contracts:
        _add_contract(listing(contract.capability), contract)
    for rating in ratings:
        figures = listing(rating.capability)
        figures.rating_count += 1
        figures.rating_sum += rating.stars
        day = figures.day(rating.rated_at_ms)
        day.rating_count += 1
        day.rating_sum += rating.stars
    for session in metered:
        figures = listing(session.capability)
        figures.metered_sessions += 1
        figures.metered_units += session.claimed_units
        figures.revenue_net_millicredits += session.net_millicredits
        figures.fees_millicredits += session.fee_millicredits
        figures.day(session.created_at_ms).revenue_net_millicredits += session.net_millicredits
    for sale in sales:
        _add_sale(listing(sale.capability), sale)
    return [by_capability[capability] for capability in sorted(by_capability)]


def _add_sale(figures: ListingFigures, sale: SaleFact) -> None:
    if sale.kind == "subscription":
        figures.subscription_periods += 1
    else:
        figures.goods_sold += 1
    figures.revenue_net_millicredits += sale.net_millicredits
    figures.fees_millicredits += sale.fee_millicredits
    figures.day(sale.sold_at_ms).revenue_net_millicredits += sale.net_millicredits


def _add_contract(figures: ListingFigures, contract: ContractFact) -> None:
    figures.contracts += 1
    day = figures.day(contract.created_at_ms)
    day.contracts += 1
    if contract.net_millicredits is not None:
        figures.revenue_net_millicredits += contract.net_millicredits
        figures.fees_millicredits += contract.fee_millicredits
        day.revenue_net_millicredits += contract.net_millicredits
    figures.refunds += contract.refunded
    figures.disputes += contract.disputed
    if contract.delivered_at_ms is not None:
        figures.delivery_ms.append(max(0, contract.delivered_at_ms - contract.created_at_ms))
