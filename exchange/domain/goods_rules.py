"""Digital goods (pure): items, their versions, licences and what a licence covers.

A provider publishes versions 1, 2, ... of an item (its id is a hash of the
provider and the item's slug). A buyer pays the item's price once and gets a
licence for the versions ``min_version`` (the current one when it bought)
to ``max_version`` (``min_version + updates_included``; None: every later
version). A licence is unique per (item, buyer), and its id derives from
that pair, so a buyer who asks again gets the same licence, and the ledger
transfers of its payment (whose ids derive from the licence id) happen once.

Invariants of every licence: fee + net == price, and min_version <=
max_version when there is a max.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agent_client import limits as protocol_limits
from agent_client.goods import goods_item_id
from agent_client.protocol import PublishGoods
from exchange.errors import ErrorCode, ExchangeError

__all__ = [
    "GoodsItemRow",
    "GoodsVersionRow",
    "LicenceRow",
    "check_upload_version",
    "goods_item_id",
    "is_repeat_publish",
    "licence_id_for",
    "licence_range",
    "published_item",
    "version_for_download",
    "version_storage_key",
]


@dataclass(frozen=True, slots=True)
class GoodsItemRow:
    item_id: str
    provider_id: str
    slug: str
    title: str
    description: str
    artifact_kind: str
    capability: str
    price_millicredits: int
    updates_included: int | None
    terms: str
    current_version: int
    # The current version's ciphertext (its version row holds the same).
    ciphertext_sha256: str
    size_bytes: int
    created_at_ms: int
    updated_at_ms: int

    def __post_init__(self) -> None:
        assert self.price_millicredits > 0
        assert 1 <= self.current_version <= protocol_limits.GOODS_VERSIONS_MAX
        assert self.updates_included is None or self.updates_included >= 0


@dataclass(frozen=True, slots=True)
class GoodsVersionRow:
    item_id: str
    version: int
    ciphertext_sha256: str
    size_bytes: int
    chunk_count: int
    # The content key sealed to the exchange's key (base64url); never the key itself.
    sealed_key: str
    published_at_ms: int
    # The announcement to holders: the last licence id notified (in id order),
    # and whether every holder the version reaches was notified.
    notified_through: str | None
    notices_done: bool


@dataclass(frozen=True, slots=True)
class LicenceRow:
    licence_id: str
    item_id: str
    buyer_id: str
    provider_id: str
    min_version: int
    max_version: int | None
    price_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    fee_rate_bps: int
    terms: str
    licence_envelope: str
    created_at_ms: int

    def __post_init__(self) -> None:
        assert self.buyer_id != self.provider_id
        assert self.fee_millicredits + self.net_millicredits == self.price_millicredits
        assert self.max_version is None or self.max_version >= self.min_version

    def covers(self, version: int, /) -> bool:
        return self.min_version <= version and (
            self.max_version is None or version <= self.max_version
        )


def licence_id_for(item_id: str, buyer_id: str, /) -> str:
    """One licence per item and buyer: its id is a hash of the pair."""
    return "lic_" + hashlib.sha256(f"{item_id}/{buyer_id}".encode()).hexdigest()[:32]


def version_storage_key(item_id: str, version: int, /) -> str:
    """Where a version's ciphertext chunks are stored (one subject token, no dots)."""
    return f"{item_id}_v{version}"


def licence_range(current_version: int, updates_included: int | None, /) -> tuple[int, int | None]:
    """The versions a licence sold now covers: the current one and the updates included."""
    if updates_included is None:
        return current_version, None
    return current_version, min(
        current_version + updates_included, protocol_limits.GOODS_VERSIONS_MAX
    )


def check_upload_version(item: GoodsItemRow | None, version: int, /) -> None:
    """Only the version after the current one is uploaded: published ones never change."""
    expected = 1 if item is None else item.current_version + 1
    if version != expected:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"the next version of this item is {expected}; published versions never change",
        )


def is_repeat_publish(item: GoodsItemRow | None, request: PublishGoods, /) -> bool:
    """Whether ``request`` publishes the current version again with the same ciphertext
    (a retry whose answer was lost); any other version but the next is refused."""
    if (
        item is not None
        and request.version == item.current_version
        and item.ciphertext_sha256 == request.ciphertext_sha256
    ):
        return True
    check_upload_version(item, request.version)
    return False


def published_item(
    before: GoodsItemRow | None, request: PublishGoods, /, *, provider_id: str, now_ms: int
) -> GoodsItemRow:
    """The item after publishing ``request``'s version: its public facts are the newest."""
    return GoodsItemRow(
        item_id=goods_item_id(provider_id, request.slug),
        provider_id=provider_id,
        slug=request.slug,
        title=request.title,
        description=request.description,
        artifact_kind=request.artifact_kind,
        capability=request.capability,
        price_millicredits=request.price_millicredits,
        updates_included=request.updates_included,
        terms=request.terms,
        current_version=request.version,
        ciphertext_sha256=request.ciphertext_sha256,
        size_bytes=request.size_bytes,
        created_at_ms=now_ms if before is None else before.created_at_ms,
        updated_at_ms=now_ms,
    )


def version_for_download(
    licence: LicenceRow | None, item: GoodsItemRow, requested: int | None, /
) -> int:
    """The version a requester may open: one its licence covers and that is published."""
    if licence is None:
        raise ExchangeError(ErrorCode.FORBIDDEN, "no licence for this item: buy it first")
    newest = item.current_version
    if licence.max_version is not None:
        newest = min(newest, licence.max_version)
    version = newest if requested is None else requested
    if version > item.current_version:
        raise ExchangeError(ErrorCode.NOT_FOUND, f"version {version} is not published")
    if not licence.covers(version):
        covered = f"{licence.min_version} to {licence.max_version or 'every later version'}"
        raise ExchangeError(
            ErrorCode.FORBIDDEN, f"the licence covers versions {covered}, not {version}"
        )
    return version
