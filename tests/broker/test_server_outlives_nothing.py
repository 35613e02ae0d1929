"""The embedded nats-server never outlives the process that started it.

Two defences, each proven with real processes and no fakes:

- the parent-death signal: we SIGKILL ``agentx up`` (and, one level down, a
  small Python process running an EmbeddedNatsServer) and watch its
  nats-server disappear, then start ``agentx up`` again on the same data
  directory and check that exactly one nats-server uses it, on the same
  JetStream store (the result stream keeps its creation time);
- the pid file: we start a nats-server ourselves with a data directory's
  config file and no parent-death signal, as a crashed earlier run would
  leave it, and check that the next start stops it (SIGTERM, or SIGKILL if
  it does not listen) and runs alone; a pid file naming any other process
  (a bystander, or a nats-server of another data directory) is left alone.

We look at processes through /proc and at the store through the HTTP
monitor, never as a NATS client: ``agentx up`` may require authentication.
Every wait is bounded generously; the bounds are about outcomes, not speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from broker import EmbeddedNatsServer, NatsServerConfig, ServerState, locate_nats_server_binary
from broker.nats_process import _die_with_parent_hook
from tests.broker.nats_clients import get_monitor_json

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the parent-death signal and /proc are Linux's"
)

AGENTX = Path(sys.executable).parent / "agentx"
CHILD_SCRIPT = Path(__file__).with_name("embedded_server_child.py")
RESULT_STREAM = "AGENTX_RESULTS"

# agentx up migrates a database and starts workers before it says "running".
STACK_START_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 20.0
PROCESS_EXIT_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.05
# Enough for one nats-server command line (binary path, flag, config path).
COMMAND_LINE_BYTES_MAX = 64 * 1024
# A leftover server that ignores SIGTERM should not hold the test up long.
SHORT_SHUTDOWN_TIMEOUT_S = 0.5


def command_line(process_id: int) -> list[bytes]:
    """The arguments of a running process; empty for a zombie or a gone process."""
    try:
        with open(f"/proc/{process_id}/cmdline", "rb") as command_line_file:
            content = command_line_file.read(COMMAND_LINE_BYTES_MAX)
    except OSError:
        return []
    return content.split(b"\0")[:-1]


def runs_with_config(process_id: int, config_path: Path) -> bool:
    """True while ``process_id`` is a nats-server (not a zombie) using ``config_path``."""
    arguments = command_line(process_id)
    return (
        bool(arguments)
        and os.path.basename(arguments[0]).startswith(b"nats-server")
        and os.fsencode(config_path) in arguments[1:]
    )


def live_servers_using(config_path: Path) -> list[int]:
    process_ids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return sorted(pid for pid in process_ids if runs_with_config(pid, config_path))


async def poll_until(condition: Callable[[], bool], *, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
    return True


def read_pid_file(nats_dir: Path) -> int | None:
    try:
        return int((nats_dir / "nats-server.pid").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None


async def result_stream_created(nats_dir: Path, process_id: int) -> str:
    """The result stream's creation time, as the server's HTTP monitor reports it."""
    monitor_url = monitor_url_from_ports_file(nats_dir, process_id)
    report = await get_monitor_json(monitor_url, "/jsz?accounts=true&streams=true")
    created = [
        stream["created"]
        for account in report.get("account_details", [])
        for stream in account.get("stream_detail", [])
        if stream["name"] == RESULT_STREAM
    ]
    assert len(created) == 1, report
    return str(created[0])


def monitor_url_from_ports_file(nats_dir: Path, process_id: int) -> str:
    (ports_path,) = nats_dir.glob(f"*_{process_id}.ports")
    monitoring: list[str] = json.loads(ports_path.read_text(encoding="utf-8"))["monitoring"]
    assert monitoring[0].startswith("http://127.0.0.1:")
    return monitoring[0]


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


async def start_agentx(data_dir: Path, stderr_file: BinaryIO) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(AGENTX),
        "up",
        "--port",
        "0",
        "--no-portal",
        "--data-dir",
        str(data_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
    )


async def wait_until_running(process: asyncio.subprocess.Process, stderr_path: Path) -> None:
    """Read agentx's output until it says it is running; fail if it exits first."""
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STACK_START_TIMEOUT_S
    output: list[bytes] = []
    while b"running; press Ctrl-C to stop" not in b"".join(output):
        remaining_s = deadline - loop.time()
        assert remaining_s > 0, f"agentx up not running in time: {output!r}"
        line = await asyncio.wait_for(process.stdout.readline(), timeout=remaining_s)
        assert line, f"agentx up exited: {output!r}\n{read_text(stderr_path)}"
        output.append(line)
    assert any(line.startswith(b"NATS:        nats://127.0.0.1:") for line in output), output


async def end_processes(agentx_processes: list[asyncio.subprocess.Process], config: Path) -> None:
    """Kill what the test started and may have left behind when it failed."""
    for process in agentx_processes:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), timeout=PROCESS_EXIT_TIMEOUT_S)
    # Only servers using this test's own temporary config: ours, provably.
    for process_id in live_servers_using(config):
        os.kill(process_id, signal.SIGKILL)


