"""The exchange's contract SQL: contracts, their events, the outbox, the operator audit log.

Every function takes the connection of an already-begun transaction, so the
service layer decides what is atomic (a contract and its escrow hold are
written in the same transaction). Nothing outside this module writes SQL
for the exchange.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import contract_events, contracts, operator_audit, outbox
from exchange.domain.contract_states import (
    HOLDING_STATES,
    SETTLED_STATES,
    ContractRow,
    ContractState,
)
from exchange.errors import ErrorCode, ExchangeError
from wallet.prepared_statements import PreparedStatement, among, id_list

__all__ = [
    "OutboxRow",
    "add_audit_record",
    "add_contract_events",
    "add_outbox_notices",
    "contract_event_rows",
    "contracts_in_state",
    "contracts_of_agents",
    "delete_acknowledged_notices",
    "delete_expired_notices",
    "due_contract_ids",
    "due_notices",
    "get_contract",
    "get_contracts",
    "insert_contracts",
    "mark_notices_due",
    "mark_notices_sent",
    "open_escrow_total",
    "settled_contracts_not_adding_up",
    "transition_contracts",
    "unacknowledged_notices",
]


async def insert_contracts(connection: AsyncConnection, rows: Sequence[ContractRow], /) -> None:
    """Insert many contracts with one statement (a group commit's opens).

    The group checks first; this catches two workers' acceptances of one
    quote passing that check at once. A duplicate among many raises
    ``IntegrityError`` (the group then applies each opening as a group of
    one); the duplicate of a lone opening is named, and its transaction,
    escrow hold included, rolls back whole.
    """
    if not rows:
        return
    try:
        await _insert_contracts.run_many(connection, [_contract_values(row) for row in rows])
    except IntegrityError as exc:
        if len(rows) > 1:
            raise
        raise ExchangeError(
            ErrorCode.QUOTE_ALREADY_ACCEPTED,
            "this quote was already accepted",
            contract_id=rows[0].contract_id,
        ) from exc


# The table's columns are ContractRow's fields, in the same order.
_CONTRACT_COLUMNS: tuple[str, ...] = tuple(column.name for column in contracts.columns)
assert ContractRow.__slots__ == _CONTRACT_COLUMNS
_insert_contracts = PreparedStatement(lambda _dialect: contracts.insert(), _CONTRACT_COLUMNS)


def _contract_values(contract: ContractRow) -> tuple[Any, ...]:
    return tuple(
        contract.state.value if column == "state" else getattr(contract, column)
        for column in _CONTRACT_COLUMNS
    )


_select_contract = PreparedStatement(
    lambda _dialect: sa.select(contracts).where(
        contracts.c.contract_id == sa.bindparam("contract_id")
    ),
    ("contract_id",),
)
_select_contracts = PreparedStatement(
    lambda dialect: sa.select(contracts).where(among(dialect, contracts.c.contract_id, "ids")),
    ("ids",),
)
# Locked in id order, the order every group takes them in (PostgreSQL).
_select_locked_contracts = PreparedStatement(
    lambda dialect: (
        sa.select(contracts)
        .where(among(dialect, contracts.c.contract_id, "ids"))
        .order_by(contracts.c.contract_id)
        .with_for_update()
    ),
    ("ids",),
)


async def get_contract(connection: AsyncConnection, contract_id: str, /) -> ContractRow | None:
    rows = await _select_contract.rows(connection, (contract_id,))
    return _contract_from_values(rows[0]) if rows else None


async def get_contracts(
    connection: AsyncConnection, contract_ids: Sequence[str], /, *, for_update: bool = False
) -> dict[str, ContractRow]:
    """The contracts among ``contract_ids`` that exist, by id.

    ``for_update`` locks them (PostgreSQL) in id order, the order every
    group takes them in, so two workers' groups queue instead of deadlocking.
    """
    if not contract_ids:
        return {}
    query = _select_locked_contracts if for_update else _select_contracts
    rows = await query.rows(connection, (id_list(connection, sorted(contract_ids)),))
    return {str(row[0]): _contract_from_values(row) for row in rows}


async def contracts_of_agents(
    connection: AsyncConnection, agent_ids: Sequence[str], /, *, limit: int
) -> list[ContractRow]:
    """The contracts these agents are a party of, the most recently changed first."""
    if not agent_ids:
        return []
    statement = (
        sa.select(contracts)
        .where(sa.or_(contracts.c.buyer_id.in_(agent_ids), contracts.c.provider_id.in_(agent_ids)))
        .order_by(contracts.c.updated_at_ms.desc())
        .limit(limit)
    )
    return [_contract_from_values(row) for row in await connection.execute(statement)]


async def contracts_in_state(
    connection: AsyncConnection, state: ContractState, /, *, limit: int
) -> list[ContractRow]:
    """The contracts in ``state``, the longest unchanged first."""
    statement = (
        sa.select(contracts)
        .where(contracts.c.state == state.value)
        .order_by(contracts.c.updated_at_ms)
        .limit(limit)
    )
    return [_contract_from_values(row) for row in await connection.execute(statement)]


def _contract_from_values(row: Sequence[Any]) -> ContractRow:
    """A row of ``_CONTRACT_COLUMNS`` (the whole table, in its order)."""
    values = dict(zip(_CONTRACT_COLUMNS, row, strict=True))
    values["state"] = ContractState(values["state"])
    values["buyer_cancel_requested"] = bool(values["buyer_cancel_requested"])
    values["seal_result"] = bool(values["seal_result"])
    return ContractRow(**values)


@dataclass(frozen=True, slots=True)
class ContractMove:
    """One contract's step in a group: from a state to the next, with its changes."""

    contract_id: str
    from_state: ContractState
    to_state: ContractState
    changes: Mapping[str, Any]


async def transition_contracts(
    connection: AsyncConnection, moves: Sequence[ContractMove], /
) -> None:
    """Apply many moves, one ``executemany`` per set of changed columns.

    The state check sits in each UPDATE, so of two racing moves of one
    contract only the first to commit matches its row. The group holds the
    contracts locked (or SQLite's write lock), so a move that matches no row
    means a bug or a foreign writer: the count is checked, and a mismatch
    rolls the whole group back.
    """
    by_columns: dict[tuple[str, ...], list[ContractMove]] = {}
    for move in moves:
        by_columns.setdefault(tuple(sorted(move.changes)), []).append(move)
    for columns, same_shape in by_columns.items():
        rows = [
            (
                move.contract_id,
                move.from_state.value,
                move.to_state.value,
                *(move.changes[column] for column in columns),
            )
            for move in same_shape
        ]
        moved = await _move_statement(columns).run_many(connection, rows)
        if moved not in (-1, len(rows)):
            raise ExchangeError(
                ErrorCode.INVALID_STATE, f"{len(rows) - moved} contracts moved under a group"
            )


@functools.lru_cache(maxsize=64)
def _move_statement(columns: tuple[str, ...], /) -> PreparedStatement:
    """The UPDATE of a move changing ``columns`` (a handful of shapes: one per kind of step)."""
    assert set(columns) <= set(_CONTRACT_COLUMNS) - {"contract_id", "state"}
    changed = (f"move_{column}" for column in columns)
    names = ("move_contract_id", "move_from_state", "move_to_state", *changed)
    return PreparedStatement(
        lambda _dialect: (
            contracts.update()
            .where(
                contracts.c.contract_id == sa.bindparam("move_contract_id"),
                contracts.c.state == sa.bindparam("move_from_state"),
            )
            .values(
                state=sa.bindparam("move_to_state"),
                **{column: sa.bindparam(f"move_{column}") for column in columns},
            )
        ),
        names,
    )


async def open_escrow_total(connection: AsyncConnection, /) -> int:
    """The prices of all contracts whose escrow hold is still pending."""
    held_states = [state.value for state in HOLDING_STATES]
    total = await connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(contracts.c.price_millicredits), 0)).where(
            contracts.c.state.in_(held_states)
        )
    )
    return int(total.scalar_one())


