"""Catalog use cases: providers publish and revise listings, anyone searches them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client import limits as protocol_limits
from agent_client.protocol import (
    Advertise,
    GetListingHistory,
    Listing,
    ListingHistoryReply,
    SearchCatalog,
    SearchReply,
    SetListingStatus,
    json_encoder,
)
from exchange.adapters import contract_store, listing_store
from exchange.domain.listings import (
    changed_fields,
    checked_schema,
    listing_id_for,
    tags_from_text,
    tags_text,
)
from exchange.domain.search_plans import SearchQuery, search_query_for
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.exchange_accounts import ensure_agent_accounts
from exchange.use_cases.exchange_context import ExchangeContext
from exchange.use_cases.listing_views import listing_view, revision_view
from wallet.database import read_transaction

__all__ = ["CatalogUseCases", "search_catalog"]

# A search page must fit in one NATS message with room for the reply's own
# fields; listings carry their schemas (up to 16 KiB each), so a page of
# large listings is cut short and says so with ``has_more``.
SEARCH_REPLY_BYTES_MAX = protocol_limits.REPLY_BODY_BYTES_MAX - 16 * 1024
_LISTING_BYTES_MAX = 2 * protocol_limits.SCHEMA_BYTES_MAX + 8 * protocol_limits.TEXT_LENGTH_MAX
assert _LISTING_BYTES_MAX < SEARCH_REPLY_BYTES_MAX  # one listing always fits


class CatalogUseCases:
    """Advertise, revise and search listings."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def advertise(self, provider_id: str, request: Advertise, /) -> Listing:
        """Create the listing, or revise it if any published field changed."""
        proposed: dict[str, Any] = {
            "description": request.description,
            "price_millicredits": request.price_millicredits,
            "input_schema": checked_schema(request.input_schema, "input_schema"),
            "output_schema": checked_schema(request.output_schema, "output_schema"),
            "version": request.version,
            "tags": tags_text(request.tags),
            "status": request.status,
        }
        listing_id = listing_id_for(provider_id, request.capability)
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> dict[str, Any]:
            await ensure_agent_accounts(self._context.ledger, [provider_id], connection=connection)
            current = await listing_store.get_listing(connection, listing_id, for_update=True)
            if current is None:
                created = {
                    "listing_id": listing_id,
                    "provider_id": provider_id,
                    "capability": request.capability,
                    **proposed,
                    "revision": 1,
                    "created_at_ms": now_ms,
                    "updated_at_ms": now_ms,
                }
                if await listing_store.insert_listing(connection, created):
                    await _record_revision(connection, listing_id, 1, proposed, now_ms)
                    await _replace_tags(connection, listing_id, proposed["tags"])
                    return await _listing(connection, listing_id)
                # A concurrent advertise created it first: revise that one.
                current = await _listing(connection, listing_id, for_update=True)
            return await _revise(connection, current, proposed, now_ms)

        return listing_view(await self._context.run(work))

    async def set_status(self, signer_id: str, request: SetListingStatus, /) -> Listing:
        """Deactivate or reactivate a listing: a new revision if the status changes.

        Providers change their own listings; operators may change anyone's.
        """
        provider_id = request.provider_id or signer_id
        by_operator = provider_id != signer_id
        if by_operator and signer_id not in self._context.operator_ids:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only an operator changes others' listings")
        listing_id = listing_id_for(provider_id, request.capability)
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> dict[str, Any]:
            current = await listing_store.get_listing(connection, listing_id, for_update=True)
            if current is None:
                raise ExchangeError(
                    ErrorCode.NOT_FOUND, f"no listing of that provider for {request.capability}"
                )
            proposed = {**current, "status": request.status}
            if by_operator:
                await contract_store.add_audit_record(
                    connection,
                    {
                        "operator_id": signer_id,
                        "action": f"listing_{request.status}",
                        "subject_id": listing_id,
                        "amount_millicredits": 0,
                        "reason": "",
                        "transfer_id": f"listing:{listing_id}:{now_ms}",
                        "at_ms": now_ms,
                    },
                )
            return await _revise(connection, current, proposed, now_ms)

        return listing_view(await self._context.run(work))

    async def history(self, request: GetListingHistory, /) -> ListingHistoryReply:
        listing_id = listing_id_for(request.provider_id, request.capability)
        async with read_transaction(self._context.engine) as connection:
            rows, has_more = await listing_store.listing_revision_rows(
                connection,
                listing_id,
                limit=request.limit,
                before_revision=request.before_revision,
            )
            if not rows and await listing_store.get_listing(connection, listing_id) is None:
                raise ExchangeError(ErrorCode.NOT_FOUND, "no such listing")
        return ListingHistoryReply(
            listing_id=listing_id,
            revisions=[revision_view(row) for row in rows],
            has_more=has_more,
        )

    async def search(self, request: SearchCatalog, /) -> SearchReply:
        return await search_catalog(self._context.engine, search_query_for(request))


async def search_catalog(engine: AsyncEngine, query: SearchQuery, /) -> SearchReply:
    """Active listings matching ``query``: the agents' search, and the portal's."""
    async with read_transaction(engine) as connection:
        rows, has_more = await listing_store.search_listings(connection, query)
    listings: list[Listing] = []
    reply_bytes = 0
    for row in rows:
        listing = listing_view(row)
        reply_bytes += len(json_encoder.encode(listing))
        if reply_bytes > SEARCH_REPLY_BYTES_MAX:
            has_more = True
            break
        listings.append(listing)
    return SearchReply(listings=listings, offset=query.offset, has_more=has_more)


async def _listing(
    connection: AsyncConnection, listing_id: str, /, *, for_update: bool = False
) -> dict[str, Any]:
    row = await listing_store.get_listing(connection, listing_id, for_update=for_update)
    assert row is not None, listing_id
    return row


async def _revise(
    connection: AsyncConnection,
    current: dict[str, Any],
    proposed: dict[str, Any],
    now_ms: int,
) -> dict[str, Any]:
    """Apply the changed fields as the next revision; the same fields change nothing."""
    changed = changed_fields(current, proposed)
    if not changed:
        return current
    listing_id = current["listing_id"]
    revision = current["revision"] + 1
    changes = {name: proposed[name] for name in changed}
    await listing_store.update_listing(
        connection, listing_id, {**changes, "revision": revision, "updated_at_ms": now_ms}
    )
    await _record_revision(connection, listing_id, revision, proposed, now_ms)
    if "tags" in changes:
        await _replace_tags(connection, listing_id, changes["tags"])
    return await _listing(connection, listing_id)


async def _record_revision(
    connection: AsyncConnection,
    listing_id: str,
    revision: int,
    fields: dict[str, Any],
    now_ms: int,
) -> None:
    await listing_store.add_listing_revision(
        connection,
        {
            "listing_id": listing_id,
            "revision": revision,
            "description": fields["description"],
            "price_millicredits": fields["price_millicredits"],
            "input_schema": fields["input_schema"],
            "output_schema": fields["output_schema"],
            "version": fields["version"],
            "tags": fields["tags"],
            "status": fields["status"],
            "changed_at_ms": now_ms,
        },
    )


async def _replace_tags(connection: AsyncConnection, listing_id: str, tags: str) -> None:
    await listing_store.replace_listing_tags(connection, listing_id, tags_from_text(tags))
