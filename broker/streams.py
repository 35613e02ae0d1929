"""JetStream streams the exchange relies on, declared in one place.

``AGENTX_NOTICES`` keeps every notice the exchange sends to an agent
(``agentx.v2.agent.<id>.notify``) until the agent acknowledges it through its
durable consumer, so an agent that was offline receives what it missed when
it reconnects. Publishes carry the notice id as ``Nats-Msg-Id``, so the
outbox relay re-publishing a notice never stores it twice.

``AGENTX_RESULTS`` holds results too large to deliver inline, one message per
chunk on ``agentx.v2.results.<contract id>.<index>``. Only the exchange
publishes or reads there (agents have no JetStream permission at all); the
stream keeps the last message of each subject, so an upload before delivery
replaces a chunk, and it refuses deletes and purges, so nobody can remove a
delivered result before it ages out with its contract record.

``AGENTX_GOODS`` holds digital goods' ciphertext the same way
(``agentx.v2.goods_store.<item>_v<version>.<index>``), with no age limit:
a licence outlives any contract record.
"""

from __future__ import annotations

import asyncio
from typing import Final

import nats.errors
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
from nats.js.errors import BadRequestError, NotFoundError

from agent_client import limits as protocol_limits
from agent_client import subjects
from broker.errors import StreamSetupFailed

__all__ = [
    "GOODS_STREAM",
    "GOODS_STREAM_BYTES_MAX",
    "NOTICE_CONSUMERS_MAX",
    "NOTICE_QUEUE_GROUP_PREFIX",
    "NOTICE_STREAM",
    "RESULT_STREAM",
    "ensure_goods_stream",
    "ensure_notice_consumer",
    "ensure_notice_stream",
    "ensure_result_stream",
    "goods_stream_config",
    "notice_consumer_config",
    "notice_consumer_name",
]

NOTICE_STREAM: Final = "AGENTX_NOTICES"
# Creating or updating a stream: tries after a timeout, and the pause between.
STREAM_SETUP_TRIES: Final = 5
STREAM_SETUP_PAUSE_S: Final = 0.5
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
RESULT_STREAM: Final = "AGENTX_RESULTS"
GOODS_STREAM: Final = "AGENTX_GOODS"
# All digital goods' ciphertext together (with the notices' 1 GiB and the
# results' 4 GiB, within the embedded server's 8 GiB of file store).
GOODS_STREAM_BYTES_MAX: Final = 2 * 1024**3
# All stored results together. A full stream refuses new uploads (discard
# new) rather than drop results already delivered.
RESULT_STREAM_BYTES_MAX: Final = 4 * 1024**3
# One stored chunk: its raw bytes and its headers (the message id).
RESULT_CHUNK_MESSAGE_BYTES_MAX: Final = protocol_limits.RESULT_CHUNK_BYTES_MAX + 1024
# Retries of one chunk's upload within this window are stored once.
RESULT_DEDUPLICATION_WINDOW_S: Final = 120
# An agent's notice consumer: unacknowledged notices come again after this.
NOTICE_ACK_WAIT_S: Final = 30.0
# Notices in flight to one agent, unacknowledged, at most.
NOTICES_UNACKNOWLEDGED_MAX: Final = 256
# A consumer nobody listened to for this long is removed by the server (the
# stream keeps notices as long, so nothing is lost that it still holds).
NOTICE_CONSUMER_INACTIVE_S: Final = float(protocol_limits.NOTICE_LIFETIME_MAX_S)
# Processes of one agent share its notices as one queue group.
NOTICE_QUEUE_GROUP_PREFIX: Final = "notices_"


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
    await _ensure_stream(js, notice_stream_config(replicas=replicas))


