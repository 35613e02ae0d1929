"""Digital goods over a real worker: publish an encrypted artifact, sell licences, update.

A provider publishes an artifact (a package, or credentials for a model it
hosts elsewhere); buyers pay through escrow, get an exchange-signed licence
and the artifact sealed to their own key, and later versions reach the
holders whose licence covers them. Each money test checks the balances to
the millicredit (the goods fee is 5 %) and ends with the exchange's
invariants, which include "each licence was paid its price, and each goods
payment has its licence". Hostile input (a wrong price, a tampered chunk, a
key that does not open, strangers, forged licences) is refused with a
stable code and changes nothing; concurrent purchases pay once each; a
purchase counts in the human's daily budget. The plaintext is searched for,
byte for byte, in the database file and in the NATS server's JetStream
store. The demo's scenario runs here too. Both databases.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_client import (
    AgentKeys,
    ExchangeError,
    OperatorClient,
    ProtocolError,
    RequestTimeout,
    SignatureRejected,
)
from agent_client.goods import encrypt_artifact, goods_item_id, upload_ciphertext, verify_licence
from agent_client.protocol import (
    Envelope,
    GetGoodsChunk,
    GoodsLicence,
    PublishGoods,
)
from agent_client.sealing import seal_to
from agent_client.signing import (
    SystemClock,
    b64decode,
    b64encode,
    make_header,
    seal,
    sha256_hex,
)
from exchange.domain.spending_rules import Controls
from exchange.entrypoints.demo_goods import goods_scenario
from exchange.use_cases import digital_goods

FUNDS = 100_000
PRICE = 10_000
FEE_RATE_BPS = 500
PACKAGE = b"#!/usr/bin/env python\nprint('a useful agent, version 1')\n"
SLUG = "useful-agent"


def fee_of(amount: int) -> int:
    return amount * FEE_RATE_BPS // 10_000


async def publish(provider, artifact=PACKAGE, *, slug=SLUG, price=PRICE, **details):
    details.setdefault("title", "A useful agent")
    details.setdefault("capability", "agents.useful")
    return await provider.publish_goods(slug, artifact, price_millicredits=price, **details)


async def balances(*agents):
    return [(await agent.balance()).available_millicredits for agent in agents]


async def test_a_purchase_pays_the_provider_and_opens_the_artifact_with_the_buyers_key(exchange):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    view = await publish(provider, terms="use on one host", updates_included=2)
    assert (view.item_id, view.version) == (goods_item_id(provider.agent_id, SLUG), 1)
    assert view.size_bytes == len(PACKAGE) + 40

    purchase = await buyer.buy_goods(view.item_id, price_millicredits=PRICE)
    assert (purchase.artifact, purchase.version, purchase.charged) == (PACKAGE, 1, True)
    licence = purchase.licence
    assert (licence.buyer_id, licence.provider_id, licence.item_id) == (
        buyer.agent_id,
        provider.agent_id,
        view.item_id,
    )
    assert (licence.min_version, licence.max_version) == (1, 3)
    assert (licence.terms, licence.price_millicredits) == ("use on one host", PRICE)
    assert await balances(buyer, provider) == [FUNDS - PRICE, PRICE - fee_of(PRICE)]
    assert (await buyer.balance()).held_millicredits == 0
    sold = await provider.next_goods_notice(timeout_s=5)
    assert (sold.event, sold.version, sold.goods.item_id) == ("sold", 1, view.item_id)
    assert sold.licence is not None
    assert verify_licence(sold.licence, exchange.worker.exchange_id).buyer_id == buyer.agent_id
    # The provider's analytics count the sale and its net under the item's category.
    (listing,) = (await provider.analytics()).listings
    assert (listing.capability, listing.goods_sold) == ("agents.useful", 1)
    assert listing.revenue_net_millicredits == PRICE - fee_of(PRICE)
    await exchange.check_invariants()


async def test_buying_again_returns_the_same_licence_and_charges_nothing(exchange):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    view = await publish(provider)
    first = await buyer.buy_goods(view.item_id, price_millicredits=PRICE)
    again = await buyer.buy_goods(view.item_id, price_millicredits=PRICE)
    assert (again.charged, again.artifact) == (False, PACKAGE)
    assert again.licence_envelope == first.licence_envelope
    assert await balances(buyer) == [FUNDS - PRICE]
    await exchange.check_invariants()


async def test_the_licence_verifies_offline_and_fails_when_tampered_or_forged(exchange):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    view = await publish(provider)
    purchase = await buyer.buy_goods(view.item_id, price_millicredits=PRICE)
    envelope, exchange_id = purchase.licence_envelope, exchange.worker.exchange_id
    assert verify_licence(envelope, exchange_id) == purchase.licence
    assert buyer.verify_licence(envelope) == purchase.licence

    document = b64decode(envelope.doc)
    cheaper = document.replace(f'"price_millicredits":{PRICE}'.encode(), b'"price_millicredits":1')
    assert cheaper != document
    with pytest.raises(SignatureRejected) as tampered:
        verify_licence(Envelope(doc=b64encode(cheaper), sig=envelope.sig), exchange_id)
    assert tampered.value.code == "bad_signature"
    with pytest.raises(SignatureRejected) as other_exchange:
        verify_licence(envelope, AgentKeys.generate().agent_id)
    assert other_exchange.value.code == "signer_mismatch"

    # A licence made up and signed by someone else (here the buyer itself).
    forger = exchange.keys_of(buyer)
    forged = seal(
        GoodsLicence(
            header=make_header(
                forger,
                audience="*",
                subject=f"agentx.v2.goods.{view.item_id}",
                lifetime_s=3600,
                clock=SystemClock(),
            ),
            licence_id="lic_" + "0" * 32,
            buyer_id=buyer.agent_id,
            provider_id=provider.agent_id,
            item_id=view.item_id,
            min_version=1,
            max_version=None,
            terms="",
            price_millicredits=1,
        ),
        forger,
    )
    with pytest.raises(SignatureRejected) as forged_refused:
        verify_licence(forged, exchange_id)
    assert forged_refused.value.code == "signer_mismatch"
    await exchange.check_invariants()


async def test_a_new_version_reaches_the_holders_it_covers_and_no_one_else(exchange):
    provider = await exchange.agent()
    early, late = await exchange.funded_agent(FUNDS), await exchange.funded_agent(FUNDS)
    view = await publish(provider, updates_included=1)
    await early.buy_goods(view.item_id, price_millicredits=PRICE)  # covers 1..2
    second = await publish(provider, b"version 2", updates_included=1)
    assert second.version == 2
    reached = await early.next_goods_notice(timeout_s=5)
    assert (reached.event, reached.version, reached.goods.version) == ("version", 2, 2)
    assert (await early.download_goods(view.item_id)).artifact == b"version 2"

    bought_late = await late.buy_goods(view.item_id, price_millicredits=PRICE)  # covers 2..3
    assert (bought_late.version, bought_late.artifact) == (2, b"version 2")
    await publish(provider, b"version 3", updates_included=1)
    reached_late = await late.next_goods_notice(timeout_s=5)
    assert (reached_late.event, reached_late.version) == ("version", 3)
    # The early licence ended at version 2: no notice, no key for version 3.
    with pytest.raises(RequestTimeout):
        await early.next_goods_notice(timeout_s=0.5)
    with pytest.raises(ExchangeError) as beyond:
        await early.download_goods(view.item_id, 3)
    assert beyond.value.code == "forbidden"
    assert (await early.download_goods(view.item_id)).artifact == b"version 2"
    assert (await early.download_goods(view.item_id, 1)).artifact == PACKAGE
    with pytest.raises(ExchangeError) as before_range:
        await late.download_goods(view.item_id, 1)
    assert before_range.value.code == "forbidden"
    assert (await late.download_goods(view.item_id)).artifact == b"version 3"
    assert await balances(early, late) == [FUNDS - PRICE, FUNDS - PRICE]
    await exchange.check_invariants()


async def test_holders_past_the_first_batch_are_announced_by_the_sweeper(exchange, monkeypatch):
    monkeypatch.setattr(digital_goods, "_BATCH", 2)
    provider = await exchange.agent()
    view = await publish(provider)
    holders = [await exchange.funded_agent(FUNDS) for _ in range(5)]
    for holder in holders:
        await holder.buy_goods(view.item_id, price_millicredits=PRICE)
    await publish(provider, b"version 2")
    # The publish announced the first batch; the worker's sweeper (every second)
    # sends the others, a batch per sweep, each holder once.
    for holder in holders:
        notice = await holder.next_goods_notice(timeout_s=10)
        assert (notice.event, notice.version) == ("version", 2)
    await asyncio.sleep(1.5)
    for holder in holders:
        with pytest.raises(RequestTimeout):
            await holder.next_goods_notice(timeout_s=0.1)
    assert await exchange.worker.goods.sweep() == 0
    await exchange.check_invariants()


# --- hostile input: a clear code, and nothing changes -----------------------------------


async def refused_code(call):
    with pytest.raises(ExchangeError) as refused:
        await call
    return refused.value.code


async def test_wrong_prices_strangers_and_unknown_items_are_refused_and_change_nothing(exchange):
    provider = await exchange.agent()
    buyer, stranger = await exchange.funded_agent(FUNDS), await exchange.funded_agent(FUNDS)
    poor = await exchange.agent()
    view = await publish(provider)
    item_id = view.item_id
    assert await refused_code(buyer.buy_goods(item_id, price_millicredits=PRICE - 1)) == (
        "price_changed"
    )
    unknown = "g_" + "0" * 32
    assert await refused_code(buyer.buy_goods(unknown, price_millicredits=PRICE)) == "not_found"
    assert await refused_code(buyer.goods(unknown)) == "not_found"
    assert await refused_code(provider.buy_goods(item_id, price_millicredits=PRICE)) == (
        "forbidden"
    )
    assert await refused_code(poor.buy_goods(item_id, price_millicredits=PRICE)) == (
        "insufficient_funds"
    )
    # A stranger gets neither the key nor the ciphertext.
    assert await refused_code(stranger.download_goods(item_id)) == "forbidden"
    chunk_read = stranger._request(
        GetGoodsChunk,
        lambda header: GetGoodsChunk(header=header, item_id=item_id, version=1, index=0),
    )
    assert await refused_code(chunk_read) == "forbidden"
    assert await refused_code(stranger.download_goods(unknown)) == "not_found"

    await buyer.buy_goods(item_id, price_millicredits=PRICE)
    assert await refused_code(buyer.download_goods(item_id, 2)) == "not_found"
    assert await balances(buyer, stranger, poor, provider) == [
        FUNDS - PRICE,
        FUNDS,
        0,
        PRICE - fee_of(PRICE),
    ]
    await exchange.check_invariants()


def publish_request(slug, ciphertext, sealed_key, *, version=1, price=PRICE):
    def build(header):
        return PublishGoods(
            header=header,
            slug=slug,
            title="t",
            artifact_kind="credentials",
            capability="models.hosted",
            price_millicredits=price,
            version=version,
            ciphertext_sha256=sha256_hex(ciphertext),
            size_bytes=len(ciphertext),
            sealed_key=b64encode(sealed_key),
        )

    return build


async def test_a_bad_chunk_or_a_key_that_does_not_open_is_refused_and_nothing_published(
    exchange,
):
    provider = await exchange.agent()
    exchange_id = exchange.worker.exchange_id
    key, ciphertext = encrypt_artifact(b"sk-live-not-yet-published")

    async def attempt(slug, uploaded, claimed, sealed_key):
        await upload_ciphertext(provider._request, slug, 1, uploaded)
        build = publish_request(slug, claimed, sealed_key)
        return await refused_code(provider._request(PublishGoods, build))

    # The chunks stored are not the ciphertext the publish names.
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert await attempt("bad-chunk", tampered, ciphertext, seal_to(exchange_id, key)) == (
        "hash_mismatch"
    )
    # The key is sealed to someone else, so the exchange cannot open it.
    someone = AgentKeys.generate().agent_id
    assert await attempt("not-ours", ciphertext, ciphertext, seal_to(someone, key)) == (
        "content_key_invalid"
    )
    # The key opens, but it is not the key of this ciphertext.
    other_key, _ = encrypt_artifact(b"other")
    assert await attempt("wrong-key", ciphertext, ciphertext, seal_to(exchange_id, other_key)) == (
        "content_key_invalid"
    )
    # Nothing uploaded under this slug at all.
    build = publish_request("never-uploaded", ciphertext, seal_to(exchange_id, key))
    assert await refused_code(provider._request(PublishGoods, build)) == "result_incomplete"
    # Not the next version of an item that does not exist yet.
    build = publish_request("skips", ciphertext, seal_to(exchange_id, key), version=3)
    assert await refused_code(provider._request(PublishGoods, build)) == "invalid_state"
    for slug in ("bad-chunk", "not-ours", "wrong-key", "never-uploaded", "skips"):
        item_id = goods_item_id(provider.agent_id, slug)
        assert await refused_code(provider.goods(item_id)) == "not_found"
    assert (await provider.list_goods(provider_id=provider.agent_id)).items == []
    await exchange.check_invariants()


async def test_oversize_artifacts_and_uploads_over_published_versions_are_refused(exchange):
    provider = await exchange.agent()
    with pytest.raises(ProtocolError) as too_large:
        await publish(provider, b"\0" * (16 * 1024 * 1024))
    assert too_large.value.code == "payload_too_large"
    view = await publish(provider)
    # Version 1 is published: its chunks never change again.
    _, ciphertext = encrypt_artifact(b"replacement")
    with pytest.raises(ExchangeError) as frozen:
        await upload_ciphertext(provider._request, SLUG, 1, ciphertext)
    assert frozen.value.code == "invalid_state"
    buyer = await exchange.funded_agent(FUNDS)
    assert (await buyer.buy_goods(view.item_id, price_millicredits=PRICE)).artifact == PACKAGE
    await exchange.check_invariants()


async def test_a_provider_keeps_at_most_four_unpublished_uploads(exchange):
    provider = await exchange.agent()
    _, ciphertext = encrypt_artifact(b"a draft")
    for number in range(4):
        await upload_ciphertext(provider._request, f"draft-{number}", 1, ciphertext)
    # A fifth unpublished version is refused; nothing of it is stored.
    with pytest.raises(ExchangeError) as full:
        await upload_ciphertext(provider._request, "draft-4", 1, ciphertext)
    assert full.value.code == "invalid_request" and "not published" in full.value.message
    # Uploading to a draft again replaces it; publishing one makes room.
    await upload_ciphertext(provider._request, "draft-0", 1, ciphertext)
    await publish(provider, slug="draft-1")
    await upload_ciphertext(provider._request, "draft-4", 1, ciphertext)
    with pytest.raises(ExchangeError):
        await upload_ciphertext(provider._request, "draft-5", 1, ciphertext)
    await exchange.check_invariants()


# --- money moving at once ----------------------------------------------------------------


async def test_one_buyer_buying_many_times_at_once_pays_once(exchange):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    view = await publish(provider)
    purchases = await asyncio.gather(
        *(buyer.buy_goods(view.item_id, price_millicredits=PRICE) for _ in range(8))
    )
    assert sum(purchase.charged for purchase in purchases) == 1
    assert len({purchase.licence.licence_id for purchase in purchases}) == 1
    assert all(purchase.artifact == PACKAGE for purchase in purchases)
    assert await balances(buyer, provider) == [FUNDS - PRICE, PRICE - fee_of(PRICE)]
    await exchange.check_invariants()


async def test_many_buyers_at_once_each_pay_once(exchange):
    provider = await exchange.agent()
    view = await publish(provider)
    buyers = [await exchange.funded_agent(FUNDS) for _ in range(10)]
    purchases = await asyncio.gather(
        *(buyer.buy_goods(view.item_id, price_millicredits=PRICE) for buyer in buyers)
    )
    assert all(purchase.charged and purchase.artifact == PACKAGE for purchase in purchases)
    assert len({purchase.licence.licence_id for purchase in purchases}) == 10
    assert await balances(*buyers) == [FUNDS - PRICE] * 10
    assert await balances(provider) == [10 * (PRICE - fee_of(PRICE))]
    await exchange.check_invariants()


# --- credentials are never stored in clear ------------------------------------------------

SECRET = b"sk-live-0123456789abcdef-THE-PROVIDERS-MODEL-CREDENTIALS"


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found.extend(f"{path}: {needle!r}" for needle in needles if needle in data)
    return found


async def test_credentials_appear_nowhere_in_the_database_or_the_object_store(
    exchange, nats_server, database_url
):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    view = await publish(
        provider, SECRET, slug="hosted-model", artifact_kind="credentials", title="Model access"
    )
    purchase = await buyer.buy_goods(view.item_id, price_millicredits=PRICE)
    assert purchase.artifact == SECRET
    await publish(
        provider,
        SECRET + b"-rotated",
        slug="hosted-model",
        artifact_kind="credentials",
        title="Model access",
    )
    assert (await buyer.download_goods(view.item_id)).artifact == SECRET + b"-rotated"
    needles = [SECRET, b64encode(SECRET).encode(), SECRET.hex().encode()]

    # The object store, read through the exchange's own port...
    store = exchange.worker.context.goods
    for version in (1, 2):
        chunk = await store.get_chunk(digital_goods.version_storage_key(view.item_id, version), 0)
        assert chunk is not None and SECRET not in chunk
    # ... and every file of the NATS server's JetStream store, byte for byte.
    assert files_holding(Path(nats_server.data_dir), needles) == []
    if database_url.startswith("sqlite"):
        await exchange.worker.engine.dispose()  # flush the WAL's pages into the file
        database_path = Path(database_url.split("///", 1)[1])
        assert files_holding(database_path.parent, needles) == []
    await exchange.check_invariants()


async def test_the_demo_scenario_tells_a_true_story(exchange):
    operator = OperatorClient(await exchange.agent(exchange.operator_keys))
    told: list[str] = []
    assert await goods_scenario(exchange.nats_url, operator, told.append), told
    assert any("verified offline" in line for line in told)
    await exchange.check_invariants()


class DailyLimit:
    """The human's controls, as the portal's store would give them: one agent, a daily limit."""

    def __init__(self, agent_id: str, limit_millicredits: int) -> None:
        self.controls = Controls(
            agent_id=agent_id,
            daily_limit_millicredits=limit_millicredits,
            contract_limit_millicredits=None,
            approval_threshold_millicredits=None,
            frozen_by_owner=False,
            frozen_by_operator=False,
            operator_freeze_reason="",
        )

    async def locked_controls(self, connection, agent_ids):
        controlled = self.controls.agent_id in agent_ids
        return {self.controls.agent_id: self.controls} if controlled else {}

    async def approval_statuses(self, connection, requests):
        return {}

    async def ask_approvals(self, connection, requests):
        raise AssertionError("no approval threshold is set")

    async def record_refusals(self, connection, refused):
        pass  # the portal keeps them for its notices; this test reads the answer


async def test_a_purchase_counts_in_the_humans_daily_budget(exchange):
    provider = await exchange.agent()
    buyer = await exchange.funded_agent(FUNDS)
    first = await publish(provider, slug="first")
    second = await publish(provider, slug="second")
    exchange.worker.context.spending = DailyLimit(buyer.agent_id, PRICE + PRICE // 2)
    await buyer.buy_goods(first.item_id, price_millicredits=PRICE)
    assert await refused_code(buyer.buy_goods(second.item_id, price_millicredits=PRICE)) == (
        "budget_exceeded"
    )
    assert await balances(buyer, provider) == [FUNDS - PRICE, PRICE - fee_of(PRICE)]
    await exchange.check_invariants()
