"""Digital goods: upload and publish versions, sell licences, hand out sealed keys.

The rules are pure (:mod:`exchange.domain.goods_rules`); the encryption
scheme is the client's (:mod:`agent_client.goods`). The exchange never
holds an artifact in clear: it stores the provider's ciphertext (in the
result store, under :func:`version_storage_key`) and the content key sealed
to its own key. It opens that key in memory only, to check at publish time
that it opens the ciphertext, and to seal it again to a holder's id.

A purchase is one transaction: the buyer's spending controls, the ledger
charge (held and paid out at once through escrow, with the goods fee), the
licence row and the provider's ``sold`` notice. The licence id derives from
(item, buyer), so a repeated or concurrent purchase finds the licence and
charges nothing: the row is unique, and the ledger transfers' ids derive
from the licence id.

A new version is announced to the holders it reaches through the outbox, in
batches of ``GOODS_HOLDERS_NOTIFIED_PER_BATCH``: the first commits with the
publish, the sweeper sends the others (``sweep``).
"""

from __future__ import annotations

import asyncio
import binascii
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import ProtocolError
from agent_client.goods import decrypt_artifact, open_content_key
from agent_client.protocol import (
    BuyGoods,
    DownloadGoods,
    Envelope,
    GetGoodsChunk,
    GoodsAccessReply,
    GoodsChunkReply,
    GoodsChunkStoredReply,
    GoodsEvent,
    GoodsLicence,
    GoodsListReply,
    GoodsNotice,
    GoodsView,
    Header,
    ListGoods,
    PublishGoods,
    ResultRef,
    UploadGoods,
)
from agent_client.sealing import seal_to
from agent_client.signing import (
    VerifiedDocument,
    b64decode,
    b64encode,
    make_header,
    seal,
    sha256_hex,
)
from escrow import HoldOrder, InsufficientFunds, SettleOrder, settlement_for
from exchange.adapters import goods_store
from exchange.domain.goods_rules import (
    GoodsItemRow,
    GoodsVersionRow,
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
from exchange.domain.spending_rules import SpendingRefusal
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import APPROVAL_LIFETIME_MAX_S, SWEEP_BATCH_MAX
from exchange.use_cases.contract_views import envelope_from_text, envelope_text
from exchange.use_cases.exchange_accounts import agent_account_id, ensure_agent_accounts
from exchange.use_cases.exchange_context import ExchangeContext, OutboxNotice, ResultStore
from exchange.use_cases.results import (
    check_result_layout,
    chunk_bytes_at,
    chunk_count_for,
    read_stored_result,
)
from exchange.use_cases.spending import purchase_refusal, purchase_request
from wallet import FeeKind
from wallet.database import read_transaction

__all__ = ["GoodsUseCases", "goods_view"]

_BATCH = protocol_limits.GOODS_HOLDERS_NOTIFIED_PER_BATCH


@dataclass(frozen=True, slots=True)
class _Sale:
    """What a purchase's transaction decided: the licence, the key sealed to the buyer
    for the version it opens, and the notices to publish after commit."""

    licence: LicenceRow
    version: GoodsVersionRow
    sealed_key: str
    charged: bool
    notices: list[OutboxNotice]


def goods_view(item: GoodsItemRow, /) -> GoodsView:
    return GoodsView(
        item_id=item.item_id,
        provider_id=item.provider_id,
        slug=item.slug,
        title=item.title,
        description=item.description,
        artifact_kind=item.artifact_kind,
        capability=item.capability,
        price_millicredits=item.price_millicredits,
        version=item.current_version,
        ciphertext_sha256=item.ciphertext_sha256,
        size_bytes=item.size_bytes,
        terms=item.terms,
        updates_included=item.updates_included,
        created_at_ms=item.created_at_ms,
        updated_at_ms=item.updated_at_ms,
    )


class GoodsUseCases:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    # --- the provider: upload, publish --------------------------------------------

    async def upload(self, provider_id: str, request: UploadGoods, /) -> GoodsChunkStoredReply:
        """Store one chunk of the ciphertext of an item's next version (replacing it)."""
        store = self._store()
        chunk = _uploaded_chunk(request)
        item_id = goods_item_id(provider_id, request.slug)

        storage_key = version_storage_key(item_id, request.version)
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> None:
            item = await goods_store.get_item(connection, item_id)
            check_upload_version(item, request.version)
            if item is None:
                await _check_room_for_item(connection, provider_id)
            await _check_room_for_draft(connection, storage_key, provider_id, now_ms)

        await self._context.run(work)
        await store.put_chunk(storage_key, request.index, chunk)
        return GoodsChunkStoredReply(
            item_id=item_id,
            version=request.version,
            index=request.index,
            chunk_sha256=sha256_hex(chunk),
        )

    async def publish(self, provider_id: str, request: PublishGoods, /) -> GoodsView:
        """Check the uploaded ciphertext and its sealed key, then make it the current version
        and announce it to the holders it reaches."""
        item_id = goods_item_id(provider_id, request.slug)
        async with read_transaction(self._context.engine) as connection:
            before = await goods_store.get_item(connection, item_id)
        if is_repeat_publish(before, request):
            assert before is not None
            return goods_view(before)
        await self._check_ciphertext(item_id, request)
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> tuple[GoodsItemRow, list[OutboxNotice]]:
            return await self._publish_in(connection, provider_id, request, now_ms)

        item, notices = await self._context.run(work)
        await self._context.publish_soon(notices)
        return goods_view(item)

    async def _publish_in(
        self, connection: AsyncConnection, provider_id: str, request: PublishGoods, now_ms: int
    ) -> tuple[GoodsItemRow, list[OutboxNotice]]:
        item_id = goods_item_id(provider_id, request.slug)
        before = await goods_store.get_item(connection, item_id, lock="update")
        if is_repeat_publish(before, request):
            assert before is not None
            return before, []  # a racing retry of this publish committed first
        after = published_item(before, request, provider_id=provider_id, now_ms=now_ms)
        if before is None:
            await _check_room_for_item(connection, provider_id)
            await goods_store.insert_item(connection, after)
        else:
            await goods_store.update_item(connection, before, after)
        await goods_store.remove_draft(connection, version_storage_key(item_id, request.version))
        await goods_store.insert_version(
            connection,
            GoodsVersionRow(
                item_id=item_id,
                version=request.version,
                ciphertext_sha256=request.ciphertext_sha256,
                size_bytes=request.size_bytes,
                chunk_count=chunk_count_for(request.size_bytes),
                sealed_key=request.sealed_key,
                published_at_ms=now_ms,
                notified_through=None,
                notices_done=False,
            ),
        )
        return after, await self._announce_in(connection, after, request.version, after_id=None)

    async def _check_ciphertext(self, item_id: str, request: PublishGoods) -> None:
        """The stored chunks are the ciphertext named, and the sealed key opens it.

        At most STORED_RESULT_DELIVERIES_MAX versions are read at once (each up to
        16 MiB in memory); the key and the plaintext never leave this function.
        """
        reference = ResultRef(
            size_bytes=request.size_bytes, chunk_count=chunk_count_for(request.size_bytes)
        )
        key = version_storage_key(item_id, request.version)
        async with self._context.stored_result_deliveries:
            ciphertext = await read_stored_result(self._store(), key, reference)
            await asyncio.to_thread(_check_sealed_version, self._context, ciphertext, request)

    # --- the buyer: buy, download, read chunks ------------------------------------

    async def buy(self, buyer_id: str, purchase: VerifiedDocument[BuyGoods], /) -> GoodsAccessReply:
        """Charge the price and issue a licence, atomically; a holder gets its licence back."""
        request = purchase.document
        licence_id = licence_id_for(request.item_id, buyer_id)

        async def work(connection: AsyncConnection) -> SpendingRefusal | _Sale:
            item = await goods_store.get_item(connection, request.item_id, lock="share")
            if item is None:
                raise ExchangeError(ErrorCode.NOT_FOUND, "no such item")
            if item.provider_id == buyer_id:
                raise ExchangeError(ErrorCode.FORBIDDEN, "a provider cannot buy its own item")
            existing = await goods_store.get_licence(connection, item.item_id, buyer_id)
            if existing is not None:
                return await self._access_in(connection, item, existing, None, charged=False)
            if item.price_millicredits != request.price_millicredits:
                raise ExchangeError(
                    ErrorCode.PRICE_CHANGED,
                    f"the item costs {item.price_millicredits} millicredits, "
                    f"not {request.price_millicredits}",
                )
            return await self._sell_in(connection, item, buyer_id)

        outcome = await self._context.run(work)
        if isinstance(outcome, SpendingRefusal):
            # Committed: an approval the refusal asks for is recorded.
            raise outcome.error(contract_id=licence_id)
        await self._context.publish_soon(outcome.notices)
        return _access_reply(outcome)

    async def _sell_in(
        self, connection: AsyncConnection, item: GoodsItemRow, buyer_id: str
    ) -> SpendingRefusal | _Sale:
        context = self._context
        now_ms = context.clock.now_ms()
        licence_id = licence_id_for(item.item_id, buyer_id)
        refusal = await self._spending_refusal(connection, item, buyer_id, licence_id, now_ms)
        if refusal is not None:
            return refusal
        # The key is sealed to the buyer before any money moves: a version whose key
        # the exchange cannot open is refused, not sold.
        version = await _version_row(connection, item.item_id, item.current_version)
        sealed_key = self._sealed_for(buyer_id, version)
        fee_rate_bps = context.fees.rate_bps(FeeKind.GOODS, capability=item.capability)
        settlement = settlement_for(
            item.price_millicredits,
            provider_share_millicredits=item.price_millicredits,
            fee_rate_bps=fee_rate_bps,
        )
        await ensure_agent_accounts(
            context.ledger, [buyer_id, item.provider_id], connection=connection
        )
        buyer_account, provider_account = (
            agent_account_id(buyer_id),
            agent_account_id(item.provider_id),
        )
        try:
            await context.escrow.charge(
                HoldOrder(licence_id, buyer_account, item.price_millicredits),
                SettleOrder(licence_id, buyer_account, provider_account, settlement),
                connection=connection,
            )
        except InsufficientFunds as exc:
            raise ExchangeError(
                ErrorCode.INSUFFICIENT_FUNDS, "the available balance is below the price"
            ) from exc
        min_version, max_version = licence_range(item.current_version, item.updates_included)
        licence = LicenceRow(
            licence_id=licence_id,
            item_id=item.item_id,
            buyer_id=buyer_id,
            provider_id=item.provider_id,
            min_version=min_version,
            max_version=max_version,
            price_millicredits=item.price_millicredits,
            fee_millicredits=settlement.fee_millicredits,
            net_millicredits=settlement.net_millicredits,
            fee_rate_bps=fee_rate_bps,
            terms=item.terms,
            licence_envelope="",
            created_at_ms=now_ms,
        )
        licence = _with_envelope(licence, self._signed_licence(licence))
        await goods_store.insert_licence(connection, licence)
        sold = self._notice(item.provider_id, "sold", min_version, item, licence.licence_envelope)
        await context.stage(connection, [sold])
        return _Sale(licence, version, sealed_key, True, [sold])

    async def _spending_refusal(
        self,
        connection: AsyncConnection,
        item: GoodsItemRow,
        buyer_id: str,
        licence_id: str,
        now_ms: int,
    ) -> SpendingRefusal | None:
        """The human's controls on this purchase, if the buyer has any; an approval it
        asks for lasts a day (a goods price has no offer that expires)."""
        context = self._context
        spending = purchase_request(
            licence_id,
            buyer_id=buyer_id,
            provider_id=item.provider_id,
            capability=item.capability,
            price_millicredits=item.price_millicredits,
            now_ms=now_ms,
            offer_expires_at_ms=now_ms + APPROVAL_LIFETIME_MAX_S * 1000,
        )
        return await purchase_refusal(
            spending, store=context.spending, ledger=context.ledger, connection=connection
        )

    async def download(self, agent_id: str, request: DownloadGoods, /) -> GoodsAccessReply:
        """A holder's key to a version its licence covers, sealed to its id."""
        async with read_transaction(self._context.engine) as connection:
            item = await _item(connection, request.item_id)
            licence = await goods_store.get_licence(connection, item.item_id, agent_id)
            sale = await self._access_in(connection, item, licence, request.version, charged=False)
        return _access_reply(sale)

    async def _access_in(
        self,
        connection: AsyncConnection,
        item: GoodsItemRow,
        licence: LicenceRow | None,
        requested: int | None,
        *,
        charged: bool,
    ) -> _Sale:
        version_number = version_for_download(licence, item, requested)
        assert licence is not None
        version = await _version_row(connection, item.item_id, version_number)
        return _Sale(licence, version, self._sealed_for(licence.buyer_id, version), charged, [])

    async def chunk(self, agent_id: str, request: GetGoodsChunk, /) -> GoodsChunkReply:
        """One chunk of a version's ciphertext, for a holder it covers or the provider."""
        async with read_transaction(self._context.engine) as connection:
            item = await _item(connection, request.item_id)
            if agent_id != item.provider_id:
                licence = await goods_store.get_licence(connection, item.item_id, agent_id)
                version_for_download(licence, item, request.version)
            elif request.version > item.current_version:
                raise ExchangeError(
                    ErrorCode.NOT_FOUND, f"version {request.version} is not published"
                )
            version = await _version_row(connection, item.item_id, request.version)
        if request.index >= version.chunk_count:
            raise ExchangeError(
                ErrorCode.INVALID_REQUEST,
                f"version {version.version} has {version.chunk_count} chunks",
            )
        key = version_storage_key(item.item_id, version.version)
        chunk = await self._store().get_chunk(key, request.index)
        if chunk is None:
            raise ExchangeError(
                ErrorCode.NOT_FOUND, "the ciphertext is gone from the store (it ages out)"
            )
        return GoodsChunkReply(
            item_id=item.item_id,
            version=version.version,
            index=request.index,
            chunk_count=version.chunk_count,
            size_bytes=version.size_bytes,
            chunk=b64encode(chunk),
        )

    # --- anyone: read -------------------------------------------------------------

    async def get(self, item_id: str, /) -> GoodsView:
        async with read_transaction(self._context.engine) as connection:
            return goods_view(await _item(connection, item_id))

    async def list_items(self, request: ListGoods, /) -> GoodsListReply:
        async with read_transaction(self._context.engine) as connection:
            items, has_more = await goods_store.list_items(
                connection,
                provider_id=request.provider_id,
                limit=request.limit,
                offset=request.offset,
            )
        return GoodsListReply(items=[goods_view(item) for item in items], has_more=has_more)

    # --- announcing new versions ----------------------------------------------------

    async def sweep(self) -> int:
        """Announce versions to the holders their publish did not reach (a batch each)."""

        async def due(connection: AsyncConnection) -> list[tuple[str, int]]:
            return await goods_store.versions_announcing(connection, limit=SWEEP_BATCH_MAX)

        async def announce(due_version: tuple[str, int]) -> int:
            return await self._announce_next(*due_version)

        return await self._context.apply_due(due, announce)

    async def _announce_next(self, item_id: str, version_number: int) -> int:
        async def work(connection: AsyncConnection) -> list[OutboxNotice]:
            version = await goods_store.get_version(
                connection, item_id, version_number, for_update=True
            )
            item = await goods_store.get_item(connection, item_id)
            if version is None or item is None or version.notices_done:
                return []  # another worker announced it first
            return await self._announce_in(
                connection, item, version_number, after_id=version.notified_through
            )

        notices = await self._context.run(work)
        await self._context.publish_soon(notices)
        return len(notices)

    async def _announce_in(
        self, connection: AsyncConnection, item: GoodsItemRow, version: int, *, after_id: str | None
    ) -> list[OutboxNotice]:
        """Stage the next batch of a version's notices, and remember how far it got."""
        holders = await goods_store.holders_reached(
            connection, item.item_id, version, after=after_id, limit=_BATCH
        )
        through = holders[-1][0] if holders else after_id
        await goods_store.mark_notified(
            connection, item.item_id, version, through=through, done=len(holders) < _BATCH
        )
        notices = [
            self._notice(buyer_id, "version", version, item, None) for _, buyer_id in holders
        ]
        await self._context.stage(connection, notices)
        return notices

    # --- plumbing -------------------------------------------------------------------

    def _notice(
        self,
        agent_id: str,
        event: GoodsEvent,
        version: int,
        item: GoodsItemRow,
        licence: str | None,
    ) -> OutboxNotice:
        view = goods_view(item)
        envelope = None if licence is None else envelope_from_text(licence)

        def build(header: Header) -> GoodsNotice:
            return GoodsNotice(
                header=header, event=event, version=version, goods=view, licence=envelope
            )

        return self._context.notice(agent_id, build)

    def _signed_licence(self, licence: LicenceRow) -> Envelope:
        context = self._context
        document = GoodsLicence(
            header=make_header(
                context.keys,
                audience="*",
                subject=subjects.goods(licence.item_id),
                lifetime_s=protocol_limits.GOODS_LICENCE_LIFETIME_S,
                clock=context.clock,
            ),
            licence_id=licence.licence_id,
            buyer_id=licence.buyer_id,
            provider_id=licence.provider_id,
            item_id=licence.item_id,
            min_version=licence.min_version,
            max_version=licence.max_version,
            terms=licence.terms,
            price_millicredits=licence.price_millicredits,
        )
        return seal(document, context.keys)

    def _sealed_for(self, agent_id: str, version: GoodsVersionRow) -> str:
        """The version's content key, opened in memory and sealed again to ``agent_id``."""
        try:
            content_key = open_content_key(self._context.keys, version.sealed_key)
        except ProtocolError as exc:
            # Sealed to a key this exchange no longer holds (a key rotation).
            raise ExchangeError(
                ErrorCode.CONTENT_KEY_INVALID,
                "this version's key was sealed to a retired exchange key: "
                "its provider must publish a new version",
            ) from exc
        return b64encode(seal_to(agent_id, content_key))

    def _store(self) -> ResultStore:
        if self._context.goods is None:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "this worker has no goods store")
        return self._context.goods


