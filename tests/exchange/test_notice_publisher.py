"""The notice publisher: each notice into its recipient's inbox, on core NATS.

A notice counts as sent once the connection took it; nothing is stored or
acknowledged by NATS (the outbox keeps the notice until its recipient
acknowledges it). A closed connection fails the batch at once, so the relay
sends it again. Each test runs a nats-server of its own (no auth: the
subjects, not the permissions, are under test here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from agent_client import AgentKeys, subjects
from broker import EmbeddedNatsServer, NatsServerConfig
from exchange.adapters.live_notices import CoreNoticePublisher
from exchange.use_cases.exchange_context import OutboxNotice
from tests.broker.nats_clients import (
    FLUSH_TIMEOUT_S,
    SUBSCRIPTION_WAIT_TIMEOUT_S,
    connected_client,
)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with (
        EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as server,
        connected_client(server.url) as connected,
    ):
        yield connected


def notices_to(recipient: str, count: int) -> list[OutboxNotice]:
    subject = subjects.notifications(recipient)
    return [
        OutboxNotice(f"notice-{number}", recipient, subject, f"payload-{number}".encode())
        for number in range(count)
    ]


async def test_each_notice_goes_into_its_recipients_inbox_in_order(client):
    alice, bob = AgentKeys.generate().agent_id, AgentKeys.generate().agent_id
    received: dict[str, list[bytes]] = {alice: [], bob: []}
    everything = asyncio.Event()

    def listener(agent_id: str):
        async def on_message(message: Msg) -> None:
            received[agent_id].append(message.data)
            if sum(len(got) for got in received.values()) == 5:
                everything.set()

        return on_message

    for agent_id in (alice, bob):
        await client.subscribe(subjects.notice_deliver_subject(agent_id), cb=listener(agent_id))
    await client.flush(timeout=FLUSH_TIMEOUT_S)

    publisher = CoreNoticePublisher(client)
    batch = notices_to(alice, 3) + notices_to(bob, 2)
    assert await publisher.publish_notices(batch) == [None] * 5
    await asyncio.wait_for(everything.wait(), SUBSCRIPTION_WAIT_TIMEOUT_S)
    assert received == {
        alice: [b"payload-0", b"payload-1", b"payload-2"],
        bob: [b"payload-0", b"payload-1"],
    }


async def test_an_empty_batch_publishes_nothing(client):
    assert await CoreNoticePublisher(client).publish_notices([]) == []


async def test_a_closed_connection_fails_the_batch_without_waiting(client):
    publisher = CoreNoticePublisher(client)
    await client.close()
    failures = await asyncio.wait_for(
        publisher.publish_notices(notices_to(AgentKeys.generate().agent_id, 3)), 1.0
    )
    assert len(failures) == 3
    assert all(failure is not None for failure in failures)
