"""The notices' former design, kept only as the baseline benchmarks compare with.

Until 2026-12-07 every notice was stored in the JetStream stream
``AGENTX_NOTICES`` and pushed to each agent by a durable consumer the
exchange kept for it. ``bench/protocol_floor.py --compare`` still measures
that design beside today's (live notices on core NATS, kept in the
exchange's outbox until acknowledged), and ``bench/notice_consumers.py``
measures what its per-agent consumers cost nats-server. Nothing in the
product uses this module.
"""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from agent_client import limits as protocol_limits
from agent_client import subjects

NOTICE_STREAM: Final = "AGENTX_NOTICES"
NOTICE_STREAM_BYTES_MAX: Final = 1024**3
NOTICES_PER_AGENT_MAX: Final = 100_000
# One durable consumer per agent; nats-server 2.15 caps a stream at 1,000
# consumers unless it sets its own limit.
NOTICE_CONSUMERS_MAX: Final = 100_000
# Duplicate publishes of one notice within this window are stored once.
NOTICE_DEDUPLICATION_WINDOW_S: Final = 120
# An agent's notice consumer: unacknowledged notices come again after this.
NOTICE_ACK_WAIT_S: Final = 30.0
# Notices in flight to one agent, unacknowledged, at most.
NOTICES_UNACKNOWLEDGED_MAX: Final = 256
# A consumer nobody listened to for this long is removed by the server.
NOTICE_CONSUMER_INACTIVE_S: Final = float(protocol_limits.NOTICE_LIFETIME_MAX_S)


def notice_stream_config(*, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=NOTICE_STREAM,
        num_replicas=replicas,
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
        # Nobody removes a notice by hand; old ones age out (max_age).
        deny_delete=True,
        deny_purge=True,
    )


async def ensure_notice_stream(js: JetStreamContext, /, *, replicas: int = 1) -> None:
    """Create the notice stream, or bring an existing one to this config (idempotent)."""
    await js.add_stream(notice_stream_config(replicas=replicas))


def notice_consumer_name(agent_id: str, /) -> str:
    """The durable consumer through which ``agent_id`` receives its notices."""
    return subjects.notice_queue_group(agent_id)


def notice_consumer_config(agent_id: str, /) -> ConsumerConfig:
    """A push consumer delivering into the agent's own inbox prefix.

    Only the exchange creates it (agents have no JetStream API permission);
    the agent queue-subscribes to the deliver subject with the deliver group
    and acknowledges each notice, which is all its permissions allow.
    """
    name = notice_consumer_name(agent_id)
    return ConsumerConfig(
        durable_name=name,
        filter_subject=subjects.notifications(agent_id),
        deliver_subject=subjects.notice_deliver_subject(agent_id),
        deliver_group=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=NOTICE_ACK_WAIT_S,
        max_ack_pending=NOTICES_UNACKNOWLEDGED_MAX,
        inactive_threshold=NOTICE_CONSUMER_INACTIVE_S,
    )


async def ensure_notice_consumer(js: JetStreamContext, agent_id: str, /) -> None:
    """Create the agent's notice consumer, or bring it to this config (idempotent).

    The server updates a consumer in place (keeping its position in the
    stream) when only updatable fields differ. One it cannot update, made
    by an older client, is replaced: the new one delivers every notice still
    in the stream for the agent again (deliver policy ``all``), which
    receivers tolerate (they deduplicate by nonce within a run, and a
    repeated delivery is answered idempotently).
    """
    config = notice_consumer_config(agent_id)
    try:
        await js.add_consumer(NOTICE_STREAM, config)
    except BadRequestError:
        await js.delete_consumer(NOTICE_STREAM, notice_consumer_name(agent_id))
        await js.add_consumer(NOTICE_STREAM, config)