def _check_sealed_version(
    context: ExchangeContext, ciphertext: bytes, request: PublishGoods
) -> None:
    """Run in a thread: hash the ciphertext, open the sealed key, decrypt, forget."""
    if sha256_hex(ciphertext) != request.ciphertext_sha256:
        raise ExchangeError(
            ErrorCode.HASH_MISMATCH, "the uploaded chunks do not hash to ciphertext_sha256"
        )
    try:
        content_key = open_content_key(context.keys, request.sealed_key)
        decrypt_artifact(content_key, ciphertext)
    except ProtocolError as exc:
        raise ExchangeError(ErrorCode.CONTENT_KEY_INVALID, exc.message) from exc


def _uploaded_chunk(request: UploadGoods, /) -> bytes:
    """The raw bytes of an upload's chunk, checked against the layout it claims."""
    check_result_layout(request.size_bytes, request.chunk_count)
    if request.index >= request.chunk_count:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST, f"chunk {request.index} of {request.chunk_count} chunks"
        )
    try:
        chunk = b64decode(request.chunk)
    except (binascii.Error, ValueError) as exc:
        raise ExchangeError(ErrorCode.INVALID_REQUEST, "the chunk is not base64url") from exc
    expected_bytes = chunk_bytes_at(request.size_bytes, request.index)
    if len(chunk) != expected_bytes:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"chunk {request.index} of {request.size_bytes} B holds {expected_bytes} B, "
            f"not {len(chunk)}",
        )
    return chunk


