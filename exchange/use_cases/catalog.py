"""Catalog use cases: providers advertise listings, anyone searches them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import (
    Advertise,
    Listing,
    SearchCatalog,
    SearchReply,
    json_encoder,
)
from exchange import repository
from exchange.errors import ErrorCode, ExchangeError
from exchange.ledger_accounts import (
    ensure_agent_accounts,
)
from exchange.limits import SCHEMA_BYTES_MAX
from exchange.use_cases.context import ExchangeContext
from exchange.views import (
    listing_from_row,
)

__all__ = ["CatalogUseCases"]


class CatalogUseCases:
    """Advertise and search listings."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def advertise(self, provider_id: str, request: Advertise, /) -> Listing:
        input_schema = _encoded_schema(request.input_schema, "input_schema")
        output_schema = _encoded_schema(request.output_schema, "output_schema")
        now_ms = self._context.clock.now_ms()
        values = {
            "listing_id": f"{provider_id}/{request.capability}",
            "provider_id": provider_id,
            "capability": request.capability,
            "description": request.description,
            "price_millicredits": request.price_millicredits,
            "input_schema": input_schema,
            "output_schema": output_schema,
            "version": request.version,
            "status": request.status,
            "created_at_ms": now_ms,
            "updated_at_ms": now_ms,
        }

        async def work(connection: AsyncConnection) -> dict[str, Any] | None:
            await ensure_agent_accounts(self._context.ledger, [provider_id], connection=connection)
            await repository.upsert_listing(connection, values)
            return await repository.get_listing(connection, str(values["listing_id"]))

        row = await self._context.run(work)
        assert row is not None
        return listing_from_row(row)

    async def search(self, request: SearchCatalog, /) -> SearchReply:
        query = repository.SearchQuery(
            capability=request.capability,
            text=request.text,
            price_max_millicredits=request.price_max_millicredits,
            limit=request.limit,
            offset=request.offset,
        )

        async def work(connection: AsyncConnection) -> tuple[list[dict[str, Any]], bool]:
            return await repository.search_listings(connection, query)

        rows, has_more = await self._context.run(work)
        listings = [listing_from_row(row) for row in rows]
        return SearchReply(listings=listings, offset=request.offset, has_more=has_more)

    # --- contracts -------------------------------------------------------------


def _encoded_schema(schema: dict[str, Any], name: str) -> str:
    encoded = json_encoder.encode(schema)
    if len(encoded) > SCHEMA_BYTES_MAX:
        raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, f"{name} is over {SCHEMA_BYTES_MAX} B")
    return encoded.decode()
