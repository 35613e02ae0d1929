"""What the parties are sent: a tap on each agent's notice subject.

Notices travel on core NATS into ``_INBOX.<id>.notices`` and leave the
exchange's outbox once the agent acknowledges them, so tests that check who
is told what listen themselves: a plain (not queue) subscription on the
agent's own connection receives a copy of every notice sent to it, beside
the agent's queue group. Repeats (the relay, a catch-up) count once, by
nonce, in the order of their first arrival.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client import AgentKeys, subjects
from agent_client.protocol import Document
from agent_client.signing import open_envelope
from agent_client.transport import connect_nats, flush_subscriptions
from exchange.adapters.exchange_tables import outbox

QUIET_S = 0.1
SETTLE_TIMEOUT_S = 10.0
POLL_S = 0.05


@dataclass
class NoticeTap:
    """Every notice sent to one agent since the tap started, once each."""

    client: Client
    notices: dict[str, Document] = field(default_factory=dict)
    arrivals: int = 0

    async def _on_message(self, message: Msg) -> None:
        self.arrivals += 1
        document = open_envelope(message.data).document
        self.notices.setdefault(document.header.nonce, document)


async def start_tap(nats_url: str, keys: AgentKeys) -> NoticeTap:
    """Listen to ``keys``' notice subject on a connection of its own (close it after)."""
    client = await connect_nats(nats_url, keys, name="notice-tap")
    tap = NoticeTap(client)
    await client.subscribe(subjects.notice_deliver_subject(keys.agent_id), cb=tap._on_message)
    await flush_subscriptions(client)
    return tap


async def settled(
    taps: list[NoticeTap],
    *,
    busy: Callable[[], bool] = lambda: False,
    timeout_s: float = SETTLE_TIMEOUT_S,
) -> None:
    """Until nothing is being sent (``busy``: the worker's sends in flight) and no
    tap received anything for QUIET_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    before = -1
    while True:
        for tap in taps:
            await tap.client.flush(timeout=5)
        arrived = sum(tap.arrivals for tap in taps)
        if arrived == before and not busy():
            return
        assert loop.time() < deadline, "notices kept coming"
        before = arrived
        await asyncio.sleep(QUIET_S)


async def outbox_ids(engine: AsyncEngine) -> list[str]:
    """The notices still in the outbox (not acknowledged by their recipients)."""
    async with engine.connect() as connection:
        return list(await connection.scalars(sa.select(outbox.c.notice_id)))


async def wait_outbox_empty(engine: AsyncEngine, *, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Until every notice committed so far is acknowledged by its recipient."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        left = len(await outbox_ids(engine))
        if left == 0:
            return
        assert loop.time() < deadline, f"{left} notices were never acknowledged"
        await asyncio.sleep(POLL_S)