async def _check_room_for_draft(
    connection: AsyncConnection, storage_key: str, provider_id: str, now_ms: int
) -> None:
    drafts = await goods_store.add_draft(connection, storage_key, provider_id, now_ms=now_ms)
    if drafts is not None and drafts >= protocol_limits.GOODS_DRAFTS_PER_PROVIDER_MAX:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"{drafts} versions are uploaded and not published: publish them "
            "(or upload to one of them again) before starting another",
        )


async def _check_room_for_item(connection: AsyncConnection, provider_id: str) -> None:
    items = await goods_store.count_provider_items(connection, provider_id)
    if items >= protocol_limits.GOODS_ITEMS_PER_PROVIDER_MAX:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"a provider sells at most {protocol_limits.GOODS_ITEMS_PER_PROVIDER_MAX} items",
        )


async def _item(connection: AsyncConnection, item_id: str) -> GoodsItemRow:
    item = await goods_store.get_item(connection, item_id)
    if item is None:
        raise ExchangeError(ErrorCode.NOT_FOUND, "no such item")
    return item


async def _version_row(connection: AsyncConnection, item_id: str, version: int) -> GoodsVersionRow:
    row = await goods_store.get_version(connection, item_id, version)
    assert row is not None, "every version up to the item's current one is published"
    return row


def _with_envelope(licence: LicenceRow, envelope: Envelope) -> LicenceRow:
    return replace(licence, licence_envelope=envelope_text(envelope))


def _access_reply(sale: _Sale) -> GoodsAccessReply:
    version = sale.version
    return GoodsAccessReply(
        licence=envelope_from_text(sale.licence.licence_envelope),
        item_id=version.item_id,
        version=version.version,
        sealed_key=sale.sealed_key,
        ciphertext_sha256=version.ciphertext_sha256,
        size_bytes=version.size_bytes,
        chunk_count=version.chunk_count,
        charged=sale.charged,
    )
