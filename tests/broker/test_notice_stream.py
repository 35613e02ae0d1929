"""The notice stream takes one durable consumer per agent, beyond nats-server's default cap.

nats-server 2.15 limits every stream to 1,000 consumers unless the stream
sets its own limit. The exchange gives each agent a durable consumer on
``AGENTX_NOTICES``, so its stream declares ``NOTICE_CONSUMERS_MAX``; a
stream created before that (with the server's default) is brought up to it.
Each test runs a server of its own, so the stream is the test's alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import BadRequestError

from agent_client import subjects
from broker import EmbeddedNatsServer, NatsServerConfig
from broker.streams import NOTICE_CONSUMERS_MAX, NOTICE_STREAM, ensure_notice_stream
from tests.broker.nats_clients import REQUEST_TIMEOUT_S, connected_client

SERVER_DEFAULT_CONSUMERS_MAX = 1_000


async def test_a_new_notice_stream_allows_the_documented_number_of_consumers(
    tmp_path: Path,
) -> None:
    async with (
        EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as server,
        connected_client(server.url) as client,
    ):
        jetstream = client.jetstream(timeout=REQUEST_TIMEOUT_S)
        await ensure_notice_stream(jetstream)
        info = await jetstream.stream_info(NOTICE_STREAM)
    assert info.config.max_consumers == NOTICE_CONSUMERS_MAX


async def test_an_existing_stream_at_the_server_default_takes_more_than_1000_consumers(
    tmp_path: Path,
) -> None:
    async with (
        EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as server,
        connected_client(server.url) as client,
    ):
        jetstream = client.jetstream(timeout=REQUEST_TIMEOUT_S)
        # As an earlier version declared it: no consumer limit of its own.
        await jetstream.add_stream(name=NOTICE_STREAM, subjects=[subjects.notifications("*")])
        for number in range(SERVER_DEFAULT_CONSUMERS_MAX):
            await add_durable(jetstream, f"notices_{number}")
        with pytest.raises(BadRequestError) as refused:
            await add_durable(jetstream, "notices_one_too_many")
        assert "maximum consumers limit reached" in str(refused.value)

        await ensure_notice_stream(jetstream)

        await add_durable(jetstream, "notices_one_too_many")
        info = await jetstream.stream_info(NOTICE_STREAM)
    assert info.state.consumer_count == SERVER_DEFAULT_CONSUMERS_MAX + 1
    assert info.config.max_consumers == NOTICE_CONSUMERS_MAX


async def add_durable(jetstream: JetStreamContext, name: str) -> None:
    config = ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT)
    await jetstream.add_consumer(NOTICE_STREAM, config)