async def test_agentx_up_killed_with_sigkill_leaves_no_server_and_restarts_on_the_same_store(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "agentx"
    nats_dir = data_dir / "nats"
    config_path = nats_dir / "nats-server.conf"
    stderr_path = tmp_path / "agentx.stderr"
    started: list[asyncio.subprocess.Process] = []
    with stderr_path.open("wb") as stderr_file:
        try:
            first = await start_agentx(data_dir, stderr_file)
            started.append(first)
            await wait_until_running(first, stderr_path)
            first_server = read_pid_file(nats_dir)
            assert first_server is not None and runs_with_config(first_server, config_path)
            created_before = await result_stream_created(nats_dir, first_server)
            assert list(nats_dir.glob(f"jetstream/*/streams/{RESULT_STREAM}/meta.inf"))

            first.kill()
            await asyncio.wait_for(first.wait(), timeout=PROCESS_EXIT_TIMEOUT_S)
            assert await poll_until(
                lambda: not runs_with_config(first_server, config_path),
                timeout_s=PROCESS_EXIT_TIMEOUT_S,
            ), f"nats-server {first_server} outlived agentx up"

            second = await start_agentx(data_dir, stderr_file)
            started.append(second)
            await wait_until_running(second, stderr_path)
            second_server = read_pid_file(nats_dir)
            assert second_server is not None and second_server != first_server
            assert live_servers_using(config_path) == [second_server]
            assert await result_stream_created(nats_dir, second_server) == created_before

            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), timeout=PROCESS_EXIT_TIMEOUT_S) == 0
            assert live_servers_using(config_path) == []
        finally:
            await end_processes(started, config_path)


async def test_an_embedded_server_dies_with_the_python_process_that_started_it(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "nats-server.conf"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD_SCRIPT),
        str(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=SERVER_START_TIMEOUT_S)
        server_process_id = int(line)
        assert runs_with_config(server_process_id, config_path)
        child.kill()
        await asyncio.wait_for(child.wait(), timeout=PROCESS_EXIT_TIMEOUT_S)
        assert await poll_until(
            lambda: not runs_with_config(server_process_id, config_path),
            timeout_s=PROCESS_EXIT_TIMEOUT_S,
        ), f"nats-server {server_process_id} outlived its parent"
    finally:
        await end_processes([child], config_path)


def test_a_child_whose_parent_died_before_prctl_kills_itself() -> None:
    # The hook compares the child's parent with the pid it was given. Given
    # one that is not ours, it sees what a child whose parent died between
    # fork and prctl sees: a parent other than the one that forked it.
    not_the_parent = os.getpid() + 1
    orphaned = subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=_die_with_parent_hook(not_the_parent),
        timeout=PROCESS_EXIT_TIMEOUT_S,
        check=False,
    )
    assert orphaned.returncode == -signal.SIGKILL
    watched = subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=_die_with_parent_hook(os.getpid()),
        timeout=PROCESS_EXIT_TIMEOUT_S,
        check=False,
    )
    assert watched.returncode == 0


async def start_leftover_server(config: NatsServerConfig) -> subprocess.Popen[bytes]:
    """A nats-server on ``config``'s data dir with no parent-death signal, as an
    earlier run that crashed would leave it; returns once it is serving."""
    # One start and stop writes the config file the leftover runs with.
    async with EmbeddedNatsServer(config) as server:
        config_path = server.config_path
    leftover = spawn_without_parent_death_signal(
        [str(locate_nats_server_binary()), "--config", str(config_path)]
    )
    serving = await poll_until(
        lambda: (
            read_pid_file(config.data_dir) == leftover.pid
            and any(config.data_dir.glob(f"*_{leftover.pid}.ports"))
        ),
        timeout_s=SERVER_START_TIMEOUT_S,
    )
    assert serving and runs_with_config(leftover.pid, config_path)
    return leftover


def spawn_without_parent_death_signal(arguments: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        arguments,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def warnings_from_the_server(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "broker.nats_process" and record.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize(
    ("leftover_ignores_sigterm", "ended_by"), [(False, "SIGTERM"), (True, "SIGKILL")]
)
async def test_a_leftover_server_on_the_data_dir_is_stopped_before_the_next_start(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    leftover_ignores_sigterm: bool,
    ended_by: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="broker.nats_process")
    config = NatsServerConfig(data_dir=tmp_path, shutdown_timeout_s=SHORT_SHUTDOWN_TIMEOUT_S)
    leftover = await start_leftover_server(config)
    try:
        if leftover_ignores_sigterm:
            # A stopped process keeps SIGTERM pending; only SIGKILL ends it.
            leftover.send_signal(signal.SIGSTOP)
        async with EmbeddedNatsServer(config) as server:
            # start() returned only after the leftover had exited.
            assert leftover.poll() is not None
            assert live_servers_using(server.config_path) == [server.process_id]
            assert server.state is ServerState.RUNNING
        (warning,) = warnings_from_the_server(caplog)
        assert f"pid {leftover.pid}" in warning and ended_by in warning
        if leftover_ignores_sigterm:
            assert leftover.returncode == -signal.SIGKILL
        assert not (tmp_path / "nats-server.pid").exists()
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait(timeout=PROCESS_EXIT_TIMEOUT_S)


async def test_a_pid_file_naming_a_process_that_is_not_this_data_dirs_server_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="broker.nats_process")
    data_dir = tmp_path / "ours"
    data_dir.mkdir()
    other_config = NatsServerConfig(data_dir=tmp_path / "other")
    bystander = spawn_without_parent_death_signal(["sleep", str(int(PROCESS_EXIT_TIMEOUT_S * 3))])
    try:
        async with EmbeddedNatsServer(other_config) as other:
            assert other.process_id is not None
            for named_process_id in (bystander.pid, other.process_id):
                # As if the pid of our last server had since gone to this process.
                (data_dir / "nats-server.pid").write_text(f"{named_process_id}\n", "ascii")
                async with EmbeddedNatsServer(NatsServerConfig(data_dir=data_dir)) as ours:
                    assert ours.process_id != named_process_id
            assert bystander.poll() is None
            assert runs_with_config(other.process_id, other.config_path)
        assert warnings_from_the_server(caplog) == []
    finally:
        bystander.kill()
        bystander.wait(timeout=PROCESS_EXIT_TIMEOUT_S)