async def settled_contracts_not_adding_up(connection: AsyncConnection, /) -> list[str]:
    """Settled contracts whose net + fee + refund is not their price (must be none)."""
    statement = sa.select(contracts.c.contract_id).where(
        contracts.c.state.in_([state.value for state in SETTLED_STATES]),
        sa.or_(
            contracts.c.net_millicredits.is_(None),
            contracts.c.net_millicredits
            + contracts.c.fee_millicredits
            + contracts.c.refunded_millicredits
            != contracts.c.price_millicredits,
        ),
    )
    return [str(contract_id) for contract_id in (await connection.execute(statement)).scalars()]


async def add_audit_record(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    await connection.execute(operator_audit.insert().values(**values))


# The timer passes' queries run every second on every worker, mostly
# finding nothing: prepared, so that an idle pass costs little.
_select_due_contracts = PreparedStatement(
    lambda _dialect: (
        sa.select(contracts.c.contract_id)
        .where(contracts.c.due_at_ms.is_not(None), contracts.c.due_at_ms < sa.bindparam("now_ms"))
        .order_by(contracts.c.due_at_ms)
        .limit(sa.bindparam("limit"))
    ),
    ("now_ms", "limit"),
)


async def due_contract_ids(connection: AsyncConnection, /, *, now_ms: int, limit: int) -> list[str]:
    """Contracts whose timer has fired, oldest first (the sweeper's work list)."""
    rows = await _select_due_contracts.rows(connection, (now_ms, limit))
    return [str(contract_id) for (contract_id,) in rows]


_EVENT_COLUMNS = ("contract_id", "event", "actor_id", "to_state", "detail", "at_ms")
_insert_events = PreparedStatement(
    lambda _dialect: contract_events.insert().values(
        {column: sa.bindparam(column) for column in _EVENT_COLUMNS}
    ),
    _EVENT_COLUMNS,
)


async def add_contract_events(
    connection: AsyncConnection, rows: Sequence[Mapping[str, Any]], /
) -> None:
    """Insert events, each with exactly the keys of ``_EVENT_COLUMNS``."""
    await _insert_events.run_many(
        connection, [tuple(row[column] for column in _EVENT_COLUMNS) for row in rows]
    )


async def contract_event_rows(
    connection: AsyncConnection, contract_id: str, /, *, limit: int
) -> list[dict[str, Any]]:
    statement = (
        sa.select(contract_events)
        .where(contract_events.c.contract_id == contract_id)
        .order_by(contract_events.c.event_id)
        .limit(limit)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


_OUTBOX_COLUMNS = (
    "notice_id",
    "subject",
    "payload",
    "created_at_ms",
    "recipient",
    "published_at_ms",
    "due_at_ms",
)
_insert_notices = PreparedStatement(
    lambda _dialect: outbox.insert().values(
        {column: sa.bindparam(column) for column in _OUTBOX_COLUMNS}
    ),
    _OUTBOX_COLUMNS,
)

# A notice as the outbox keeps it: id, recipient, subject, payload, created at.
OutboxRow = tuple[str, str, str, str, int]


async def add_outbox_notices(connection: AsyncConnection, notices: list[dict[str, Any]], /) -> None:
    """Insert notices, each with exactly the keys of ``_OUTBOX_COLUMNS``."""
    await _insert_notices.run_many(
        connection, [tuple(notice[column] for column in _OUTBOX_COLUMNS) for notice in notices]
    )


_OUTBOX_ROW = (
    outbox.c.notice_id,
    outbox.c.recipient,
    outbox.c.subject,
    outbox.c.payload,
    outbox.c.created_at_ms,
)

_select_due_notices = PreparedStatement(
    lambda _dialect: (
        sa.select(*_OUTBOX_ROW)
        .where(outbox.c.due_at_ms <= sa.bindparam("now_ms"))
        .order_by(outbox.c.due_at_ms)
        .limit(sa.bindparam("limit"))
    ),
    ("now_ms", "limit"),
)


async def due_notices(
    connection: AsyncConnection, /, *, now_ms: int, limit: int
) -> list[OutboxRow]:
    """The notices to send again now (never acknowledged, and due), most overdue first."""
    return _outbox_rows(await _select_due_notices.rows(connection, (now_ms, limit)))


_select_unacknowledged = PreparedStatement(
    lambda _dialect: (
        sa.select(*_OUTBOX_ROW)
        .where(
            outbox.c.recipient == sa.bindparam("recipient"),
            outbox.c.published_at_ms <= sa.bindparam("sent_before_ms"),
        )
        .order_by(outbox.c.created_at_ms, outbox.c.notice_id)
        .limit(sa.bindparam("limit"))
    ),
    ("recipient", "sent_before_ms", "limit"),
)


async def unacknowledged_notices(
    connection: AsyncConnection, recipient: str, /, *, sent_before_ms: int, limit: int
) -> list[OutboxRow]:
    """``recipient``'s notices not acknowledged and not sent since ``sent_before_ms``,
    oldest first."""
    rows = await _select_unacknowledged.rows(connection, (recipient, sent_before_ms, limit))
    return _outbox_rows(rows)


def _outbox_rows(rows: list[Any]) -> list[OutboxRow]:
    return [
        (str(notice_id), str(recipient), str(subject), str(payload), int(created_at_ms))
        for notice_id, recipient, subject, payload, created_at_ms in rows
    ]


_mark_sent = PreparedStatement(
    lambda _dialect: (
        outbox.update()
        .where(outbox.c.notice_id == sa.bindparam("id"))
        .values(published_at_ms=sa.bindparam("sent_at_ms"), due_at_ms=sa.bindparam("due_at_ms"))
    ),
    ("sent_at_ms", "due_at_ms", "id"),
)


async def mark_notices_sent(
    connection: AsyncConnection, sent: list[tuple[int, int, str]], /
) -> None:
    """Each (sent at, next due at, notice id): when it was sent, and when to send it
    again unless acknowledged."""
    await _mark_sent.run_many(connection, sent)


_mark_due = PreparedStatement(
    lambda dialect: (
        outbox.update()
        .where(among(dialect, outbox.c.notice_id, "ids"))
        .values(due_at_ms=sa.bindparam("due_at_ms"))
    ),
    ("due_at_ms", "ids"),
)


async def mark_notices_due(
    connection: AsyncConnection, notice_ids: list[str], /, *, due_at_ms: int
) -> None:
    """Send these notices again from ``due_at_ms`` on (their send failed)."""
    if notice_ids:
        await _mark_due.run(connection, (due_at_ms, id_list(connection, notice_ids)))


_delete_acknowledged = PreparedStatement(
    lambda dialect: outbox.delete().where(
        outbox.c.recipient == sa.bindparam("recipient"),
        among(dialect, outbox.c.notice_id, "ids"),
    ),
    ("recipient", "ids"),
)


async def delete_acknowledged_notices(
    connection: AsyncConnection, recipient: str, notice_ids: list[str], /
) -> int:
    """Drop the notices ``recipient`` acknowledged (only its own); how many there were."""
    return await _delete_acknowledged.run(connection, (recipient, id_list(connection, notice_ids)))


_select_expired = PreparedStatement(
    lambda _dialect: (
        sa.select(outbox.c.notice_id)
        .where(outbox.c.created_at_ms < sa.bindparam("created_before_ms"))
        .order_by(outbox.c.created_at_ms)
        .limit(sa.bindparam("limit"))
    ),
    ("created_before_ms", "limit"),
)
_delete_notices = PreparedStatement(
    lambda dialect: outbox.delete().where(among(dialect, outbox.c.notice_id, "ids")),
    ("ids",),
)


async def delete_expired_notices(
    connection: AsyncConnection, /, *, created_before_ms: int, limit: int
) -> int:
    """Drop up to ``limit`` notices created before ``created_before_ms`` (past their
    lifetime: no receiver would accept them); how many."""
    rows = await _select_expired.rows(connection, (created_before_ms, limit))
    if not rows:
        return 0
    ids = [str(notice_id) for (notice_id,) in rows]
    await _delete_notices.run(connection, (id_list(connection, ids),))
    return len(ids)
