"""JetStream streams the exchange relies on, declared in one place.

Notices are not here: the exchange sends them on core NATS and keeps them
in its own outbox until each agent acknowledges them
(exchange/use_cases/notices.py); a stream with a durable consumer per
agent needed 52 KB of nats-server memory per agent (docs/PERFORMANCE.md).

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
    "RESULT_STREAM",
    "ensure_goods_stream",
    "ensure_result_stream",
    "goods_stream_config",
]

# Creating or updating a stream: tries after a timeout, and the pause between.
STREAM_SETUP_TRIES: Final = 5
STREAM_SETUP_PAUSE_S: Final = 0.5
RESULT_STREAM: Final = "AGENTX_RESULTS"
GOODS_STREAM: Final = "AGENTX_GOODS"
# All digital goods' ciphertext together (with the results' 4 GiB, within
# the embedded server's 8 GiB of file store).
GOODS_STREAM_BYTES_MAX: Final = 2 * 1024**3
# All stored results together. A full stream refuses new uploads (discard
# new) rather than drop results already delivered.
RESULT_STREAM_BYTES_MAX: Final = 4 * 1024**3
# One stored chunk: its raw bytes and its headers (the message id).
RESULT_CHUNK_MESSAGE_BYTES_MAX: Final = protocol_limits.RESULT_CHUNK_BYTES_MAX + 1024
# Retries of one chunk's upload within this window are stored once.
RESULT_DEDUPLICATION_WINDOW_S: Final = 120


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
