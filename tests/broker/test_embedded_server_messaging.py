"""The embedded nats-server carries real traffic.

The traffic tests talk with nats-py to a server of this module started
without an access policy (no authentication), to test the process itself:
publish/subscribe, request/reply, JetStream, and the payload limit the
server advertises. What authenticated clients may do is tested in
test_auth_callout.py and tests/test_threat_model.py; the monitor tests look
at the session's server, which runs as the product does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError

from broker import EmbeddedNatsServer, NatsServerConfig
from broker.limits import (
    JETSTREAM_FILE_STORE_BYTES_DEFAULT,
    JETSTREAM_MEMORY_STORE_BYTES_DEFAULT,
    MAX_PAYLOAD_BYTES_DEFAULT,
)
from tests.broker.nats_clients import (
    REQUEST_TIMEOUT_S,
    SUBSCRIPTION_WAIT_TIMEOUT_S,
    connected_client,
    flush_subscriptions,
    get_monitor_json,
)

SYSTEM_NATS_PORT = 4222


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def open_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedNatsServer]:
    config = NatsServerConfig(data_dir=tmp_path_factory.mktemp("open-nats-server"))
    async with EmbeddedNatsServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def open_url(open_server: EmbeddedNatsServer) -> str:
    return open_server.url


def unique_token() -> str:
    return uuid.uuid4().hex


def test_server_listens_on_a_free_loopback_port_not_the_system_default(
    nats_server: EmbeddedNatsServer, nats_url: str
) -> None:
    address = urlsplit(nats_url)
    assert address.scheme == "nats"
    assert address.hostname == "127.0.0.1"
    assert address.port is not None and address.port != SYSTEM_NATS_PORT
    assert nats_url == nats_server.url


async def test_a_published_message_reaches_a_subscriber(open_url: str) -> None:
    subject = f"broker-test.publish.{unique_token()}"
    async with connected_client(open_url) as subscriber, connected_client(open_url) as publisher:
        subscription = await subscriber.subscribe(subject)
        await flush_subscriptions(subscriber)
        await publisher.publish(subject, b"hello")
        message = await subscription.next_msg(timeout=SUBSCRIPTION_WAIT_TIMEOUT_S)
    assert message.subject == subject
    assert message.data == b"hello"


async def test_a_request_gets_the_reply_of_a_responder(open_url: str) -> None:
    subject = f"broker-test.request.{unique_token()}"
    async with connected_client(open_url) as responder, connected_client(open_url) as requester:

        async def answer(message: Msg) -> None:
            await message.respond(b"echo: " + message.data)

        await responder.subscribe(subject, cb=answer)
        await flush_subscriptions(responder)
        reply = await requester.request(subject, b"ping", timeout=REQUEST_TIMEOUT_S)
    assert reply.data == b"echo: ping"


async def test_jetstream_is_enabled_and_stores_a_published_message(open_url: str) -> None:
    token = unique_token()
    stream_name = f"BROKER_TEST_{token}"
    subject = f"broker-test.jetstream.{token}"
    async with connected_client(open_url) as client:
        jetstream = client.jetstream(timeout=REQUEST_TIMEOUT_S)
        # Without JetStream this raises: nobody answers the $JS.API subjects.
        await jetstream.account_info()
        await jetstream.add_stream(name=stream_name, subjects=[subject])
        try:
            acknowledgement = await jetstream.publish(subject, b"kept", timeout=REQUEST_TIMEOUT_S)
            stored = await jetstream.get_msg(stream_name, acknowledgement.seq)
        finally:
            await jetstream.delete_stream(stream_name)
    assert acknowledgement.stream == stream_name
    assert stored.data == b"kept"


async def test_a_payload_above_the_configured_maximum_is_refused(open_url: str) -> None:
    async with connected_client(open_url) as client:
        assert client.max_payload == MAX_PAYLOAD_BYTES_DEFAULT
        with pytest.raises(MaxPayloadError):
            await client.publish(
                f"broker-test.too-big.{unique_token()}", b"x" * (MAX_PAYLOAD_BYTES_DEFAULT + 1)
            )


async def test_the_monitor_endpoint_reports_healthy(nats_server: EmbeddedNatsServer) -> None:
    health = await get_monitor_json(nats_server.monitor_url, "/healthz")
    assert health == {"status": "ok"}


async def test_the_generated_config_file_reaches_the_server(
    nats_server: EmbeddedNatsServer,
) -> None:
    variables = await get_monitor_json(nats_server.monitor_url, "/varz")
    assert variables["port"] == urlsplit(nats_server.url).port
    assert variables["max_payload"] == MAX_PAYLOAD_BYTES_DEFAULT
    jetstream_config = variables["jetstream"]["config"]
    assert jetstream_config["max_memory"] == JETSTREAM_MEMORY_STORE_BYTES_DEFAULT
    assert jetstream_config["max_storage"] == JETSTREAM_FILE_STORE_BYTES_DEFAULT
    assert jetstream_config["store_dir"] == str(nats_server.data_dir / "jetstream")
