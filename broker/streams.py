"""JetStream streams the exchange relies on, declared in one place.

``AGENTX_NOTICES`` keeps every notice the exchange sends to an agent
(``agentx.v1.agent.<id>.notify``) until the agent acknowledges it through its
durable consumer, so an agent that was offline receives what it missed when
it reconnects. The ``agentx-results`` object store holds results too large
to deliver inline. Publishes carry the notice id as ``Nats-Msg-Id``, so the
outbox relay re-publishing a notice never stores it twice.
"""

from __future__ import annotations

import contextlib
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

from agent_client import limits as protocol_limits
from agent_client import subjects

__all__ = [
    "NOTICE_CONSUMERS_MAX",
    "NOTICE_STREAM",
    "ensure_notice_stream",
    "ensure_result_store",
]

NOTICE_STREAM: Final = "AGENTX_NOTICES"
NOTICE_STREAM_BYTES_MAX: Final = 1024**3
NOTICES_PER_AGENT_MAX: Final = 100_000
# Every agent has a durable consumer on the stream (removed after 8 days
# without a connection), so this bounds the agents active within 8 days.
# nats-server 2.15 caps a stream at 1,000 consumers unless it sets its own
# limit (it treats 0 and -1 as "use the default"), which an exchange with
# more than 1,000 agents would hit.
NOTICE_CONSUMERS_MAX: Final = 100_000
# Duplicate publishes of one notice within this window are stored once.
NOTICE_DEDUPLICATION_WINDOW_S: Final = 120
RESULT_STORE_BYTES_MAX: Final = 4 * 1024**3


def notice_stream_config() -> StreamConfig:
    return StreamConfig(
        name=NOTICE_STREAM,
        subjects=[subjects.notifications("*")],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=protocol_limits.NOTICE_LIFETIME_MAX_S,
        max_bytes=NOTICE_STREAM_BYTES_MAX,
        max_msgs_per_subject=NOTICES_PER_AGENT_MAX,
        max_msg_size=protocol_limits.MESSAGE_BYTES_MAX,
        discard=DiscardPolicy.OLD,
        duplicate_window=NOTICE_DEDUPLICATION_WINDOW_S,
        max_consumers=NOTICE_CONSUMERS_MAX,
    )


async def ensure_notice_stream(js: JetStreamContext, /) -> None:
    """Create the notice stream, or bring an existing one to this config (idempotent)."""
    config = notice_stream_config()
    try:
        await js.stream_info(NOTICE_STREAM)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            pass  # another worker created it in between; update below
    await js.update_stream(config)


async def ensure_result_store(js: JetStreamContext, /) -> None:
    """Create the object store bucket for large results (idempotent)."""
    try:
        await js.object_store(protocol_limits.RESULT_BUCKET)
    except (NotFoundError, BucketNotFoundError):
        with contextlib.suppress(BadRequestError):
            await js.create_object_store(
                protocol_limits.RESULT_BUCKET,
                config=ObjectStoreConfig(
                    description="Agent Exchange results too large to send inline",
                    # As long as the contract that points to the object is evidence.
                    ttl=protocol_limits.CONTRACT_RECORD_LIFETIME_S,
                    max_bytes=RESULT_STORE_BYTES_MAX,
                    storage=StorageType.FILE,
                ),
            )
