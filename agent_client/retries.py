"""Retrying a request whose answer was lost (docs/PROTOCOL.md, sections 6.3 and 6.4).

A timeout says nothing about whether the exchange acted: the request may
have been lost on its way, or its answer on the way back (a worker died, a
NATS node went down mid-request). Giving up then can turn finished work
into a refund (a lost ``contract.deliver``) or leave a contract waiting for
days (a lost ``contract.accept``). So the client asks again, with a newly
signed request of the same content (the same envelope twice is
``replayed``), for the requests whose repeat is safe: reads, and writes the
exchange applies once whatever the number of tries (keyed by the contract,
the quote, a receipt, or an id the request carries).

Asked again after: no answer in time, ``unavailable``, ``internal``,
``rate_limited`` (after a longer pause), and an answer that fails the reply
checks (SignatureRejected comes only from those: not the exchange's word,
and the real one may have been lost). Never after a refusal: the same
request is refused the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from msgspec import Struct

from agent_client.errors import RequestTimeout, RetryableError, SignatureRejected
from agent_client.protocol import (
    AcceptDelivery,
    Advertise,
    BuyGoods,
    CancelContract,
    CancelSubscription,
    ClaimUsage,
    CloseMetered,
    Deliver,
    DownloadGoods,
    ErrorCode,
    GetAnalytics,
    GetBalance,
    GetContract,
    GetEvidence,
    GetFees,
    GetGoods,
    GetGoodsChunk,
    GetListingHistory,
    GetMetered,
    GetMeteredEvidence,
    GetReputation,
    GetResult,
    GetSubscription,
    GetSubscriptionToken,
    ListGoods,
    ListPlans,
    ListSubscriptions,
    ListTransactions,
    Mint,
    OpenContract,
    PublishGoods,
    PublishPlan,
    RejectDelivery,
    SearchCatalog,
    Subscribe,
    SubscribeNotices,
    Transfer,
    UploadGoods,
    UploadResult,
)

__all__ = ["REQUEST_TRIES_DEFAULT", "RETRIED_REQUESTS", "with_retries"]

log = logging.getLogger(__name__)

_R = TypeVar("_R")

# Tries of one request in all (the first and its repeats), and the pauses between.
REQUEST_TRIES_DEFAULT: Final = 3
_PAUSE_FIRST_S: Final = 0.2
_PAUSE_MAX_S: Final = 5.0
# After rate_limited: slow down rather than spend the few answers left (6.5).
_RATE_LIMITED_PAUSE_S: Final = 1.0

# Requests whose repeat, newly signed, is safe (section 6.4): it answers what
# the first try would have, or says "already done" in a way the caller reads
# back (contract.open: quote_already_accepted; contract.accept and
# contract.reject: invalid_state). Mint, transfer, subscription.start and
# goods.buy carry their own idempotency key, so their repeat moves no money.
RETRIED_REQUESTS: frozenset[type[Struct]] = frozenset(
    {
        SearchCatalog,
        GetContract,
        GetEvidence,
        GetBalance,
        ListTransactions,
        GetResult,
        GetListingHistory,
        GetReputation,
        GetMetered,
        GetMeteredEvidence,
        GetFees,
        GetAnalytics,
        ListPlans,
        GetSubscription,
        ListSubscriptions,
        GetSubscriptionToken,
        GetGoods,
        ListGoods,
        DownloadGoods,
        GetGoodsChunk,
        Advertise,
        OpenContract,
        Deliver,
        UploadResult,
        AcceptDelivery,
        RejectDelivery,
        CancelContract,
        SubscribeNotices,
        Mint,
        Transfer,
        ClaimUsage,
        CloseMetered,
        PublishPlan,
        Subscribe,
        CancelSubscription,
        UploadGoods,
        PublishGoods,
        BuyGoods,
    }
)


async def with_retries(
    send: Callable[[], Awaitable[_R]], /, *, what: str, tries: int = REQUEST_TRIES_DEFAULT
) -> _R:
    """``send()`` (which signs anew each time), asked again after a lost answer."""
    assert tries >= 1
    pause_s = _PAUSE_FIRST_S
    for attempt in range(1, tries + 1):
        try:
            return await send()
        except (RequestTimeout, RetryableError, SignatureRejected) as exc:
            if attempt == tries:
                raise
            wait_s = _RATE_LIMITED_PAUSE_S if _is_rate_limited(exc) else pause_s
            log.info(
                "%s: %s; asking again in %.1f s (try %d of %d)",
                what,
                exc,
                wait_s,
                attempt + 1,
                tries,
            )
            await asyncio.sleep(wait_s)
            pause_s = min(pause_s * 2, _PAUSE_MAX_S)
    raise AssertionError("unreachable: the last try returns or raises")


def _is_rate_limited(error: Exception) -> bool:
    return isinstance(error, RetryableError) and error.code == ErrorCode.RATE_LIMITED
