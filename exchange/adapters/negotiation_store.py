"""The negotiations' SQL: which contract each negotiation opened.

Like :mod:`exchange.adapters.contract_store`, every function takes the connection of an
already-begun transaction: the negotiation is claimed in the same
transaction that holds the price and inserts the contract, so a refused or
failed opening claims nothing. The table comes from migration
``negotiation_0001``; it is declared here, beside its only queries, on the
exchange's shared metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import metadata
from exchange.domain.negotiation_rules import AcceptedNegotiation
from exchange.errors import ErrorCode, ExchangeError
from wallet.prepared_statements import PreparedStatement, among, id_list

__all__ = [
    "accepted_negotiations",
    "insert_negotiations",
    "negotiations",
    "superseded_error",
]

negotiations = sa.Table(
    "exchange_negotiations",
    metadata,
    sa.Column("negotiation_id", sa.Text, primary_key=True),
    sa.Column("contract_id", sa.Text, nullable=False, unique=True),
    sa.Column("rfq_id", sa.Text, nullable=False),
    sa.Column("buyer_id", sa.Text, nullable=False),
    sa.Column("provider_id", sa.Text, nullable=False),
    sa.Column("accepted_round", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)


def superseded_error(accepted_contract_id: str, /) -> ExchangeError:
    """The refusal of an offer whose negotiation already opened ``accepted_contract_id``."""
    return ExchangeError(
        ErrorCode.OFFER_SUPERSEDED,
        "another offer of this negotiation was already accepted",
        contract_id=accepted_contract_id,
    )


async def accepted_negotiations(
    connection: AsyncConnection, negotiation_ids: Sequence[str], /
) -> dict[str, str]:
    """The contract each of ``negotiation_ids`` already opened, for those that did."""
    if not negotiation_ids:
        return {}
    found = await _select_accepted.rows(connection, (id_list(connection, negotiation_ids),))
    return {str(negotiation_id): str(contract_id) for negotiation_id, contract_id in found}


_select_accepted = PreparedStatement(
    lambda dialect: sa.select(negotiations.c.negotiation_id, negotiations.c.contract_id).where(
        among(dialect, negotiations.c.negotiation_id, "ids")
    ),
    ("ids",),
)
_insert_negotiations = PreparedStatement(
    lambda _dialect: negotiations.insert(),
    tuple(column.name for column in negotiations.columns),
)


async def insert_negotiations(
    connection: AsyncConnection,
    accepted: Sequence[tuple[AcceptedNegotiation, str, int]],
    /,
) -> None:
    """Record many (negotiation, contract id, time) in one statement (a group's opens).

    The group checks first (:func:`accepted_negotiations`); the primary key
    settles the race where two workers accept different offers of one
    negotiation at once. A duplicate among many raises ``IntegrityError``
    (the group then applies each opening as a group of one); the duplicate
    of a lone opening is named, and its transaction rolls back whole. The
    contracts are inserted first, so two acceptances of one quote collide
    on the contract's id instead.
    """
    if not accepted:
        return
    try:
        await _insert_negotiations.run_many(
            connection, [_negotiation_values(*entry) for entry in accepted]
        )
    except IntegrityError as exc:
        if len(accepted) > 1:
            raise
        raise ExchangeError(
            ErrorCode.OFFER_SUPERSEDED,
            "another offer of this negotiation was accepted at the same moment",
        ) from exc


def _negotiation_values(
    negotiation: AcceptedNegotiation, contract_id: str, created_at_ms: int
) -> tuple[object, ...]:
    """The values of the table's columns, in its order."""
    return (
        negotiation.negotiation_id,
        contract_id,
        negotiation.rfq_id,
        negotiation.buyer_id,
        negotiation.provider_id,
        negotiation.round,
        created_at_ms,
    )
