"""Subscriptions survive an exchange worker killed with SIGKILL mid-work.

Buyers subscribe at once through a worker in a child process (the harness of
``test_metered_crash.py``), which is killed once it has answered the first
subscribe, or half of them. On the database the crash left, before any
worker opens it again: the ledger invariants hold (each period's charge, its
ledger transfers and its subscription row commit together or not at all; no
period is charged twice), and no answered subscribe is lost. A fresh worker
then takes the same requests again (same request ids): each buyer ends with
one subscription, charged exactly one period. Both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agent_client import Agent, ExchangeError
from agent_client.protocol import PlanView, SubscriptionState, SubscriptionView
from exchange import check_exchange_invariants
from exchange.adapters import subscription_store
from exchange.domain.subscription_rules import subscription_id_for
from tests.exchange.echo_shop import CAPABILITY as SHOP_CAPABILITY
from tests.exchange.echo_shop import open_echo_shop
from tests.exchange.test_metered_crash import (  # noqa: F401 - the fixture is used by name
    FUNDS,
    KILL_MOMENTS,
    CrashableExchange,
    answers_before_kill,
    crashable,
    killed_after_answers,
)
from wallet import open_database

SUBSCRIBING_BUYERS = 8
PRICE = 1_000
FEE_BPS = 500


async def rows_in_database(crashed: CrashableExchange, subscription_ids: list[str]) -> dict:
    engine = open_database(crashed.database_url)
    try:
        async with engine.connect() as connection:
            return {
                sid: await subscription_store.get_subscription(connection, sid)
                for sid in subscription_ids
            }
    finally:
        await engine.dispose()


def subscribing(
    buyer: Agent, plan: PlanView, key: str
) -> Callable[[], Awaitable[SubscriptionView]]:
    return lambda: buyer.subscribe(plan, request_id=key)


@KILL_MOMENTS
async def test_subscribes_in_flight_when_the_worker_is_killed_charge_each_once(
    crashable: CrashableExchange,  # noqa: F811 - the fixture imported above
    kill_moment: str,
) -> None:
    provider = await crashable.agent()
    await open_echo_shop(provider)
    plan = await provider.publish_plan(
        SHOP_CAPABILITY, "monthly", price_millicredits=PRICE, period_s=3_600
    )
    buyers = [await crashable.funded_agent(FUNDS) for _ in range(SUBSCRIBING_BUYERS)]
    keys = [f"crash-{number}" for number in range(SUBSCRIBING_BUYERS)]
    ids = [
        subscription_id_for(buyer.agent_id, plan.plan_id, key)
        for buyer, key in zip(buyers, keys, strict=True)
    ]
    first_tries = await killed_after_answers(
        crashable,
        [subscribing(buyer, plan, key) for buyer, key in zip(buyers, keys, strict=True)],
        answers=answers_before_kill(kill_moment, SUBSCRIBING_BUYERS),
    )
    answered = {
        tried.subscription_id for tried in first_tries if isinstance(tried, SubscriptionView)
    }
    assert answered and answered <= set(ids)

    await crashable.check_crashed_database()
    rows = await rows_in_database(crashable, ids)
    committed = {sid for sid, row in rows.items() if row is not None}
    assert answered <= committed  # no answered subscribe is lost
    for sid in committed:
        assert (rows[sid].state, rows[sid].periods_charged) == (SubscriptionState.ACTIVE, 1)

    worker = await crashable.restart_in_process()
    for buyer, sid in zip(buyers, ids, strict=True):
        # The charge is there exactly when the subscription is.
        paid = PRICE if sid in committed else 0
        assert (await buyer.balance()).available_millicredits == FUNDS - paid

    retries = await asyncio.gather(
        *(buyer.subscribe(plan, request_id=key) for buyer, key in zip(buyers, keys, strict=True)),
        return_exceptions=True,
    )
    for retry, sid in zip(retries, ids, strict=True):
        assert not isinstance(retry, ExchangeError | BaseException), retry
        assert (retry.subscription_id, retry.periods_charged) == (sid, 1)
    for buyer in buyers:
        assert (await buyer.balance()).available_millicredits == FUNDS - PRICE
    earned = (await provider.balance()).available_millicredits
    assert earned == SUBSCRIBING_BUYERS * (PRICE - PRICE * FEE_BPS // 10_000)
    await check_exchange_invariants(worker.engine)
