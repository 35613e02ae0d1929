"""A provider's analytics: per listing, what it sold, earned and was rated.

Real deals over a real worker (a release, a refund by cancel, a dispute, a
rating and a metered session) must show up in ``provider.analytics`` with
exact counts, revenue net of fees, fees, delivery-time percentiles and per
day; a provider sees only its own figures. The pure aggregation is tested
on plain values too. Both databases.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import ExchangeError, QuoteRequest
from agent_client.protocol import GetAnalytics
from exchange.domain.analytics_math import (
    MILLISECONDS_PER_DAY,
    ContractFact,
    MeteredFact,
    RatingFact,
    listing_figures,
    nearest_rank,
)

PRICE = 10_000
FEE = PRICE * 500 // 10_000
FUNDS = 100_000


def test_nearest_rank_percentiles():
    values = list(range(1, 101))
    assert nearest_rank(values, 0.5) == 50
    assert nearest_rank(values, 0.9) == 90
    assert nearest_rank(values, 0.99) == 99
    assert nearest_rank([7], 0.99) == 7
    assert nearest_rank([], 0.5) is None


def test_listing_figures_add_up_per_capability_and_per_day():
    day = 5 * MILLISECONDS_PER_DAY
    contracts = [
        ContractFact("a", "released", day + 10, day + 110, 9_500, 500, False, False),
        ContractFact("a", "refunded", day + 20, None, 0, 0, True, False),
        ContractFact(
            "a",
            "resolved",
            day + MILLISECONDS_PER_DAY,
            day + MILLISECONDS_PER_DAY + 300,
            4_750,
            250,
            False,
            True,
        ),
        ContractFact("b", "open", day, None, None, 0, False, False),
    ]
    ratings = [RatingFact("a", 5, day + 50), RatingFact("a", 3, day + 60)]
    metered = [MeteredFact("b", 1_500, 950, 50, day + 5)]
    a, b = listing_figures(contracts, ratings, metered)
    assert (a.capability, a.contracts, a.revenue_net_millicredits, a.fees_millicredits) == (
        "a",
        3,
        14_250,
        750,
    )
    assert (a.refunds, a.disputes, a.rating_count, a.rating_sum) == (1, 1, 2, 8)
    assert a.delivery_percentile_ms(0.5) == 100 and a.delivery_percentile_ms(0.99) == 300
    assert sorted(a.days) == [day, day + MILLISECONDS_PER_DAY]
    assert a.days[day].revenue_net_millicredits == 9_500 and a.days[day].rating_count == 2
    assert (b.contracts, b.metered_sessions, b.metered_units, b.revenue_net_millicredits) == (
        1,
        1,
        1_500,
        950,
    )


# --- over a real worker ----------------------------------------------------------------


async def upper(task):
    return {"text": str(task).upper()}


async def stall(task):
    await asyncio.Event().wait()


async def hire(buyer, capability):
    [quote] = await buyer.request_quotes(
        QuoteRequest(capability, "job", budget_millicredits=PRICE, quotes_max=1, timeout_s=2)
    )
    return await buyer.hire(quote, "hi")


async def test_a_providers_deals_show_in_its_own_analytics(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="upper", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    await provider.advertise("text.slow", description="slow", price_millicredits=PRICE)
    await provider.serve("text.slow", stall, pricing=PRICE)
    buyer = await exchange.funded_agent(FUNDS)

    released = await hire(buyer, "text.upper")
    await released.accept_delivery(await released.wait_delivery(timeout_s=10))
    await released.rate(4, comment="fine")
    disputed = await hire(buyer, "text.upper")
    await disputed.wait_delivery(timeout_s=10)
    await disputed.reject_delivery(reason="no")
    cancelled = await hire(buyer, "text.slow")
    await provider.cancel(cancelled.contract_id, reason="too busy")

    await provider.serve_metered("text.echo", upper, unit_price_millicredits=1_000)
    session = await buyer.open_metered(
        await buyer.metered_offer(provider.agent_id, "text.echo"), ceiling_millicredits=5_000
    )
    await session.call("a")
    await session.call("b")
    await asyncio.sleep(0.2)
    await provider.close_metered(session.contract_id)

    report = await provider.analytics(days=7)
    by_capability = {listing.capability: listing for listing in report.listings}
    assert sorted(by_capability) == ["text.echo", "text.slow", "text.upper"]
    upper_figures = by_capability["text.upper"]
    assert (upper_figures.contracts, upper_figures.disputes, upper_figures.refunds) == (2, 1, 0)
    assert upper_figures.revenue_net_millicredits == PRICE - FEE
    assert upper_figures.fees_millicredits == FEE
    assert (upper_figures.rating_count, upper_figures.rating_sum) == (1, 4)
    assert upper_figures.delivery_p50_ms is not None and upper_figures.delivery_p50_ms >= 0
    assert upper_figures.days == []  # days only for a listing asked for by name
    assert by_capability["text.slow"].refunds == 1
    echo = by_capability["text.echo"]
    assert (echo.metered_sessions, echo.metered_units, echo.revenue_net_millicredits) == (
        1,
        2,
        2_000 - 100,
    )
    one = await provider.analytics(days=7, capability="text.upper")
    [only] = one.listings
    assert sum(day.contracts for day in only.days) == 2
    assert sum(day.revenue_net_millicredits for day in only.days) == PRICE - FEE
    # Nobody reads another provider's figures: the buyer sells nothing.
    assert (await buyer.analytics(days=7)).listings == []
    await exchange.check_invariants()


async def test_the_window_is_bounded(exchange):
    agent = await exchange.agent()
    with pytest.raises(ExchangeError) as refused:
        await agent._request(GetAnalytics, lambda header: GetAnalytics(header=header, days=91))
    assert refused.value.code == "malformed"
