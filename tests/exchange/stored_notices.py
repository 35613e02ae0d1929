"""The notices JetStream stores, read back: what the parties are sent.

A notice leaves the exchange's outbox once JetStream has stored it, so tests
that check who is told what read the notice stream itself, after waiting
until the outbox is empty (every committed notice published and flushed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client.protocol import Document
from agent_client.signing import open_envelope
from broker.streams import NOTICE_STREAM
from exchange.adapters.exchange_tables import outbox

OUTBOX_EMPTY_TIMEOUT_S = 10.0
POLL_S = 0.05
# Every notice a test reads comes from a handful of deals.
STORED_NOTICES_MAX = 1_000
ALL_NOTICES = "agentx.v2.agent.*.notify"


async def outbox_ids(engine: AsyncEngine) -> list[str]:
    """The notices still in the outbox (JetStream has not stored them yet)."""
    async with engine.connect() as connection:
        return list(await connection.scalars(sa.select(outbox.c.notice_id)))


async def wait_outbox_empty(
    engine: AsyncEngine,
    *,
    flush: Callable[[], Awaitable[int]] | None = None,
    timeout_s: float = OUTBOX_EMPTY_TIMEOUT_S,
) -> None:
    """Until every notice committed so far is stored by JetStream and out of the outbox.

    ``flush``: the worker's ``flush_published``, called each round, for a test
    that does not wait for the worker's own loop to run it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if flush is not None:
            await flush()
        left = len(await outbox_ids(engine))
        if left == 0:
            return
        assert loop.time() < deadline, f"{left} notices never left the outbox"
        await asyncio.sleep(POLL_S)


async def stored_notices(client: Client, subjects: str = ALL_NOTICES) -> list[tuple[str, Document]]:
    """(subject, notice) of every notice the stream holds on ``subjects``, oldest first.

    ``client`` must be allowed JetStream's API (the exchange's own key is).
    """
    js = client.jetstream()
    found: list[tuple[str, Document]] = []
    sequence = 1
    for _ in range(STORED_NOTICES_MAX):
        try:
            message = await js.get_msg(NOTICE_STREAM, seq=sequence, subject=subjects, next=True)
        except NotFoundError:
            return found
        assert message.data is not None and message.subject is not None and message.seq
        found.append((message.subject, open_envelope(message.data).document))
        sequence = message.seq + 1
    raise AssertionError(f"more than {STORED_NOTICES_MAX} notices on {subjects}")
