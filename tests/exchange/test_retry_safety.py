"""A retried transaction, or a retried delivery, changes nothing twice.

``run_transaction`` runs a unit of work again when its transaction loses a
race (a busy SQLite database, a PostgreSQL serialization failure), so the
work must return its outcome rather than add to anything outside itself.
These tests make the first commit of a contract step fail the way a lost race
does: the driver's own error, raised from the dialect's commit, once, for the
next transaction that wrote to the outbox. (A real busy COMMIT cannot be had
on demand: the writer holds SQLite's write lock from ``BEGIN IMMEDIATE`` on,
and WAL readers never block a commit.) A provider's cancel and a buyer's
acceptance must still leave exactly one notice per party on JetStream
(published once, and stored once), move the money once, and keep the
invariants; grouped and one by one.

The client retries ``contract.deliver`` after a timeout until the deadline,
so a repeated delivery of the same result is answered with the contract as
it is (delivered, or released since) without a second event, notice or
payment, while another result is refused. Both databases.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client import ExchangeError, QuoteRequest, subjects
from agent_client.protocol import DeliveredNotice
from exchange.adapters.exchange_tables import outbox

PRICE = 10_000
GRANT = 100_000
FEE = PRICE * 500 // 10_000
CAPABILITY = "text.upper"
GROUPED_AND_ONE_BY_ONE = pytest.mark.parametrize(
    "group_commit", [True, False], ids=["grouped", "one-by-one"]
)

# Marks a pooled connection whose open transaction inserted outbox rows.
_WROTE_OUTBOX = "test_wrote_outbox"


class _SerializationFailure(Exception):
    """What asyncpg carries inside a serialization failure."""

    sqlstate = "40001"


def lost_race_error(dialect: Dialect) -> Exception:
    """The driver's error for a commit that lost a race (run_transaction retries it)."""
    dbapi: Any = dialect.loaded_dbapi
    if dialect.name == "sqlite":
        return dbapi.OperationalError("database is locked")
    return dbapi.OperationalError("could not serialize access", _SerializationFailure())


