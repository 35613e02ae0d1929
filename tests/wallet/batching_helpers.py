"""A recording, gateable ledger for the batching tests, and the crash child's transfers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import ALICE, BOB, CAROL, payment
from wallet import NewTransfer, SqlLedger, TransferFlags, TransferOutcome
from wallet.ledger import wall_clock_us

# Every wait in these tests is bounded, so that a bug hangs nothing.
WAIT_S = 10


class RecordingLedger(SqlLedger):
    """Records every group the writer applies, and can hold a group at a gate
    before its transaction begins (``before_gate``) or after it committed
    (``after_gate``), so that a test can line calls up in one group or lose
    the replies of a committed one."""

    def __init__(
        self, engine: AsyncEngine, /, *, clock_us: Callable[[], int] = wall_clock_us
    ) -> None:
        super().__init__(engine, clock_us=clock_us)
        self.groups: list[list[list[NewTransfer]]] = []
        self.committed: list[list[list[TransferOutcome]]] = []
        self.entered = asyncio.Event()
        self.after_commit = asyncio.Event()
        self.before_gate: asyncio.Event | None = None
        self.after_gate: asyncio.Event | None = None

    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /
    ) -> list[list[TransferOutcome]]:
        self.groups.append([list(batch) for batch in batches])
        self.entered.set()
        if self.before_gate is not None:
            await self.before_gate.wait()
        outcomes = await super().create_transfer_batches(batches)
        self.committed.append(outcomes)
        self.after_commit.set()
        if self.after_gate is not None:
            await self.after_gate.wait()
        return outcomes

    def group_ids(self, index: int, /) -> list[list[str]]:
        return [[transfer.id for transfer in batch] for batch in self.groups[index]]


def crash_group_calls() -> list[list[NewTransfer]]:
    """The calls the crash child makes in one group: payments, a linked chain
    that fails on its second member, and a hold."""
    return [
        [payment("crash-pay-1", ALICE, BOB, 100)],
        [payment("crash-pay-2", BOB, CAROL, 50)],
        [
            payment("crash-chain-1", CAROL, ALICE, 10, flags=TransferFlags.LINKED),
            payment("crash-chain-2", CAROL, ALICE, 10**9),
        ],
        [payment("crash-hold", ALICE, CAROL, 200, flags=TransferFlags.PENDING)],
        [payment("crash-pay-3", ALICE, BOB, 5)],
    ]
