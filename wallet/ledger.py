"""``SqlLedger``: the double-entry ledger on SQLite or PostgreSQL.

Each call is one database transaction: load and lock, plan (pure, in
``wallet.core``), write. With ``connection=`` the call joins the caller's
already-begun transaction instead, so the exchange can open a contract and
hold its price atomically; the caller then owns retries (``run_transaction``).
``create_transfer_batches`` applies several callers' batches in one
transaction, each exactly as if alone; ``wallet.batching`` is built on it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet import queries
from wallet.core import BatchPlan, plan_accounts, plan_batch, plan_batches, release_expired
from wallet.database import read_transaction, run_transaction, translated_errors
from wallet.errors import ValueOutOfRange
from wallet.limits import (
    ACCOUNT_LOOKUP_SIZE_MAX,
    ACCOUNT_TRANSFERS_LIMIT_DEFAULT,
    ACCOUNT_TRANSFERS_LIMIT_MAX,
    BATCH_SIZE_MAX,
    EXPIRY_BATCH_SIZE_DEFAULT,
    EXPIRY_BATCH_SIZE_MAX,
    ID_LENGTH_MAX,
    TIMESTAMP_US_MAX,
)
from wallet.model import (
    AccountBalance,
    AccountOutcome,
    AccountResult,
    NewAccount,
    NewTransfer,
    TransferOutcome,
    TransferRecord,
    TransferResult,
)

__all__ = ["SqlLedger", "wall_clock_us"]

T = TypeVar("T")


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class SqlLedger:
    """The ledger. ``clock_us`` (microseconds since the epoch) is replaceable
    so that tests can move time past a pending transfer's deadline."""

    def __init__(
        self, engine: AsyncEngine, /, *, clock_us: Callable[[], int] = wall_clock_us
    ) -> None:
        self._engine = engine
        self._clock_us = clock_us

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def create_accounts(
        self, accounts: Sequence[NewAccount], /, *, connection: AsyncConnection | None = None
    ) -> list[AccountOutcome]:
        """Create accounts; an existing account with identical fields is ``ok``
        (``replayed``), with different fields ``exists_with_different_fields``."""
        if not accounts:
            return []
        if len(accounts) > BATCH_SIZE_MAX:
            return plan_accounts(accounts, existing={})[0]

        async def work(connection: AsyncConnection) -> list[AccountOutcome]:
            ids = [account.id for account in accounts if len(account.id) <= ID_LENGTH_MAX]
            existing = await queries.select_account_definitions(connection, ids)
            outcomes, inserts = plan_accounts(accounts, existing=existing)
            if not inserts:
                return outcomes  # all exist: nothing written, nothing to re-check
            await queries.insert_accounts(connection, inserts, created_at_us=self._now_us())
            # A concurrent creator may have won an insert; judge against what is stored.
            stored = await queries.select_account_definitions(connection, ids)
            inserted = {account.id: account for account in inserts}
            return [_recheck_account(outcome, stored, inserted) for outcome in outcomes]

        return await self._write(work, connection)

    async def create_transfers(
        self, transfers: Sequence[NewTransfer], /, *, connection: AsyncConnection | None = None
    ) -> list[TransferOutcome]:
        """Apply a batch in order in one transaction; one outcome per transfer."""
        if not transfers:
            return []
        if len(transfers) > BATCH_SIZE_MAX:
            return [TransferOutcome(t.id, TransferResult.BATCH_TOO_LARGE) for t in transfers]

        async def work(connection: AsyncConnection) -> list[TransferOutcome]:
            [outcomes] = await self._apply_batches(connection, [transfers])
            return outcomes

        return await self._write(work, connection)

    async def create_transfer_batches(
        self,
        batches: Sequence[Sequence[NewTransfer]],
        /,
        *,
        connection: AsyncConnection | None = None,
    ) -> list[list[TransferOutcome]]:
        """Apply several independent batches in one transaction (group commit).

        Each batch gets exactly the outcomes ``create_transfers`` would give
        it if the batches were applied one after the other, in order: its
        chains end where it ends, and a chain of one batch that fails leaves
        the others untouched. Together the batches hold at most
        ``BATCH_SIZE_MAX`` transfers (not counting a batch that is itself too
        large, which is refused alone). Callers: ``BatchingLedger``, and group
        commits of other packages, which pass ``connection`` so that the
        batches commit with their own writes.
        """
        planned_size = sum(len(batch) for batch in batches if len(batch) <= BATCH_SIZE_MAX)
        if planned_size > BATCH_SIZE_MAX:
            raise ValueOutOfRange(
                "transfers in the batches", planned_size, minimum=0, maximum=BATCH_SIZE_MAX
            )
        if planned_size == 0:
            return [_unplanned_outcomes(batch) for batch in batches]

        async def work(connection: AsyncConnection) -> list[list[TransferOutcome]]:
            return await self._apply_batches(connection, batches)

        return await self._write(work, connection)

    async def _apply_batches(
        self, connection: AsyncConnection, batches: Sequence[Sequence[NewTransfer]]
    ) -> list[list[TransferOutcome]]:
        plan = await self._plan(connection, batches, now_us=self._now_us())
        await queries.write_plan(connection, plan)
        outcomes: list[list[TransferOutcome]] = []
        start = 0
        for batch in batches:
            outcomes.append(list(plan.outcomes[start : start + len(batch)]))
            start += len(batch)
        assert start == len(plan.outcomes)
        return outcomes

    async def _plan(
        self,
        connection: AsyncConnection,
        batches: Sequence[Sequence[NewTransfer]],
        *,
        now_us: int,
    ) -> BatchPlan:
        transfers = [
            transfer for batch in batches if len(batch) <= BATCH_SIZE_MAX for transfer in batch
        ]
        account_ids = {
            account_id
            for transfer in transfers
            for account_id in (transfer.debit_account_id, transfer.credit_account_id)
            if 0 < len(account_id) <= ID_LENGTH_MAX
        }
        # Holds past their deadline on these accounts are voided by this batch,
        # so their other accounts must be locked too.
        expired = await queries.select_expired_holds(
            connection, now_us=now_us, account_ids=account_ids
        )
        lock_ids = account_ids | {h.debit_account_id for h in expired}
        lock_ids |= {h.credit_account_id for h in expired}
        accounts = await queries.select_accounts(connection, lock_ids, lock=True)
        if connection.dialect.name == "postgresql":
            # They were found before the row locks were taken, so they are
            # read again under them; a hold whose other account is not locked
            # waits for the sweeper. SQLite's BEGIN IMMEDIATE held the
            # database's only write lock before the first read.
            expired = await queries.select_expired_holds(
                connection, now_us=now_us, account_ids=account_ids
            )
        pending_ids = {
            transfer.pending_id
            for transfer in transfers
            if transfer.pending_id is not None and len(transfer.pending_id) <= ID_LENGTH_MAX
        }
        holds = await queries.select_holds(connection, pending_ids)
        for hold in expired:
            holds.setdefault(hold.id, hold)
        transfer_ids = {t.id for t in transfers if len(t.id) <= ID_LENGTH_MAX}
        # A pending id's own outcome matters only when it names no hold (is it
        # an applied transfer that was not pending, or nothing at all?).
        unknown_pending_ids = pending_ids - holds.keys()
        existing = await queries.select_stored_outcomes(
            connection, transfer_ids | unknown_pending_ids
        )
        last_timestamp_us = await queries.select_last_timestamp(connection)
        return plan_batches(
            batches,
            accounts=accounts,
            holds=holds,
            existing=existing,
            now_us=now_us,
            last_timestamp_us=last_timestamp_us,
        )

    async def lookup_accounts(
        self, ids: Collection[str], /, *, connection: AsyncConnection | None = None
    ) -> dict[str, AccountBalance]:
        """Balances of the accounts that exist among ``ids``.

        A pending transfer past its deadline is already released here, even
        if no batch or sweeper has voided it yet.
        """
        if len(ids) > ACCOUNT_LOOKUP_SIZE_MAX:
            raise ValueOutOfRange("len(ids)", len(ids), minimum=0, maximum=ACCOUNT_LOOKUP_SIZE_MAX)
        now_us = self._now_us()

        async def work(connection: AsyncConnection) -> dict[str, AccountBalance]:
            accounts = await queries.select_accounts(connection, ids, lock=False)
            expired = await queries.select_expired_holds(
                connection, now_us=now_us, account_ids=accounts.keys()
            )
            return release_expired(accounts, expired, now_us=now_us)

        return await self._read(work, connection)

    async def account_transfers(
        self,
        account_id: str,
        /,
        *,
        limit: int = ACCOUNT_TRANSFERS_LIMIT_DEFAULT,
        before_timestamp_us: int | None = None,
        connection: AsyncConnection | None = None,
    ) -> list[TransferRecord]:
        """The account's transfers, newest first; page with ``before_timestamp_us``
        set to the last timestamp of the previous page."""
        if not 1 <= limit <= ACCOUNT_TRANSFERS_LIMIT_MAX:
            raise ValueOutOfRange("limit", limit, minimum=1, maximum=ACCOUNT_TRANSFERS_LIMIT_MAX)
        if before_timestamp_us is not None and not 0 <= before_timestamp_us <= TIMESTAMP_US_MAX:
            raise ValueOutOfRange(
                "before_timestamp_us", before_timestamp_us, minimum=0, maximum=TIMESTAMP_US_MAX
            )

        async def work(connection: AsyncConnection) -> list[TransferRecord]:
            return await queries.select_account_transfers(
                connection, account_id, limit=limit, before_timestamp_us=before_timestamp_us
            )

        return await self._read(work, connection)

    async def expire_pending(
        self, *, now_us: int | None = None, limit: int = EXPIRY_BATCH_SIZE_DEFAULT
    ) -> int:
        """Void up to ``limit`` pending transfers past their deadline, writing an
        ``EXPIRY`` record for each; returns how many. Call it until it returns 0."""
        if not 1 <= limit <= EXPIRY_BATCH_SIZE_MAX:
            raise ValueOutOfRange("limit", limit, minimum=1, maximum=EXPIRY_BATCH_SIZE_MAX)
        sweep_now_us = self._now_us() if now_us is None else now_us

        async def work(connection: AsyncConnection) -> int:
            candidates = await queries.select_expired_holds(
                connection, now_us=sweep_now_us, limit=limit
            )
            if not candidates:
                return 0
            account_ids = {h.debit_account_id for h in candidates}
            account_ids |= {h.credit_account_id for h in candidates}
            accounts = await queries.select_accounts(connection, account_ids, lock=True)
            # Read again under the locks: a batch may have voided some meanwhile.
            holds = await queries.select_holds(connection, [h.id for h in candidates])
            plan = plan_batch(
                (),
                accounts=accounts,
                holds=holds,
                existing={},
                now_us=sweep_now_us,
                last_timestamp_us=await queries.select_last_timestamp(connection),
            )
            await queries.write_plan(connection, plan)
            return plan.expired_count

        return await self._write(work, None)

    def _now_us(self) -> int:
        now_us = self._clock_us()
        assert 0 < now_us < TIMESTAMP_US_MAX
        return now_us

    async def _write(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        connection: AsyncConnection | None,
    ) -> T:
        if connection is None:
            return await run_transaction(self._engine, work)
        assert connection.in_transaction(), "pass a connection inside a begun transaction"
        with translated_errors():
            return await work(connection)

    async def _read(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        connection: AsyncConnection | None,
    ) -> T:
        if connection is not None:
            with translated_errors():
                return await work(connection)
        async with read_transaction(self._engine) as read_connection:
            return await work(read_connection)


def _unplanned_outcomes(batch: Sequence[NewTransfer]) -> list[TransferOutcome]:
    # Only an empty batch or one that is too large is never planned.
    assert len(batch) == 0 or len(batch) > BATCH_SIZE_MAX
    return [TransferOutcome(t.id, TransferResult.BATCH_TOO_LARGE) for t in batch]


def _recheck_account(
    outcome: AccountOutcome, stored: dict[str, NewAccount], inserted: dict[str, NewAccount]
) -> AccountOutcome:
    """The planned outcome, corrected if a concurrent creator inserted first."""
    requested = inserted.get(outcome.id)
    if outcome.result is not AccountResult.OK or outcome.replayed or requested is None:
        return outcome
    if stored.get(outcome.id) == requested:
        return outcome
    return AccountOutcome(outcome.id, AccountResult.EXISTS_WITH_DIFFERENT_FIELDS)
