"""Group commit over a real worker: the same answers as one transaction per step.

Concurrent openings and acceptances reach the worker together, so they are
applied in shared transactions; every caller must still get exactly the
answer the unbatched path gives (each scenario runs both ways and compares),
a group that fails as a whole must fall back to groups of one,
and a worker that dies between a group's commit and its replies must leave
retries facing the committed outcome. Both databases; invariants at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent_client import Agent, AgentKeys, AgentOptions, ExchangeError, OperatorClient
from exchange import ExchangeConfig, ExchangeWorker, check_exchange_invariants, migrate_database
from exchange.adapters import contract_store as exchange_repository
from human_portal.portal_tables import agent_controls
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop
from tests.exchange.group_crash_child import CRASH_EXIT_CODE

REPO_ROOT = Path(__file__).resolve().parents[2]


async def shop(exchange):
    provider = await exchange.agent()
    await open_echo_shop(provider)
    return provider


async def freeze(exchange, agent_id):
    async with exchange.worker.engine.begin() as connection:
        await connection.execute(
            agent_controls.insert().values(
                agent_id=agent_id,
                daily_limit_millicredits=None,
                contract_limit_millicredits=None,
                approval_threshold_millicredits=None,
                frozen_by_owner=True,
                frozen_by_operator=False,
                operator_freeze_reason="",
                updated_at_ms=0,
            )
        )


def answer_of(result):
    if isinstance(result, ExchangeError):
        return result.code
    assert not isinstance(result, BaseException), result
    return "opened"


@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "one-by-one"])
async def test_concurrent_openings_and_acceptances_get_the_unbatched_answers(
    exchange, group_commit
):
    if not group_commit:
        await exchange.restart(group_commit=False)
    provider = await shop(exchange)
    funded = [await exchange.funded_agent(3 * PRICE) for _ in range(12)]
    poor = await exchange.funded_agent(PRICE - 1)
    frozen = await exchange.funded_agent(3 * PRICE)
    await freeze(exchange, frozen.agent_id)
    twice = await exchange.funded_agent(3 * PRICE)
    buyers = [*funded, poor, frozen, twice, twice, twice]
    quotes = [await echo_quote(buyer) for buyer in [*funded, poor, frozen, twice]]
    quotes += [quotes[-1], quotes[-1]]  # the last buyer accepts its quote three times

    results = await asyncio.gather(
        *(buyer.hire(quote, {"n": 1}) for buyer, quote in zip(buyers, quotes, strict=True)),
        return_exceptions=True,
    )

    answers = [answer_of(result) for result in results]
    assert answers[:12] == ["opened"] * 12
    assert answers[12:14] == ["insufficient_funds", "agent_frozen"]
    # A quote accepted three times opens one contract; each hire answers it.
    assert answers[14:] == ["opened"] * 3
    assert len({result.contract_id for result in results[14:]}) == 1
    assert (await poor.balance()).held_millicredits == 0
    assert (await frozen.balance()).held_millicredits == 0
    assert (await twice.balance()).held_millicredits == PRICE

    contracts = [r for r in results if not isinstance(r, BaseException)]
    deliveries = await asyncio.gather(*(c.wait_delivery(timeout_s=20) for c in contracts))
    released = await asyncio.gather(
        *(c.accept_delivery(d) for c, d in zip(contracts, deliveries, strict=True)),
        # A second acceptance of one contract in the same burst releases nothing more.
        contracts[0].accept_delivery(deliveries[0]),
        return_exceptions=True,
    )
    # The two acceptances of the first contract race: one releases it, the other is
    # refused by the exchange and reads it back released; the money moves once.
    assert [view.state for view in released] == ["released"] * (len(contracts) + 1)
    earned = (await provider.balance()).available_millicredits
    distinct = len({contract.contract_id for contract in contracts})
    assert distinct == len(contracts) - 2  # the quote accepted three times opened one
    assert earned == distinct * (PRICE - PRICE * 5 // 100)
    groups = exchange.worker.contract_groups
    if group_commit:
        # Shared transactions happened: fewer groups than steps.
        assert groups.jobs_applied > groups.groups_applied
    else:
        # The same code with a group size of one: a transaction per step.
        assert groups.jobs_max == 1
        assert groups.jobs_applied == groups.groups_applied
    await exchange.check_invariants()


async def test_a_group_that_fails_whole_applies_each_step_alone(exchange, monkeypatch):
    provider = await shop(exchange)
    buyers = [await exchange.funded_agent(PRICE) for _ in range(6)]
    quotes = [await echo_quote(buyer) for buyer in buyers]

    add_contract_events = exchange_repository.add_contract_events

    async def refuse_groups(connection, rows):
        if len(rows) > 1:
            raise RuntimeError("the database refused the group's events")
        await add_contract_events(connection, rows)

    # A group of many fails as a whole; each of its steps then goes as a group of one.
    monkeypatch.setattr(exchange_repository, "add_contract_events", refuse_groups)
    groups = exchange.worker.contract_groups
    failed_before = groups.groups_failed

    contracts = await asyncio.gather(
        *(buyer.hire(quote, {"n": 1}) for buyer, quote in zip(buyers, quotes, strict=True))
    )

    assert groups.groups_failed > failed_before
    for buyer in buyers:
        assert (await buyer.balance()).held_millicredits == PRICE
    deliveries = await asyncio.gather(*(c.wait_delivery(timeout_s=20) for c in contracts))
    views = await asyncio.gather(
        *(c.accept_delivery(d) for c, d in zip(contracts, deliveries, strict=True))
    )
    assert {view.state for view in views} == {"released"}
    assert (await provider.balance()).available_millicredits == 6 * (PRICE - PRICE * 5 // 100)
    await exchange.check_invariants()


async def test_a_worker_that_dies_between_a_groups_commit_and_its_replies_loses_nothing(
    nats_url, database_url, tmp_path, exchange_keys
):
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    seed_path = tmp_path / "exchange.seed"
    exchange_keys.save(seed_path)
    committed_path = tmp_path / "committed.txt"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.exchange.group_crash_child",
        nats_url,
        database_url,
        str(seed_path),
        operator_keys.agent_id,
        str(committed_path),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    agents: list[Agent] = []
    worker: ExchangeWorker | None = None
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
        options = AgentOptions(request_timeout_s=3, close_grace_s=0.2)

        async def connect(keys):
            agent = await Agent.connect(nats_url, keys, options=options)
            agents.append(agent)
            return agent

        provider = await connect(AgentKeys.generate())
        await open_echo_shop(provider)
        operator = await connect(operator_keys)
        buyers = [await connect(AgentKeys.generate()) for _ in range(8)]
        for buyer in buyers:
            await OperatorClient(operator).mint(buyer.agent_id, PRICE, reason="test grant")
        quotes = [await echo_quote(buyer) for buyer in buyers]

        # The child dies right after committing the first group: no replies.
        first_tries = await asyncio.gather(
            *(b.hire(q, {"n": 1}) for b, q in zip(buyers, quotes, strict=True)),
            return_exceptions=True,
        )
        exit_code = await asyncio.wait_for(child.wait(), 30)
        assert exit_code == CRASH_EXIT_CODE, await child.stderr.read()
        assert all(isinstance(result, BaseException) for result in first_tries), first_tries
        committed = set(committed_path.read_text().split())
        assert committed  # at least one opening committed before the crash

        worker = ExchangeWorker(
            ExchangeConfig(
                nats_url=nats_url,
                database_url=database_url,
                keys=exchange_keys,
                operator_ids=frozenset({operator_keys.agent_id}),
            )
        )
        await worker.start()
        retries = await asyncio.gather(
            *(b.hire(q, {"n": 1}) for b, q in zip(buyers, quotes, strict=True)),
            return_exceptions=True,
        )
        for retry in retries:
            # Committed before the crash or not, the retry answers the one contract
            # of its quote (the client reads back one the exchange already had).
            assert not isinstance(retry, BaseException), retry
        assert committed <= {retry.contract_id for retry in retries}
        for buyer in buyers:
            balance = await buyer.balance()
            assert (balance.available_millicredits, balance.held_millicredits) == (0, PRICE)
        await check_exchange_invariants(worker.engine)
    finally:
        for agent in agents:
            await agent.close()
        if worker is not None:
            await worker.stop()
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_opening_events_are_written_by_the_group(exchange):
    """The group path really writes: its events table rows match the contracts."""
    await shop(exchange)
    buyers = [await exchange.funded_agent(PRICE) for _ in range(4)]
    quotes = [await echo_quote(buyer) for buyer in buyers]
    contracts = await asyncio.gather(
        *(buyer.hire(quote, {"n": 1}) for buyer, quote in zip(buyers, quotes, strict=True))
    )
    async with exchange.worker.engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT contract_id, event, actor_id FROM exchange_contract_events"
                " WHERE event = 'open'"
            )
        )
        opened = {(row.contract_id, row.actor_id) for row in rows}
    assert opened >= {(c.contract_id, b.agent_id) for c, b in zip(contracts, buyers, strict=True)}
    await exchange.check_invariants()
