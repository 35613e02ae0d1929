"""The pure rules of digital goods: which versions a licence covers, which version a
publish or an upload may name, and the ids that make a purchase happen once.

Plain function calls on hand-made rows, no database; the money and the
wire are tested over a real worker in test_goods.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent_client import AgentKeys
from agent_client.protocol import Header, PublishGoods
from exchange.domain.goods_rules import (
    GoodsItemRow,
    LicenceRow,
    check_upload_version,
    goods_item_id,
    is_repeat_publish,
    licence_id_for,
    licence_range,
    published_item,
    version_for_download,
    version_storage_key,
)
from exchange.errors import ExchangeError

PROVIDER = AgentKeys.generate().agent_id
BUYER = AgentKeys.generate().agent_id
SHA = "a" * 64


def item(current_version: int = 1, *, sha: str = SHA) -> GoodsItemRow:
    return GoodsItemRow(
        item_id=goods_item_id(PROVIDER, "thing"),
        provider_id=PROVIDER,
        slug="thing",
        title="Thing",
        description="",
        artifact_kind="package",
        capability="agents.thing",
        price_millicredits=1_000,
        updates_included=None,
        terms="",
        current_version=current_version,
        ciphertext_sha256=sha,
        size_bytes=100,
        created_at_ms=1,
        updated_at_ms=1,
    )


def licence(min_version: int, max_version: int | None) -> LicenceRow:
    return LicenceRow(
        licence_id=licence_id_for(item().item_id, BUYER),
        item_id=item().item_id,
        buyer_id=BUYER,
        provider_id=PROVIDER,
        min_version=min_version,
        max_version=max_version,
        price_millicredits=1_000,
        fee_millicredits=50,
        net_millicredits=950,
        fee_rate_bps=500,
        terms="",
        licence_envelope="{}",
        created_at_ms=1,
    )


def publish(version: int, *, sha: str = SHA) -> PublishGoods:
    header = Header(
        issuer=PROVIDER,
        audience="exchange",
        subject="s",
        issued_at_ms=1,
        expires_at_ms=2,
        nonce="n" * 16,
    )
    return PublishGoods(
        header=header,
        slug="thing",
        title="Thing v2",
        artifact_kind="package",
        capability="agents.thing",
        price_millicredits=2_000,
        version=version,
        ciphertext_sha256=sha,
        size_bytes=100,
        sealed_key="k" * 107,
    )


def test_ids_are_stable_per_pair_and_distinct_across_pairs():
    assert goods_item_id(PROVIDER, "thing") == goods_item_id(PROVIDER, "thing")
    assert goods_item_id(PROVIDER, "thing") != goods_item_id(BUYER, "thing")
    assert goods_item_id(PROVIDER, "thing").startswith("g_")
    assert (
        licence_id_for("g_1", BUYER) == licence_id_for("g_1", BUYER) != licence_id_for("g_2", BUYER)
    )
    assert licence_id_for("g_1", BUYER).startswith("lic_")
    # One NATS subject token: no dots.
    assert "." not in version_storage_key(goods_item_id(PROVIDER, "thing"), 12)


def test_a_licence_covers_the_current_version_and_the_updates_included():
    assert licence_range(3, None) == (3, None)
    assert licence_range(3, 0) == (3, 3)
    assert licence_range(3, 2) == (3, 5)
    assert licence_range(999, 5) == (999, 1000)  # never past the last version there can be
    bounded = licence(2, 4)
    assert [bounded.covers(version) for version in range(1, 6)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert licence(2, None).covers(1_000) and not licence(2, None).covers(1)


def test_a_download_opens_the_newest_covered_version_unless_one_is_named():
    assert version_for_download(licence(1, 2), item(5), None) == 2
    assert version_for_download(licence(1, None), item(5), None) == 5
    assert version_for_download(licence(1, None), item(5), 3) == 3
    with pytest.raises(ExchangeError) as beyond:
        version_for_download(licence(1, 2), item(5), 3)
    assert beyond.value.code == "forbidden"
    with pytest.raises(ExchangeError) as unpublished:
        version_for_download(licence(1, None), item(5), 6)
    assert unpublished.value.code == "not_found"
    with pytest.raises(ExchangeError) as stranger:
        version_for_download(None, item(5), None)
    assert stranger.value.code == "forbidden"


def test_only_the_next_version_is_uploaded_or_published_and_a_retry_is_answered():
    check_upload_version(None, 1)
    check_upload_version(item(4), 5)
    for before, version in ((None, 2), (item(4), 4), (item(4), 6)):
        with pytest.raises(ExchangeError) as refused:
            check_upload_version(before, version)
        assert refused.value.code == "invalid_state"
    # The current version again, same ciphertext: a retry, answered as it is.
    assert is_repeat_publish(item(4), publish(4)) is True
    with pytest.raises(ExchangeError):
        is_repeat_publish(item(4), publish(4, sha="b" * 64))
    assert is_repeat_publish(item(4), publish(5)) is False
    assert is_repeat_publish(None, publish(1)) is False


def test_a_publish_makes_the_newest_facts_public_and_keeps_the_creation_time():
    after = published_item(item(1), publish(2, sha="c" * 64), provider_id=PROVIDER, now_ms=99)
    assert (after.current_version, after.title, after.price_millicredits) == (2, "Thing v2", 2_000)
    assert (after.ciphertext_sha256, after.created_at_ms, after.updated_at_ms) == (
        "c" * 64,
        1,
        99,
    )
    created = published_item(None, publish(1), provider_id=PROVIDER, now_ms=7)
    assert (created.item_id, created.created_at_ms) == (item().item_id, 7)


def test_a_licence_row_refuses_a_price_that_does_not_split():
    with pytest.raises(AssertionError):
        dataclasses.replace(licence(1, None), net_millicredits=1)
