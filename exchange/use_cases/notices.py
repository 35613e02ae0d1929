"""Notices reach an agent through a consumer the exchange keeps for it (notices.subscribe).

Agents have no JetStream permission: the exchange creates (or keeps) each
agent's durable consumer, which pushes the agent's notices into its own
inbox prefix, and tells the agent where to listen.
"""

from __future__ import annotations

from typing import Protocol

from agent_client import subjects
from agent_client.protocol import NoticesReply
from broker.streams import notice_consumer_name

__all__ = ["NoticeConsumers", "NoticeSubscriptions"]


class NoticeConsumers(Protocol):
    """Where agents' notice consumers are kept (JetStream in production)."""

    async def ensure_consumer(self, agent_id: str, /) -> None: ...


class NoticeSubscriptions:
    def __init__(self, consumers: NoticeConsumers, /) -> None:
        self._consumers = consumers

    async def subscribe(self, agent_id: str, /) -> NoticesReply:
        """Create (or keep) the agent's consumer; where it delivers, and in which group."""
        await self._consumers.ensure_consumer(agent_id)
        return NoticesReply(
            deliver_subject=subjects.notice_deliver_subject(agent_id),
            queue_group=notice_consumer_name(agent_id),
        )
