"""Notices sent on core NATS, straight into each recipient's inbox.

Nothing is stored by NATS and nothing is acknowledged to the sender: the
exchange's outbox keeps each notice until its recipient acknowledges it
(exchange/use_cases/notices.py), so a notice lost on the way is sent again.
A publish only fails here when this connection cannot take it (closed, or
its buffer full while reconnecting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import nats.errors
from nats.aio.client import Client

from agent_client import subjects

__all__ = ["CoreNoticePublisher", "NoticeToSend"]


class NoticeToSend(Protocol):
    """A sealed notice, as the outbox keeps it."""

    @property
    def recipient(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class CoreNoticePublisher:
    """Publishes each notice to ``_INBOX.<recipient>.notices`` (the broker lets only
    exchange workers publish there, and only the recipient receive)."""

    def __init__(self, client: Client, /) -> None:
        self._client = client

    async def publish_notices(
        self, notices: Sequence[NoticeToSend], /
    ) -> list[BaseException | None]:
        failures: list[BaseException | None] = []
        for notice in notices:
            try:
                await self._client.publish(
                    subjects.notice_deliver_subject(notice.recipient), notice.payload
                )
            except (nats.errors.Error, OSError) as exc:
                failures.append(exc)
            else:
                failures.append(None)
        return failures
