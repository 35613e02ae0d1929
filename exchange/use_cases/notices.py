"""An agent's notices: where they arrive, catching up, acknowledgements, pruning.

The exchange sends each notice on core NATS into its recipient's inbox
(exchange/use_cases/exchange_context.py) and keeps it in the outbox until
the recipient acknowledges it. This replaces a JetStream stream with a
durable consumer per agent, which measured 52 KB of nats-server memory per
agent (52 GB for a million; docs/PERFORMANCE.md): an agent that is offline
now costs only its rows.

* ``notices.subscribe`` (sent at every connect and reconnect, after the
  agent subscribed): the reply names the subject and queue group, and every
  notice of the agent's that is not acknowledged and was last sent before
  the request is sent again, oldest first, a page at a time, in the
  background. What was sent since, the agent's subscription received.
* ``notices.ack``: the acknowledged notices leave the outbox, only the
  signer's own (nobody can drop another agent's notices).
* Pruning: notices past their lifetime leave the outbox (no receiver would
  accept them any more), once a minute, in the relay's pass.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import subjects
from agent_client.protocol import AcknowledgeNotices, NoticesAckedReply, NoticesReply
from exchange.adapters import contract_store
from exchange.limits import (
    NOTICE_CATCH_UP_PAGE,
    NOTICE_CATCH_UPS_MAX,
    NOTICE_LIFETIME_S,
    NOTICES_PER_AGENT_MAX,
    OUTBOX_PRUNE_BATCH_MAX,
    OUTBOX_PRUNE_INTERVAL_S,
)
from exchange.use_cases.exchange_context import ExchangeContext

__all__ = ["NoticeDelivery"]

log = logging.getLogger(__name__)


class NoticeDelivery:
    """Answers notices.subscribe and notices.ack; prunes what expired."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context
        # Agents catching up now, by id: one catch-up per agent at a time.
        self._catching_up: dict[str, asyncio.Task[int]] = {}
        self._pruned_at_ms = 0

    async def subscribe(self, agent_id: str, /) -> NoticesReply:
        """Where the agent's notices arrive; its missed notices are sent again."""
        self._start_catch_up(agent_id)
        return NoticesReply(
            deliver_subject=subjects.notice_deliver_subject(agent_id),
            queue_group=subjects.notice_queue_group(agent_id),
        )

    def _start_catch_up(self, agent_id: str) -> None:
        if agent_id in self._catching_up:
            return  # the one running sends what this one would
        if len(self._catching_up) >= NOTICE_CATCH_UPS_MAX:
            # Busy: the relay sends these once they are due, a little later.
            return
        task = asyncio.create_task(self.catch_up(agent_id))
        self._catching_up[agent_id] = task
        task.add_done_callback(lambda _: self._finished(agent_id))

    def _finished(self, agent_id: str) -> None:
        task = self._catching_up.pop(agent_id)
        if not task.cancelled() and task.exception() is not None:
            log.warning("catching up %s's notices failed: %r", agent_id, task.exception())

    async def catch_up(self, agent_id: str, /) -> int:
        """Send again, oldest first, the agent's notices that it has not acknowledged
        and that were last sent before now; how many.

        A notice sent while the agent was away (or whose acknowledgement is
        still on its way: it then comes twice, which receivers expect) was
        last sent before the agent asked. Each page sent is marked sent, so
        the next page's read skips it; the loop ends at a short page, or
        after NOTICES_PER_AGENT_MAX notices.
        """
        context = self._context
        total = 0
        sent_before_ms = context.clock.now_ms() - 1

        async def page(connection: AsyncConnection) -> list[contract_store.OutboxRow]:
            return await contract_store.unacknowledged_notices(
                connection, agent_id, sent_before_ms=sent_before_ms, limit=NOTICE_CATCH_UP_PAGE
            )

        for _ in range(NOTICES_PER_AGENT_MAX // NOTICE_CATCH_UP_PAGE):
            rows = await context.run(page)
            sent = await context.send_again(rows, lambda _age_ms: context.notice_ack_wait_ms)
            total += sent
            if len(rows) < NOTICE_CATCH_UP_PAGE or sent < len(rows):
                break
        return total

    async def acknowledge(self, agent_id: str, request: AcknowledgeNotices, /) -> NoticesAckedReply:
        """Drop the acknowledged notices that are ``agent_id``'s own."""
        notice_ids = sorted(set(request.notice_ids))

        async def work(connection: AsyncConnection) -> int:
            return await contract_store.delete_acknowledged_notices(
                connection, agent_id, notice_ids
            )

        return NoticesAckedReply(removed=await self._context.run(work))

    async def prune_if_due(self) -> int:
        """Prune, if OUTBOX_PRUNE_INTERVAL_S passed since this worker last did."""
        now_ms = self._context.clock.now_ms()
        if now_ms - self._pruned_at_ms < OUTBOX_PRUNE_INTERVAL_S * 1000:
            return 0
        self._pruned_at_ms = now_ms
        return await self.prune()

    async def prune(self) -> int:
        """Drop one batch of notices past their lifetime; how many."""
        context = self._context
        created_before_ms = context.clock.now_ms() - NOTICE_LIFETIME_S * 1000

        async def work(connection: AsyncConnection) -> int:
            return await contract_store.delete_expired_notices(
                connection, created_before_ms=created_before_ms, limit=OUTBOX_PRUNE_BATCH_MAX
            )

        return await context.run(work)

    async def close(self) -> None:
        """Stop the catch-ups running (the relay sends what they did not)."""
        tasks = list(self._catching_up.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
