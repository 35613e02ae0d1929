"""The MCP server that ``agentx provide-mcp`` sells: a child process, started, watched, stopped.

The SDK's :func:`~mcp.client.stdio.stdio_client` starts the command in a
session of its own (so a Ctrl-C at the terminal reaches the bridge, not the
child) and, on exit, stops it the way the MCP specification says: stdin
closed, a grace period, then SIGTERM and SIGKILL to its process group. Around
it, this module adds what a long-running provider needs:

* the child's **stderr** goes to this process's log, one record per line,
  bounded (:class:`StderrLines`: long lines cut, at most so many lines per
  window, the rest counted and reported);
* its **end** is noticed: the session's read stream passes through a small
  relay, and when the child's stdout ends (it exited, crashed, or closed it)
  :attr:`ChildServer.exited` is set, with the last stderr line as the cause;
* its **PID**, read from ``/proc`` (Linux; ``None`` elsewhere), is reported and
  used as a backstop: a child still alive after the SDK's shutdown is killed
  by its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from mcp_types import Implementation

from agent_client.bridges.mcp_provider_errors import ChildServerError

__all__ = ["ChildServer", "StderrLines", "open_child_server"]

log = logging.getLogger("agent_client.bridges.mcp_provider.child")

# The child answers ``initialize`` within this, or it is not an MCP server.
INITIALIZE_TIMEOUT_S = 30.0
# Stderr: each line cut at this many characters; at most this many lines per
# window reach the log, the others are counted and reported once per window.
STDERR_LINE_CHARS_MAX = 1_000
STDERR_LINES_PER_WINDOW_MAX = 100
STDERR_WINDOW_S = 10.0
STDERR_READ_BYTES = 4_096
# Once the child ended, its last stderr lines (the cause, often) are awaited this long.
STDERR_DRAIN_WAIT_S = 1.0
# After the SDK's own shutdown (about 6 s at most), a surviving child is killed.
BACKSTOP_KILL_WAIT_S = 2.0
CLIENT_INFO = Implementation(name="agentx-provide-mcp", version="1.0.0")


@dataclass
class StderrLines:
    """Cuts the child's stderr bytes into log lines, within bounds. Pure: no I/O."""

    line_chars_max: int = STDERR_LINE_CHARS_MAX
    lines_per_window_max: int = STDERR_LINES_PER_WINDOW_MAX
    window_s: float = STDERR_WINDOW_S
    last_line: str = ""
    _partial: bytes = b""
    _window_start_s: float = 0.0
    _logged_in_window: int = 0
    _dropped_in_window: int = 0

    def feed(self, chunk: bytes, /, *, now_s: float) -> list[str]:
        """The lines to log for this chunk (empty chunk: the end, flush the rest)."""
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        if not chunk and self._partial:
            complete, self._partial = [*complete, self._partial], b""
        # A line without an end is not kept growing: past the cut it is a line.
        if len(self._partial) > 4 * self.line_chars_max:
            complete, self._partial = [*complete, self._partial], b""
        return self._admit([self._text(raw) for raw in complete if raw.strip()], now_s)

    def _text(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace").rstrip()
        if len(text) > self.line_chars_max:
            text = text[: self.line_chars_max] + "…"
        return text

    def _admit(self, lines: list[str], now_s: float) -> list[str]:
        admitted: list[str] = []
        if lines:
            self.last_line = lines[-1]
        if now_s - self._window_start_s >= self.window_s:
            if self._dropped_in_window:
                admitted.append(f"({self._dropped_in_window} stderr lines not logged)")
            self._window_start_s = now_s
            self._logged_in_window = self._dropped_in_window = 0
        for line in lines:
            if self._logged_in_window < self.lines_per_window_max:
                admitted.append(line)
                self._logged_in_window += 1
            else:
                self._dropped_in_window += 1
        return admitted


@dataclass
class ChildServer:
    """A running MCP server: its initialized session, its PID, and whether it has ended."""

    session: ClientSession
    pid: int | None
    exited: asyncio.Event
    stderr: StderrLines = field(default_factory=StderrLines)
    stderr_ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_stderr_end(self, *, timeout_s: float = STDERR_DRAIN_WAIT_S) -> None:
        """After the child ended, give its last stderr lines a moment to arrive."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stderr_ended.wait(), timeout_s)

    def exit_cause(self) -> str:
        last = self.stderr.last_line
        return f"its last stderr line: {last}" if last else "it wrote nothing to stderr"


@contextlib.asynccontextmanager
async def open_child_server(command: Sequence[str], /) -> AsyncIterator[ChildServer]:
    """Start ``command`` (the program and its arguments), initialize an MCP session with it,
    and stop it (by its process group) on exit. The child inherits this process's
    environment and working directory, as a program started from the shell does."""
    if not command:
        raise ChildServerError("no MCP server command given (put it after --)")
    parameters = StdioServerParameters(
        command=command[0], args=list(command[1:]), env=dict(os.environ)
    )
    read_fd, write_fd = os.pipe()
    errlog = os.fdopen(write_fd, "w")
    children_before = _children()
    child: ChildServer | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        async with _single_errors(), contextlib.AsyncExitStack() as stack:
            try:
                streams = await stack.enter_async_context(stdio_client(parameters, errlog=errlog))
            except OSError as exc:
                raise ChildServerError(f"cannot start {command[0]!r}: {exc}") from exc
            # The child holds its own copy: closing ours lets its end reach us as EOF.
            errlog.close()
            relay_send, relay_read = anyio.create_memory_object_stream[SessionMessage | Exception](
                0
            )
            session = ClientSession(relay_read, streams[1], client_info=CLIENT_INFO)
            child = ChildServer(session, _only_new(children_before, _children()), asyncio.Event())
            tasks.append(asyncio.create_task(_log_stderr(read_fd, child)))
            tasks.append(asyncio.create_task(_relay(streams[0], relay_send, child.exited)))
            await stack.enter_async_context(session)
            await _initialize(child)
            yield child
    finally:
        errlog.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _kill_if_alive(child.pid if child else None)
        with contextlib.suppress(OSError):
            os.close(read_fd)


@contextlib.asynccontextmanager
async def _single_errors() -> AsyncIterator[None]:
    """The SDK's task groups wrap an error of the body in exception groups; one error
    comes out as itself, so callers catch it by its type."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return leaves


async def _initialize(child: ChildServer) -> None:
    initialize = asyncio.ensure_future(child.session.initialize())
    ended = asyncio.ensure_future(child.exited.wait())
    try:
        await asyncio.wait(
            {initialize, ended}, timeout=INITIALIZE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ended.cancel()
        if not initialize.done():
            initialize.cancel()
    if initialize.done() and not initialize.cancelled() and initialize.exception() is None:
        return
    if child.exited.is_set():
        await child.wait_stderr_end()
        raise ChildServerError(
            f"the MCP server exited before it answered initialize ({child.exit_cause()})",
            pid=child.pid,
            cause=child.stderr.last_line,
        )
    if initialize.done() and not initialize.cancelled():
        error = initialize.exception()
        raise ChildServerError(f"the MCP server's initialize failed: {error}", pid=child.pid)
    raise ChildServerError(
        f"the MCP server did not answer initialize within {INITIALIZE_TIMEOUT_S:g} s",
        pid=child.pid,
    )


async def _relay(
    source: AsyncIterable[SessionMessage | Exception],
    sink: MemoryObjectSendStream[SessionMessage | Exception],
    exited: asyncio.Event,
) -> None:
    """Pass the child's messages to the session; their end is the child's end."""
    try:
        async with sink:
            async for item in source:
                await sink.send(item)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
        pass
    finally:
        exited.set()


async def _log_stderr(read_fd: int, child: ChildServer) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STDERR_READ_BYTES * 4)
    pipe = os.fdopen(read_fd, "rb", closefd=False)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while True:
            chunk = await reader.read(STDERR_READ_BYTES)
            for line in child.stderr.feed(chunk, now_s=time.monotonic()):
                log.info("MCP server (pid %s) stderr: %s", child.pid, line)
            if not chunk:
                return
    finally:
        child.stderr_ended.set()
        transport.close()


def _children() -> set[int]:
    """This process's children, from ``/proc`` (empty where there is none)."""
    found: set[int] = set()
    tasks = Path("/proc/self/task")
    with contextlib.suppress(OSError):
        for task in tasks.iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def _only_new(before: set[int], after: set[int]) -> int | None:
    new = after - before
    return new.pop() if len(new) == 1 else None


async def _kill_if_alive(pid: int | None) -> None:
    """The backstop: the SDK stops the child; one that outlived it is killed by its group."""
    if pid is None or not _alive(pid):
        return
    await asyncio.sleep(BACKSTOP_KILL_WAIT_S)
    if _alive(pid):
        log.warning("MCP server (pid %s) outlived its shutdown; killing its process group", pid)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
