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

from exchange.domain.analytics_math import MILLISECONDS_PER_DAY, ListingFigures
from exchange.use_cases.provider_analytics import provider_analytics
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import format_millicredits
from human_portal.portal_context import PortalContext
from human_portal.reports import ChartDay, csv_safe

__all__ = ["AnalyticsRow", "ProviderReport", "analytics_csv", "provider_report"]

ANALYTICS_DAYS = 30


@dataclass(frozen=True, slots=True)
class AnalyticsRow:
    agent_id: str
    agent_label: str
    capability: str
    contracts: int
    metered_sessions: int
    metered_units: int
    revenue_net_millicredits: int
    fees_millicredits: int
    refunds: int
    disputes: int
    rating_count: int
    rating_mean: float | None
    delivery_p50_ms: int | None
    delivery_p90_ms: int | None
    delivery_p99_ms: int | None


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
            for figures in found.listings:
                rows.append(_row(link, figures))
                for day in figures.days.values():
                    revenue_by_day[day.day_start_ms] = (
                        revenue_by_day.get(day.day_start_ms, 0) + day.revenue_net_millicredits
                    )
        return ProviderReport(rows, _chart_days(revenue_by_day, now_ms, days), truncated)

    return await context.read(load)


def _row(link: LinkedAgent, figures: ListingFigures) -> AnalyticsRow:
    mean = figures.rating_sum / figures.rating_count if figures.rating_count else None
    return AnalyticsRow(
        agent_id=link.agent_id,
        agent_label=link.label,
        capability=figures.capability,
        contracts=figures.contracts,
        metered_sessions=figures.metered_sessions,
        metered_units=figures.metered_units,
        revenue_net_millicredits=figures.revenue_net_millicredits,
        fees_millicredits=figures.fees_millicredits,
        refunds=figures.refunds,
        disputes=figures.disputes,
        rating_count=figures.rating_count,
        rating_mean=mean,
        delivery_p50_ms=figures.delivery_percentile_ms(0.5),
        delivery_p90_ms=figures.delivery_percentile_ms(0.9),
        delivery_p99_ms=figures.delivery_percentile_ms(0.99),
    )


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

    return (
        row.agent_id,
        csv_safe(row.agent_label),
        row.capability,
        row.contracts,
        row.metered_sessions,
        row.metered_units,
        row.revenue_net_millicredits,
        format_millicredits(row.revenue_net_millicredits).replace(",", ""),
        row.fees_millicredits,
        row.refunds,
        row.disputes,
        row.rating_count,
        "" if row.rating_mean is None else f"{row.rating_mean:.2f}",
        blank_if_none(row.delivery_p50_ms),
        blank_if_none(row.delivery_p90_ms),
        blank_if_none(row.delivery_p99_ms),
    )
