"""An agent's acknowledgements of the notices it handled, sent in batches.

The exchange keeps each notice until its recipient acknowledges it
(``notices.ack``, PROTOCOL.md section 1.7.2) and sends it again while it is
not. One signed request per notice would cost the agent and the exchange
a signature each; instead the ids are collected and sent once a second, or
as soon as ``NOTICE_ACK_BATCH`` are waiting. A batch that fails stays for
the next try: nothing is lost but time, and the exchange's re-sends are
dropped as duplicates by the receiver. (Acknowledgements are not retried
within a try: the next batch is the retry.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agent_client import limits
from agent_client.errors import AgentClientError, AgentClosed

__all__ = ["NoticeAcks"]

log = logging.getLogger(__name__)

# Sends one notices.ack with these ids; raises if the exchange did not take it.
SendAcks = Callable[[list[str]], Awaitable[None]]


class NoticeAcks:
    """Ids of handled notices, waiting to be acknowledged in one request."""

    def __init__(
        self,
        send: SendAcks,
        /,
        *,
        interval_s: float = limits.NOTICE_ACK_INTERVAL_S,
        batch: int = limits.NOTICE_ACK_BATCH,
        pending_max: int = limits.NOTICE_ACKS_PENDING_MAX,
    ) -> None:
        assert 0 < batch <= limits.NOTICE_ACK_IDS_MAX <= pending_max
        self._send = send
        self._interval_s = interval_s
        self._batch = batch
        self._pending_max = pending_max
        # Insertion-ordered and without repeats (a notice delivered twice is
        # acknowledged twice by the handler path).
        self._pending: dict[str, None] = {}
        self._due = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, notice_id: str, /) -> None:
        """``notice_id`` was handled: acknowledge it with the next batch."""
        self._pending[notice_id] = None
        while len(self._pending) > self._pending_max:
            # The exchange sends the oldest again; it is then acknowledged again.
            del self._pending[next(iter(self._pending))]
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_batches())
        if len(self._pending) >= self._batch:
            self._due.set()

    async def _send_batches(self) -> None:
        while self._pending and not self._closing:
            if len(self._pending) < self._batch:
                # (Set while the last batch was on its way, counting its ids too.)
                self._due.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval_s):
                        await self._due.wait()
            await self.flush()
        self._sender = None

    async def flush(self) -> None:
        """Send what is waiting now, at most NOTICE_ACK_IDS_MAX ids a request; keep
        what failed. Ids added meanwhile wait for the next batch: sending them
        at once would, under a steady stream, make a request per round trip."""
        waiting = list(self._pending)
        for start in range(0, len(waiting), limits.NOTICE_ACK_IDS_MAX):
            ids = waiting[start : start + limits.NOTICE_ACK_IDS_MAX]
            try:
                await self._send(ids)
            except AgentClosed:
                return  # closing: what is left comes again to the next process
            except AgentClientError as exc:
                self._note_failure(exc)
                return
            for notice_id in ids:
                self._pending.pop(notice_id, None)
            self._note_failure(None)

    def _note_failure(self, failure: AgentClientError | None) -> None:
        """One line when acknowledging starts failing, one when it works again."""
        if failure is not None and not self._failing:
            self._failing = True
            log.warning("notices not acknowledged (%s); trying again", failure)
        elif failure is None and self._failing:
            self._failing = False
            log.info("notices are acknowledged again")

    async def close(self) -> None:
        """Send what is waiting (best effort) and stop: a batch on its way is let
        finish, not cut off (it would be sent again)."""
        self._closing = True
        self._due.set()
        if self._sender is not None:
            await self._sender
        await self.flush()
