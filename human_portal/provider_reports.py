"""What a human's agents earned as providers: per listing, a chart per day, a CSV.

The figures come from the exchange's use case (the same as an agent's
``provider.analytics``), for each agent linked to the human; this module
turns them into rows, chart days and an RFC 4180 CSV.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import ListingAnalytics
from exchange.domain.analytics_math import MILLISECONDS_PER_DAY
from exchange.use_cases.provider_analytics import analytics_reply, provider_analytics
from human_portal.linking import linked_agents
from human_portal.money_rules import format_millicredits
from human_portal.portal_context import PortalContext
from human_portal.reports import ChartDay, csv_safe

__all__ = ["AnalyticsRow", "ProviderReport", "analytics_csv", "provider_report"]

ANALYTICS_DAYS = 30


@dataclass(frozen=True, slots=True)
class AnalyticsRow:
    """One listing of one of the human's agents: the exchange's figures, and whose."""

    agent_id: str
    agent_label: str
    listing: ListingAnalytics

    @property
    def rating_mean(self) -> float | None:
        count = self.listing.rating_count
        return self.listing.rating_sum / count if count else None


@dataclass(frozen=True, slots=True)
class ProviderReport:
    rows: list[AnalyticsRow]
    days: list[ChartDay]
    truncated: bool


async def provider_report(
    context: PortalContext, user_id: str, /, *, days: int = ANALYTICS_DAYS
) -> ProviderReport:
    """Every linked agent's listings as a provider over ``days`` days, and revenue per day."""
    now_ms = context.now_ms()

    async def load(connection: AsyncConnection) -> ProviderReport:
        rows: list[AnalyticsRow] = []
        revenue_by_day: dict[int, int] = {}
        truncated = False
        for link in await linked_agents(connection, user_id):
            found = await provider_analytics(connection, link.agent_id, now_ms=now_ms, days=days)
            truncated |= found.truncated
            answer = analytics_reply(link.agent_id, found, capability=None)
            rows.extend(AnalyticsRow(link.agent_id, link.label, item) for item in answer.listings)
            for figures in found.listings:
                for day in figures.days.values():
                    revenue_by_day[day.day_start_ms] = (
                        revenue_by_day.get(day.day_start_ms, 0) + day.revenue_net_millicredits
                    )
        return ProviderReport(rows, _chart_days(revenue_by_day, now_ms, days), truncated)

    return await context.read(load)


def _chart_days(revenue_by_day: dict[int, int], now_ms: int, days: int) -> list[ChartDay]:
    """Revenue per day (as "earned"; the chart's "spent" bars stay empty)."""
    today_ms = now_ms - now_ms % MILLISECONDS_PER_DAY
    starts = [today_ms - (days - 1 - index) * MILLISECONDS_PER_DAY for index in range(days)]
    return [
        ChartDay(
            time.strftime("%m-%d", time.gmtime(start_ms // 1000)),
            0,
            revenue_by_day.get(start_ms, 0),
        )
        for start_ms in starts
    ]


_CSV_COLUMNS = (
    "agent_id",
    "agent_label",
    "capability",
    "contracts",
    "metered_sessions",
    "metered_units",
    "subscription_periods",
    "goods_sold",
    "revenue_net_millicredits",
    "revenue_net_credits",
    "fees_millicredits",
    "refunds",
    "disputes",
    "rating_count",
    "rating_mean",
    "delivery_p50_ms",
    "delivery_p90_ms",
    "delivery_p99_ms",
)


def analytics_csv(rows: Iterable[AnalyticsRow], /) -> str:
    """RFC 4180 CSV; amounts exact (millicredits) and in credits; labels defused."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        writer.writerow(_csv_values(row))
    return buffer.getvalue()


def _csv_values(row: AnalyticsRow) -> Sequence[object]:
    def blank_if_none(value: object) -> object:
        return "" if value is None else value

    listing = row.listing
    return (
        row.agent_id,
        csv_safe(row.agent_label),
        listing.capability,
        listing.contracts,
        listing.metered_sessions,
        listing.metered_units,
        listing.subscription_periods,
        listing.goods_sold,
        listing.revenue_net_millicredits,
        format_millicredits(listing.revenue_net_millicredits).replace(",", ""),
        listing.fees_millicredits,
        listing.refunds,
        listing.disputes,
        listing.rating_count,
        "" if row.rating_mean is None else f"{row.rating_mean:.2f}",
        blank_if_none(listing.delivery_p50_ms),
        blank_if_none(listing.delivery_p90_ms),
        blank_if_none(listing.delivery_p99_ms),
    )
