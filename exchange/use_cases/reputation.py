"""Reputation use cases: a buyer rates a released contract; anyone reads a reputation."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client.protocol import (
    GetReputation,
    RateContract,
    RatingReply,
    ReputationReply,
)
from exchange.adapters import contract_store, listing_store
from exchange.domain.listings import listing_id_for
from exchange.domain.reputation_math import ReputationCounts, check_can_rate, reputation_view
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.contract_lifecycle import ContractUseCases
from exchange.use_cases.exchange_context import ExchangeContext
from exchange.use_cases.listing_views import rating_entry
from wallet.database import read_transaction

__all__ = ["ReputationUseCases"]


class ReputationUseCases:
    def __init__(self, context: ExchangeContext, contracts: ContractUseCases, /) -> None:
        self._context = context
        self._contracts = contracts

    async def rate(self, buyer_id: str, request: RateContract, /) -> RatingReply:
        """Record the buyer's stars for a released contract, once."""
        # Reading the contract through the lifecycle applies a timer that is
        # due (a buyer silent past the review window has released it), so a
        # contract counts as settled the moment its window passes.
        await self._contracts.get_contract(buyer_id, request.contract_id)
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], dict[str, Any]]:
            contract = await contract_store.get_contract(connection, request.contract_id)
            if contract is None:
                raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
            check_can_rate(contract, buyer_id)
            if await listing_store.get_rating(connection, contract.contract_id) is not None:
                raise ExchangeError(
                    ErrorCode.ALREADY_RATED,
                    "this contract is already rated",
                    contract_id=contract.contract_id,
                )
            rating = {
                "contract_id": contract.contract_id,
                "provider_id": contract.provider_id,
                "capability": contract.capability,
                "buyer_id": buyer_id,
                "stars": request.stars,
                "comment": request.comment,
                "rated_at_ms": now_ms,
            }
            await listing_store.insert_rating(connection, rating)
            await listing_store.add_rating_to_listing(
                connection,
                provider_id=contract.provider_id,
                capability=contract.capability,
                stars=request.stars,
            )
            listing = await listing_store.get_listing(
                connection, listing_id_for(contract.provider_id, contract.capability)
            )
            assert listing is not None, "a contract's listing is never deleted"
            return rating, listing

        rating, listing = await self._context.run(work)
        reputation = reputation_view(
            listing["provider_id"], listing["capability"], ReputationCounts.from_row(listing)
        )
        return RatingReply(rating=rating_entry(rating), reputation=reputation)

    async def reputation(self, request: GetReputation, /) -> ReputationReply:
        """A provider's reputation overall and per capability, with recent ratings."""
        provider_id = request.provider_id
        async with read_transaction(self._context.engine) as connection:
            rows = await listing_store.provider_listings(
                connection,
                provider_id,
                capability=request.capability,
                limit=protocol_limits.REPUTATION_CAPABILITIES_MAX,
            )
            if not rows:
                raise ExchangeError(ErrorCode.NOT_FOUND, "this provider has no such listing")
            totals = await listing_store.provider_reputation_totals(connection, provider_id)
            totals["unique_buyer_count"] = await listing_store.provider_unique_buyer_count(
                connection, provider_id, capability=None
            )
            ratings = await listing_store.recent_ratings(
                connection,
                provider_id,
                capability=request.capability,
                limit=request.ratings_limit,
            )
        return ReputationReply(
            provider_id=provider_id,
            overall=reputation_view(provider_id, None, ReputationCounts.from_row(totals)),
            capabilities=[
                reputation_view(provider_id, row["capability"], ReputationCounts.from_row(row))
                for row in rows
            ],
            ratings=[rating_entry(row) for row in ratings],
        )
