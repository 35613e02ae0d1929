"""A provider's own analytics: per listing, what it sold, earned and was rated.

For the provider agent (``provider.analytics``) and for the human behind it
(the portal's analytics page). Read-only, over a window of whole days; the
reads are bounded (the newest ``ANALYTICS_ROWS_MAX`` contracts, ratings and
sessions), and the answer says when the window held more.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client.protocol import AnalyticsReply, DayAnalytics, GetAnalytics, ListingAnalytics
from exchange.adapters import analytics_queries
from exchange.domain.analytics_math import MILLISECONDS_PER_DAY, ListingFigures, listing_figures
from exchange.limits import ANALYTICS_ROWS_MAX
from exchange.use_cases.exchange_context import ExchangeContext
from wallet.database import read_transaction

__all__ = ["AnalyticsUseCases", "ProviderAnalytics", "analytics_reply", "provider_analytics"]


class ProviderAnalytics:
    """One provider's figures per listing over ``[since_ms, until_ms)``."""

    def __init__(
        self, listings: list[ListingFigures], /, *, since_ms: int, until_ms: int, truncated: bool
    ) -> None:
        self.listings = listings
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.truncated = truncated


async def provider_analytics(
    connection: AsyncConnection, provider_id: str, /, *, now_ms: int, days: int
) -> ProviderAnalytics:
    assert 1 <= days <= protocol_limits.ANALYTICS_DAYS_MAX
    today_ms = now_ms - now_ms % MILLISECONDS_PER_DAY
    since_ms = today_ms - (days - 1) * MILLISECONDS_PER_DAY
    bound = {"since_ms": since_ms, "limit": ANALYTICS_ROWS_MAX}
    contracts = await analytics_queries.contract_facts(connection, provider_id, **bound)
    ratings = await analytics_queries.rating_facts(connection, provider_id, **bound)
    metered = await analytics_queries.metered_facts(connection, provider_id, **bound)
    periods = await analytics_queries.subscription_facts(connection, provider_id, **bound)
    goods = await analytics_queries.goods_facts(connection, provider_id, **bound)
    counts = (len(contracts), len(ratings), len(metered), len(periods), len(goods))
    truncated = ANALYTICS_ROWS_MAX in counts
    figures = listing_figures(contracts, ratings, metered, [*periods, *goods])
    return ProviderAnalytics(figures, since_ms=since_ms, until_ms=now_ms, truncated=truncated)


def analytics_reply(
    provider_id: str, analytics: ProviderAnalytics, /, *, capability: str | None
) -> AnalyticsReply:
    """Every listing's totals; the days of one listing, when it is named."""
    listings = analytics.listings
    if capability is not None:
        listings = [figures for figures in listings if figures.capability == capability]
    shown = listings[: protocol_limits.ANALYTICS_LISTINGS_MAX]
    return AnalyticsReply(
        provider_id=provider_id,
        since_ms=analytics.since_ms,
        until_ms=analytics.until_ms,
        truncated=analytics.truncated or len(shown) < len(listings),
        listings=[_listing(figures, with_days=capability is not None) for figures in shown],
    )


def _listing(figures: ListingFigures, *, with_days: bool) -> ListingAnalytics:
    days = sorted(figures.days.values(), key=lambda day: day.day_start_ms) if with_days else []
    return ListingAnalytics(
        capability=figures.capability,
        contracts=figures.contracts,
        metered_sessions=figures.metered_sessions,
        metered_units=figures.metered_units,
        subscription_periods=figures.subscription_periods,
        goods_sold=figures.goods_sold,
        revenue_net_millicredits=figures.revenue_net_millicredits,
        fees_millicredits=figures.fees_millicredits,
        refunds=figures.refunds,
        disputes=figures.disputes,
        rating_count=figures.rating_count,
        rating_sum=figures.rating_sum,
        delivery_p50_ms=figures.delivery_percentile_ms(0.5),
        delivery_p90_ms=figures.delivery_percentile_ms(0.9),
        delivery_p99_ms=figures.delivery_percentile_ms(0.99),
        days=[
            DayAnalytics(
                day_start_ms=day.day_start_ms,
                contracts=day.contracts,
                revenue_net_millicredits=day.revenue_net_millicredits,
                rating_count=day.rating_count,
                rating_sum=day.rating_sum,
            )
            for day in days
        ],
    )


class AnalyticsUseCases:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def analytics(self, provider_id: str, request: GetAnalytics, /) -> AnalyticsReply:
        """The signer's own figures: nobody reads another provider's."""
        now_ms = self._context.clock.now_ms()
        # A read: no writer lock, one consistent snapshot.
        async with read_transaction(self._context.engine) as connection:
            found = await provider_analytics(
                connection, provider_id, now_ms=now_ms, days=request.days
            )
        return analytics_reply(provider_id, found, capability=request.capability)
