"""The notice publisher: a batch of publishes, one wait for JetStream's answers.

A notice counts as published only when the notice stream acknowledged it;
anything else (no stream, a refusal, junk, no answer in time) is reported
as not published, so that the outbox keeps it for the relay. Each test runs
a nats-server of its own with the real notice stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from agent_client import AgentKeys, subjects
from broker import EmbeddedNatsServer, NatsServerConfig
from broker.streams import NOTICE_STREAM, ensure_notice_stream
from exchange.adapters.jetstream import JetStreamNoticePublisher
from exchange.use_cases.exchange_context import OutboxNotice
from tests.broker.nats_clients import REQUEST_TIMEOUT_S, connected_client

INBOX = "_INBOX.publisher-test"
# Long enough never to decide a test that expects an answer; the tests that
# expect none set a short one.
ANSWER_TIMEOUT_S = 5.0
SHORT_TIMEOUT_S = 0.2
# Bad answers: nested past msgspec's depth limit, and most of a message's room.
NESTING = 100_000
OVERSIZE_BYTES = 900_000
# A stand-in stream's subject, outside the notice stream.
ELSEWHERE = "publisher-test.elsewhere"


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with (
        EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as server,
        connected_client(server.url) as connected,
    ):
        await ensure_notice_stream(connected.jetstream(timeout=REQUEST_TIMEOUT_S))
        yield connected


async def started(
    client: Client, *, timeout_s: float = ANSWER_TIMEOUT_S
) -> JetStreamNoticePublisher:
    publisher = JetStreamNoticePublisher(client, inbox_prefix=INBOX, timeout_s=timeout_s)
    await publisher.start()
    return publisher


def notices(count: int, *, subject: str | None = None) -> list[OutboxNotice]:
    recipient = AgentKeys.generate().agent_id
    return [
        OutboxNotice(f"notice-{number}", subject or subjects.notifications(recipient), b"{}")
        for number in range(count)
    ]


async def stored_count(client: Client) -> int:
    info = await client.jetstream(timeout=REQUEST_TIMEOUT_S).stream_info(NOTICE_STREAM)
    return info.state.messages


async def answering(client: Client, answer: bytes | None, *, delay_s: float = 0.0) -> None:
    """A responder on ELSEWHERE that answers each message with ``answer`` after
    ``delay_s`` (None: never answers)."""

    async def respond(message: Msg) -> None:
        if answer is None:
            return
        await asyncio.sleep(delay_s)
        await client.publish(message.reply, answer)

    await client.subscribe(ELSEWHERE, cb=respond)
    await client.flush()


async def test_a_batch_is_stored_once_and_a_retry_of_it_is_not_stored_again(client):
    publisher = await started(client)
    batch = notices(5)

    assert await publisher.publish_notices(batch) == [None] * 5
    # The relay publishing them again: JetStream's duplicate window drops them,
    # and a duplicate counts as stored.
    assert await publisher.publish_notices(batch) == [None] * 5
    assert await stored_count(client) == 5


async def test_an_empty_batch_publishes_nothing(client):
    publisher = await started(client)
    assert await publisher.publish_notices([]) == []
    assert await stored_count(client) == 0


async def test_a_subject_no_stream_takes_is_not_published(client):
    publisher = await started(client)
    [failure] = await publisher.publish_notices(notices(1, subject=ELSEWHERE))
    # nats-server answers at once that nobody listens: not a timeout.
    assert isinstance(failure, ConnectionError)


@pytest.mark.parametrize(
    "answer",
    [
        b'{"error": {"code": 503, "description": "stream is offline"}}',
        b'{"stream": "SOMEONE_ELSES", "seq": 1}',
        b"not json at all",
        b'["stream", "AGENTX_NOTICES"]',
        b'{"stream": "AGENTX_NOTICES", "error": {"detail": '
        + b"[" * NESTING
        + b"]" * NESTING
        + b"}}",
        b'{"stream": "' + b"x" * OVERSIZE_BYTES + b'"}',
    ],
    ids=["refused", "another stream", "junk", "wrong shape", "deeply nested", "oversize"],
)
async def test_an_answer_that_is_not_the_notice_streams_acknowledgement_is_a_failure(
    client, answer
):
    await answering(client, answer)
    publisher = await started(client)
    [failure] = await publisher.publish_notices(notices(1, subject=ELSEWHERE))
    assert isinstance(failure, ConnectionError)


async def test_no_answer_in_time_is_a_timeout_and_a_late_answer_changes_nothing(client):
    await answering(client, b'{"stream": "AGENTX_NOTICES", "seq": 1}', delay_s=1.0)
    publisher = await started(client, timeout_s=SHORT_TIMEOUT_S)
    [failure] = await publisher.publish_notices(notices(1, subject=ELSEWHERE))
    assert isinstance(failure, TimeoutError)

    await asyncio.sleep(1.5)  # the late answer arrives, for nobody
    # The publisher still works, on the notice stream.
    assert await publisher.publish_notices(notices(2)) == [None, None]
    assert await stored_count(client) == 2


async def test_a_closed_connection_fails_the_batch_without_waiting(tmp_path):
    async with (
        EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as server,
        connected_client(server.url) as connected,
    ):
        await ensure_notice_stream(connected.jetstream(timeout=REQUEST_TIMEOUT_S))
        publisher = await started(connected)
        await connected.close()
        failures = await publisher.publish_notices(notices(3))
    assert len(failures) == 3
    for failure in failures:
        assert failure is not None and not isinstance(failure, TimeoutError)