class FirstCommitLosesRace:
    """Once armed, fails the commit of the next transaction that wrote to the outbox."""

    def __init__(self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.failed = 0
        dialect = engine.dialect
        real_commit = dialect.do_commit

        def do_commit(dbapi_connection: Any) -> None:
            wrote_outbox = dbapi_connection.info.pop(_WROTE_OUTBOX, False)
            if wrote_outbox and self.armed:
                self.armed = False
                self.failed += 1
                raise lost_race_error(dialect)
            real_commit(dbapi_connection)

        monkeypatch.setattr(dialect, "do_commit", do_commit)
        event.listen(engine.sync_engine, "before_cursor_execute", _note_outbox_write)
        event.listen(engine.sync_engine, "rollback", _forget_outbox_write)


def _note_outbox_write(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.lstrip().upper().startswith(f"INSERT INTO {outbox.name.upper()}"):
        connection.info[_WROTE_OUTBOX] = True


def _forget_outbox_write(connection: Connection) -> None:
    connection.info.pop(_WROTE_OUTBOX, None)


class RecordingPublisher:
    """The worker's real notice publisher, noting the id of every notice it publishes."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.notice_ids: list[str] = []
        self._noted = asyncio.Condition()

    async def publish_notices(self, notices: Any) -> Any:
        async with self._noted:
            self.notice_ids.extend(notice.notice_id for notice in notices)
            self._noted.notify_all()
        return await self.real.publish_notices(notices)

    async def published(self, notice_ids: set[str]) -> set[str]:
        """Every notice published, once ``notice_ids`` are (they go in the background)."""
        async with asyncio.timeout(10), self._noted:
            await self._noted.wait_for(lambda: notice_ids <= set(self.notice_ids))
        # Give a wrong extra publish the chance to show up too.
        await asyncio.sleep(0.2)
        return set(self.notice_ids)


def recording_publisher(exchange: Any) -> RecordingPublisher:
    context = exchange.worker.context
    publisher = RecordingPublisher(context.publisher)
    context.publisher = publisher
    return publisher


async def sent_notices(exchange: Any, *agents: Any) -> dict[str, tuple[str, Any]]:
    """Every notice JetStream holds for ``agents``: its id → (its subject, the notice)."""
    sent: dict[str, tuple[str, Any]] = {}
    for agent in agents:
        subject = subjects.notifications(agent.agent_id)
        for notice in await exchange.notices_to(agent.agent_id):
            sent[notice.header.nonce] = (subject, notice)
    return sent


def described(notices: dict[str, tuple[str, Any]]) -> list[tuple[str, str, str]]:
    """(subject, kind, event) of each notice, sorted: what the parties are told."""
    return sorted(
        (subject, type(notice).__name__, getattr(notice, "event", ""))
        for subject, notice in notices.values()
    )


async def upper(task: Any) -> Any:
    return {"text": task["text"].upper()}


async def never(task: Any) -> Any:
    await asyncio.Event().wait()


async def hired(exchange: Any, handler: Any) -> tuple[Any, Any, Any]:
    """A provider serving ``handler``, a funded buyer, and the contract it opened."""
    provider = await exchange.agent()
    await provider.advertise(CAPABILITY, description="u", price_millicredits=PRICE)
    await provider.serve(CAPABILITY, handler, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    [quote] = await buyer.request_quotes(
        QuoteRequest(CAPABILITY, "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quote, {"text": "hi"})
    return provider, buyer, contract


async def balances(*agents: Any) -> list[tuple[int, int]]:
    """(available, held) of each agent."""
    replies = [await agent.balance() for agent in agents]
    return [(reply.available_millicredits, reply.held_millicredits) for reply in replies]


async def events_of(agent: Any, contract_id: str) -> list[str]:
    return [entry.event for entry in (await agent.evidence(contract_id)).events]


@GROUPED_AND_ONE_BY_ONE
async def test_a_provider_cancel_whose_commit_lost_a_race_notifies_each_party_once(
    exchange, monkeypatch, group_commit
):
    if not group_commit:
        await exchange.restart(group_commit=False)
    provider, buyer, contract = await hired(exchange, never)
    race = FirstCommitLosesRace(exchange.worker.engine, monkeypatch)
    publisher = recording_publisher(exchange)
    before = await sent_notices(exchange, buyer, provider)

    race.armed = True
    refunded = await provider.cancel(contract.contract_id, reason="cannot do it")

    assert race.failed == 1, "the cancel's transaction was not retried"
    assert refunded.state == "refunded" and refunded.refunded_millicredits == PRICE
    after = await sent_notices(exchange, buyer, provider)
    new = {notice_id: after[notice_id] for notice_id in after.keys() - before.keys()}
    assert described(new) == sorted(
        (subjects.notifications(agent.agent_id), "ContractUpdatedNotice", "provider_cancel")
        for agent in (buyer, provider)
    )
    assert (await publisher.published(set(new))) - before.keys() == set(new)
    assert await balances(buyer, provider) == [(GRANT, 0), (0, 0)]
    assert await events_of(buyer, contract.contract_id) == ["open", "provider_cancel"]
    await exchange.check_invariants()


@GROUPED_AND_ONE_BY_ONE
async def test_an_acceptance_whose_commit_lost_a_race_releases_and_notifies_once(
    exchange, monkeypatch, group_commit
):
    if not group_commit:
        await exchange.restart(group_commit=False)
    provider, buyer, contract = await hired(exchange, upper)
    delivery = await contract.wait_delivery(timeout_s=10)
    race = FirstCommitLosesRace(exchange.worker.engine, monkeypatch)
    publisher = recording_publisher(exchange)
    before = await sent_notices(exchange, buyer, provider)

    race.armed = True
    released = await contract.accept_delivery(delivery)

    assert race.failed == 1, "the acceptance's transaction was not retried"
    assert released.state == "released" and released.net_millicredits == PRICE - FEE
    after = await sent_notices(exchange, buyer, provider)
    new = {notice_id: after[notice_id] for notice_id in after.keys() - before.keys()}
    assert described(new) == sorted(
        (subjects.notifications(agent.agent_id), "ContractUpdatedNotice", "accept")
        for agent in (buyer, provider)
    )
    assert (await publisher.published(set(new))) - before.keys() == set(new)
    assert await balances(buyer, provider) == [(GRANT - PRICE, 0), (PRICE - FEE, 0)]
    assert await events_of(buyer, contract.contract_id) == ["open", "deliver", "accept"]
    await exchange.check_invariants()


def deliveries_to(buyer: Any, contract_id: str, notices: dict[str, tuple[str, Any]]) -> int:
    return sum(
        isinstance(notice, DeliveredNotice)
        and notice.contract_id == contract_id
        and subject == subjects.notifications(buyer.agent_id)
        for subject, notice in notices.values()
    )


@GROUPED_AND_ONE_BY_ONE
async def test_a_retried_delivery_of_the_same_result_is_answered_and_changes_nothing(
    exchange, group_commit
):
    if not group_commit:
        await exchange.restart(group_commit=False)
    provider, buyer, contract = await hired(exchange, upper)
    delivery = await contract.wait_delivery(timeout_s=10)
    before = await sent_notices(exchange, buyer, provider)

    # The provider's client did not get its answer and sends the same result again.
    again = await provider.deliver(contract.contract_id, {"text": "HI"})

    assert again.state == "delivered" and again.result_sha256 == delivery.result_sha256
    assert (await sent_notices(exchange, buyer, provider)).keys() == before.keys()
    assert deliveries_to(buyer, contract.contract_id, before) == 1
    assert await events_of(buyer, contract.contract_id) == ["open", "deliver"]

    # Another result on a delivered contract is refused, as before.
    with pytest.raises(ExchangeError) as caught:
        await provider.deliver(contract.contract_id, {"text": "something else"})
    assert caught.value.code == "invalid_state"

    released = await contract.accept_delivery(delivery)
    assert released.state == "released"
    settled = await balances(buyer, provider)
    assert settled == [(GRANT - PRICE, 0), (PRICE - FEE, 0)]
    after_release = await sent_notices(exchange, buyer, provider)

    # A retry that arrives after the release gets the released contract; no money moves.
    late = await provider.deliver(contract.contract_id, {"text": "HI"})

    assert late.state == "released" and late.net_millicredits == released.net_millicredits
    assert await balances(buyer, provider) == settled
    assert (await sent_notices(exchange, buyer, provider)).keys() == after_release.keys()
    assert await events_of(buyer, contract.contract_id) == ["open", "deliver", "accept"]
    await exchange.check_invariants()
