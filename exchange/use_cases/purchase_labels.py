"""What a ledger reference bought, and from whom: the words behind a statement line (reads only).

Every escrow transfer carries its purchase's reference in ``user_data``: a
contract id, a metered session id, a subscription period's charge id
(``sub_….pN``, or ``sub_….pN.rK`` for a retried attempt) or a digital
good's licence id (``lic_…``). The portal shows people their history through
here, never the exchange's tables, so the exchange may change how it stores
them. One call answers a whole batch with a few queries per table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters import purchase_label_queries as queries

__all__ = [
    "PURCHASE_LABEL_REFERENCES_MAX",
    "PurchaseKind",
    "PurchaseLabel",
    "purchase_labels",
]

# A batch's bound: a caller with more references asks in several calls.
PURCHASE_LABEL_REFERENCES_MAX = 50_000

_CHARGE_PATTERN = re.compile(r"^(sub_[0-9a-f]{1,64})\.p([1-9][0-9]{0,8})(?:\.r[1-9][0-9]{0,8})?\Z")
_LICENCE_PREFIX = "lic_"


class PurchaseKind(StrEnum):
    CONTRACT = "contract"
    METERED = "metered"
    SUBSCRIPTION = "subscription"
    GOODS = "goods"


@dataclass(frozen=True, slots=True)
class PurchaseLabel:
    """One purchase: its title (a capability, a plan, a good's title) and its two parties.

    ``fee_millicredits`` is the platform's fee the exchange recorded for it
    (for a metered session, the sum over its captures so far); ``period`` is
    a subscription charge's period.
    """

    reference: str
    kind: PurchaseKind
    title: str
    buyer_id: str
    provider_id: str
    fee_millicredits: int
    period: int | None = None


async def purchase_labels(
    connection: AsyncConnection, references: Sequence[str], /
) -> dict[str, PurchaseLabel]:
    """The label of each reference the exchange knows; unknown references are left out."""
    assert len(references) <= PURCHASE_LABEL_REFERENCES_MAX, "ask in smaller batches"
    charges: dict[str, tuple[str, int]] = {}
    licences: list[str] = []
    others: list[str] = []
    for reference in set(references):
        matched = _CHARGE_PATTERN.match(reference)
        if matched is not None:
            charges[reference] = (matched.group(1), int(matched.group(2)))
        elif reference.startswith(_LICENCE_PREFIX):
            licences.append(reference)
        else:
            others.append(reference)
    labels: dict[str, PurchaseLabel] = {}
    for kind, rows in (
        (PurchaseKind.CONTRACT, await queries.contract_rows(connection, others)),
        (PurchaseKind.METERED, await queries.metered_rows(connection, others)),
    ):
        for row in rows:
            labels[row["contract_id"]] = PurchaseLabel(
                row["contract_id"],
                kind,
                row["capability"],
                row["buyer_id"],
                row["provider_id"],
                row["fee_millicredits"],
            )
    for row in await queries.licence_rows(connection, licences):
        labels[row["licence_id"]] = PurchaseLabel(
            row["licence_id"],
            PurchaseKind.GOODS,
            row["title"],
            row["buyer_id"],
            row["provider_id"],
            row["fee_millicredits"],
        )
    labels.update(await _subscription_labels(connection, charges))
    return labels


async def _subscription_labels(
    connection: AsyncConnection, charges: dict[str, tuple[str, int]], /
) -> dict[str, PurchaseLabel]:
    if not charges:
        return {}
    periods = sorted(set(charges.values()))
    subscriptions = {
        row["subscription_id"]: row
        for row in await queries.subscription_rows(connection, [s for s, _ in periods])
    }
    fees = {
        (row["subscription_id"], row["period"]): row["fee_millicredits"]
        for row in await queries.subscription_charge_rows(connection, periods)
    }
    labels = {}
    for reference, (subscription_id, period) in charges.items():
        row = subscriptions.get(subscription_id)
        if row is None:
            continue
        labels[reference] = PurchaseLabel(
            reference,
            PurchaseKind.SUBSCRIPTION,
            f"{row['plan']} ({row['capability']})",
            row["buyer_id"],
            row["provider_id"],
            fees.get((subscription_id, period), 0),
            period,
        )
    return labels
