"""Mapping the catalog's stored rows to the wire's reply structs (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_client.protocol import Listing, ListingRevision, RatingEntry
from exchange.domain.listings import tags_from_text
from exchange.domain.reputation_math import ReputationCounts, reputation_view

__all__ = ["listing_view", "rating_entry", "revision_view"]


def listing_view(row: Mapping[str, Any], /) -> Listing:
    return Listing(
        listing_id=row["listing_id"],
        provider_id=row["provider_id"],
        capability=row["capability"],
        description=row["description"],
        price_millicredits=row["price_millicredits"],
        input_schema=json.loads(row["input_schema"]),
        output_schema=json.loads(row["output_schema"]),
        version=row["version"],
        status=row["status"],
        updated_at_ms=row["updated_at_ms"],
        tags=tags_from_text(row["tags"]),
        revision=row["revision"],
        created_at_ms=row["created_at_ms"],
        reputation=reputation_view(
            row["provider_id"], row["capability"], ReputationCounts.from_row(row)
        ),
    )


def revision_view(row: Mapping[str, Any], /) -> ListingRevision:
    return ListingRevision(
        revision=row["revision"],
        description=row["description"],
        price_millicredits=row["price_millicredits"],
        input_schema=json.loads(row["input_schema"]),
        output_schema=json.loads(row["output_schema"]),
        version=row["version"],
        tags=tags_from_text(row["tags"]),
        status=row["status"],
        changed_at_ms=row["changed_at_ms"],
    )


def rating_entry(row: Mapping[str, Any], /) -> RatingEntry:
    return RatingEntry(
        contract_id=row["contract_id"],
        provider_id=row["provider_id"],
        buyer_id=row["buyer_id"],
        capability=row["capability"],
        stars=row["stars"],
        comment=row["comment"],
        rated_at_ms=row["rated_at_ms"],
    )
