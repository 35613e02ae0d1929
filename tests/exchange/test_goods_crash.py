"""Purchases of digital goods survive an exchange worker killed with SIGKILL mid-work.

The worker runs in a child process (``tests/exchange/metered_crash_child.py``,
a plain worker; the fixture and the kill come from ``test_metered_crash.py``).
A provider publishes an item through it; then many buyers buy it at once,
each twice (a client's retry racing its first try). Once the worker has
answered the first purchase, or half of them, the test kills it: no reply,
no cleanup beyond what the database guarantees.

It then proves, on the database the crash left behind, that a purchase is
all-or-nothing: the invariants hold (each licence was paid its price, each
goods payment has its licence, escrow holds nothing), every answered
purchase has its licence, and a buyer was charged exactly when its licence
row exists. A fresh worker on the same database takes every purchase again:
each buyer ends with one licence, charged once, and the provider is paid
the price less the fee once per buyer, to the millicredit. Both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agent_client import Agent
from agent_client.goods import GoodsPurchase
from exchange import check_exchange_invariants
from exchange.adapters import goods_store
from exchange.domain.goods_rules import LicenceRow
from tests.exchange.test_metered_crash import (  # noqa: F401 (the fixture)
    KILL_MOMENTS,
    CrashableExchange,
    answers_before_kill,
    crashable,
    killed_after_answers,
)
from wallet import open_database

FUNDS = 50_000
PRICE = 7_000
FEE = PRICE * 500 // 10_000
BUYERS = 6
ARTIFACT = b"an agent package that survives crashes"


async def licences_in_database(
    database_url: str, item_id: str, buyers: list[Agent]
) -> dict[str, LicenceRow | None]:
    engine = open_database(database_url)
    try:
        async with engine.connect() as connection:
            return {
                buyer.agent_id: await goods_store.get_licence(connection, item_id, buyer.agent_id)
                for buyer in buyers
            }
    finally:
        await engine.dispose()


def buying(buyer: Agent, item_id: str) -> Callable[[], Awaitable[GoodsPurchase]]:
    return lambda: buyer.buy_goods(item_id, price_millicredits=PRICE)


@KILL_MOMENTS
async def test_a_purchase_in_flight_when_the_worker_is_killed_charges_once_or_not_at_all(
    crashable: CrashableExchange,  # noqa: F811 (the fixture imported above)
    kill_moment: str,
) -> None:
    provider = await crashable.agent()
    view = await provider.publish_goods(
        "crash-proof",
        ARTIFACT,
        title="Crash proof",
        capability="agents.crash",
        price_millicredits=PRICE,
    )
    buyers = [await crashable.funded_agent(FUNDS) for _ in range(BUYERS)]
    steps = [buying(buyer, view.item_id) for buyer in buyers for _ in range(2)]

    first_tries = await killed_after_answers(
        crashable, steps, answers=answers_before_kill(kill_moment, len(steps))
    )
    answered = {
        outcome.licence.buyer_id for outcome in first_tries if isinstance(outcome, GoodsPurchase)
    }
    assert answered  # at least one purchase committed before the kill

    await crashable.check_crashed_database()
    licences = await licences_in_database(crashable.database_url, view.item_id, buyers)
    committed = {buyer_id for buyer_id, licence in licences.items() if licence is not None}
    assert answered <= committed  # no answered purchase is lost

    worker = await crashable.restart_in_process()
    for buyer in buyers:
        # Charged exactly when the licence row exists.
        charged = PRICE if buyer.agent_id in committed else 0
        balance = await buyer.balance()
        assert (balance.available_millicredits, balance.held_millicredits) == (FUNDS - charged, 0)

    retries = await asyncio.gather(*(step() for step in steps))
    for buyer in buyers:
        mine = [retry for retry in retries if retry.licence.buyer_id == buyer.agent_id]
        assert len(mine) == 2 and all(retry.artifact == ARTIFACT for retry in mine)
        assert len({retry.licence.licence_id for retry in mine}) == 1
        # A buyer whose purchase committed before the crash pays nothing more.
        newly_charged = sum(retry.charged for retry in mine)
        assert newly_charged == (0 if buyer.agent_id in committed else 1)
        assert (await buyer.balance()).available_millicredits == FUNDS - PRICE
    assert (await provider.balance()).available_millicredits == BUYERS * (PRICE - FEE)
    await check_exchange_invariants(worker.engine)
