"""An EmbeddedNatsServer starts, runs beside others, and stops cleanly.

Each test starts servers of its own in a temporary data directory (the
shared session server must not be stopped under other tests) and checks what
an operator would see: distinct ports, files in the data directory, the
process gone and the port free after stop, data kept across a restart, and
clear errors when the lifecycle is misused.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from nats.errors import NoRespondersError
from nats.js.errors import ServiceUnavailableError

from broker import (
    EmbeddedNatsServer,
    NatsServerConfig,
    NatsServerDataDirInUse,
    NatsServerStateError,
    ServerState,
)
from tests.broker.nats_clients import (
    REQUEST_TIMEOUT_S,
    SUBSCRIPTION_WAIT_TIMEOUT_S,
    connected_client,
)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def process_exists(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    return True


def ports_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("*.ports"))


async def round_trip(url: str, payload: bytes) -> bytes:
    subject = f"broker-test.round-trip.{uuid.uuid4().hex}"
    async with connected_client(url) as client:
        subscription = await client.subscribe(subject)
        await client.publish(subject, payload)
        message = await subscription.next_msg(timeout=SUBSCRIPTION_WAIT_TIMEOUT_S)
    data: bytes = message.data
    return data


async def test_two_servers_run_side_by_side_on_different_ports(tmp_path: Path) -> None:
    first_config = NatsServerConfig(data_dir=tmp_path / "first")
    second_config = NatsServerConfig(data_dir=tmp_path / "second")
    async with (
        EmbeddedNatsServer(first_config) as first,
        EmbeddedNatsServer(second_config) as second,
    ):
        assert port_of(first.url) != port_of(second.url)
        assert first.process_id != second.process_id
        assert await round_trip(first.url, b"to the first") == b"to the first"
        assert await round_trip(second.url, b"to the second") == b"to the second"


async def test_stop_is_idempotent_and_the_process_is_gone(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path))
    await server.start()
    process_id = server.process_id
    assert process_id is not None and process_exists(process_id)
    await server.stop()
    await server.stop()
    assert server.state is ServerState.STOPPED
    assert not process_exists(process_id)
    # A graceful exit lets nats-server remove its own ports file.
    assert ports_files(tmp_path) == []


async def test_the_client_port_is_released_after_stop(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "first")) as first:
        port = port_of(first.url)
        # A connected client leaves TIME_WAIT sockets behind, as in real use.
        assert await round_trip(first.url, b"before") == b"before"
    with socket.create_server(("127.0.0.1", port)):
        pass
    explicit_config = NatsServerConfig(data_dir=tmp_path / "second", port=port)
    async with EmbeddedNatsServer(explicit_config) as second:
        assert port_of(second.url) == port
        assert await round_trip(second.url, b"after") == b"after"


async def test_config_and_logs_are_kept_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "created on start"
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=data_dir)) as server:
        assert server.data_dir == data_dir
        assert server.config_path.parent == data_dir
        config_text = server.config_path.read_text(encoding="utf-8")
        assert "port: -1" in config_text
        assert f'store_dir: "{data_dir}"' in config_text
        assert (data_dir / "jetstream").is_dir()
    assert "Server is ready" in server.log_path.read_text(encoding="utf-8")
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=data_dir)):
        pass
    previous_log = data_dir / "nats-server.previous.log"
    assert "Server Exiting" in previous_log.read_text(encoding="utf-8")


async def test_a_data_dir_path_with_quotes_spaces_and_dollars_is_passed_through_intact(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / 'odd "name" with $HOME and \\ backslash'
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=data_dir)) as server:
        assert await round_trip(server.url, b"fine") == b"fine"
    assert (data_dir / "jetstream").is_dir()


async def test_jetstream_keeps_a_stream_across_a_restart_on_the_same_data_dir(
    tmp_path: Path,
) -> None:
    config = NatsServerConfig(data_dir=tmp_path)
    async with EmbeddedNatsServer(config) as server, connected_client(server.url) as client:
        jetstream = client.jetstream(timeout=REQUEST_TIMEOUT_S)
        await jetstream.add_stream(name="KEPT", subjects=["kept.>"])
        await jetstream.publish("kept.one", b"survives", timeout=REQUEST_TIMEOUT_S)
    async with EmbeddedNatsServer(config) as server, connected_client(server.url) as client:
        jetstream = client.jetstream(timeout=REQUEST_TIMEOUT_S)
        stored = await jetstream.get_msg("KEPT", 1)
    assert stored.data == b"survives"


async def test_a_server_without_jetstream_does_not_answer_jetstream_requests(
    tmp_path: Path,
) -> None:
    config = NatsServerConfig(data_dir=tmp_path, jetstream=False)
    async with EmbeddedNatsServer(config) as server, connected_client(server.url) as client:
        assert "jetstream" not in server.config_path.read_text(encoding="utf-8")
        with pytest.raises((NoRespondersError, ServiceUnavailableError)):
            await client.jetstream(timeout=REQUEST_TIMEOUT_S).account_info()


async def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as first:
        config_before = first.config_path.read_text(encoding="utf-8")
        second = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path, port=0, monitor_port=0))
        with pytest.raises(NatsServerDataDirInUse) as raised:
            await second.start()
        assert raised.value.data_dir == tmp_path
        assert second.state is ServerState.STOPPED
        assert second.process_id is None
        # The refused server must not have touched the running one's files.
        assert first.config_path.read_text(encoding="utf-8") == config_before
        assert await round_trip(first.url, b"still serving") == b"still serving"


async def test_the_data_dir_can_be_used_again_after_stop(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)):
        pass
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as again:
        assert again.state is ServerState.RUNNING


async def test_the_url_is_unavailable_before_start_and_after_stop(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path))
    with pytest.raises(NatsServerStateError, match="is new"):
        _ = server.url
    async with server:
        assert server.url.startswith("nats://127.0.0.1:")
    with pytest.raises(NatsServerStateError, match="is stopped") as raised:
        _ = server.url
    assert raised.value.state == "stopped"


async def test_a_stopped_server_cannot_be_started_again(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path))
    async with server:
        with pytest.raises(NatsServerStateError, match="cannot start"):
            await server.start()
    with pytest.raises(NatsServerStateError, match="cannot start"):
        await server.start()


async def test_stopping_a_server_that_never_started_is_harmless(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "never"))
    await server.stop()
    assert server.state is ServerState.STOPPED
    assert not (tmp_path / "never").exists()