def result_stream_config(*, replicas: int = 1) -> StreamConfig:
    return _chunk_stream_config(
        RESULT_STREAM,
        "Agent Exchange results too large to send inline, one message per chunk",
        subjects.RESULT_CHUNKS,
        max_bytes=RESULT_STREAM_BYTES_MAX,
        # As long as the contract record that names the result is evidence.
        max_age_s=protocol_limits.CONTRACT_RECORD_LIFETIME_S,
        replicas=replicas,
    )


def goods_stream_config(*, replicas: int = 1) -> StreamConfig:
    """Digital goods' ciphertext: kept as long as a licence may be used (no age
    limit), in a pool of its own so that goods never crowd out results."""
    return _chunk_stream_config(
        GOODS_STREAM,
        "Agent Exchange digital goods' ciphertext, one message per chunk",
        subjects.GOODS_CHUNKS,
        max_bytes=GOODS_STREAM_BYTES_MAX,
        max_age_s=None,
        replicas=replicas,
    )


def _chunk_stream_config(
    name: str,
    description: str,
    chunk_subjects: str,
    *,
    max_bytes: int,
    max_age_s: int | None,
    replicas: int,
) -> StreamConfig:
    """A stream of chunks, one per subject (the last upload replaces one), that
    refuses new uploads when full and refuses deletes and purges."""
    return StreamConfig(
        name=name,
        description=description,
        num_replicas=replicas,
        subjects=[chunk_subjects],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=max_age_s,
        max_bytes=max_bytes,
        max_msgs_per_subject=1,
        max_msg_size=RESULT_CHUNK_MESSAGE_BYTES_MAX,
        discard=DiscardPolicy.NEW,
        duplicate_window=RESULT_DEDUPLICATION_WINDOW_S,
        deny_delete=True,
        deny_purge=True,
    )


async def ensure_goods_stream(js: JetStreamContext, /, *, replicas: int = 1) -> None:
    """Create the goods stream, or bring an existing one to this config (idempotent)."""
    await _ensure_stream(js, goods_stream_config(replicas=replicas))


async def ensure_result_stream(js: JetStreamContext, /, *, replicas: int = 1) -> None:
    """Create the result stream, or bring an existing one to this config (idempotent).

    The server refuses to turn ``deny_delete`` or ``deny_purge`` off again,
    which this config never asks.
    """
    await _ensure_stream(js, result_stream_config(replicas=replicas))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, /) -> None:
    """Create or update one stream; any refusal is StreamSetupFailed, which is fatal
    to a starting worker (it must not serve without the streams its steps need)."""
    assert config.name is not None
    try:
        await _create_or_update(js, config)
    except (nats.errors.Error, TimeoutError) as exc:
        raise StreamSetupFailed(
            stream=config.name,
            replicas=config.num_replicas or 1,
            reason=str(exc) or type(exc).__name__,
        ) from exc


async def _create_or_update(js: JetStreamContext, config: StreamConfig, /) -> None:
    assert config.name is not None
    for attempt in range(1, STREAM_SETUP_TRIES + 1):
        try:
            existing = await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                return
            except BadRequestError:
                continue  # another worker created it in between: look again
        if _already_configured(existing.config, config):
            return  # nothing to change (workers starting together all get here)
        try:
            await js.update_stream(config)
            return
        except TimeoutError:
            # A stream another worker just created may have no leader yet to
            # answer an update: give it a moment, within a bound.
            if attempt == STREAM_SETUP_TRIES:
                raise
            await asyncio.sleep(STREAM_SETUP_PAUSE_S * attempt)


def _already_configured(existing: StreamConfig, wanted: StreamConfig, /) -> bool:
    """Whether every setting this module chooses already holds on the server."""
    chosen = {
        name: value for name, value in wanted.as_dict().items() if name not in ("description",)
    }
    current = existing.as_dict()
    return all(current.get(name) == value for name, value in chosen.items())


def notice_consumer_name(agent_id: str, /) -> str:
    """The durable consumer through which ``agent_id`` receives its notices."""
    return f"{NOTICE_QUEUE_GROUP_PREFIX}{agent_id}"


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
