"""A process that commits one batching group and dies before it replies.

Run by ``test_batching.py`` as ``python -m tests.wallet.batching_crash_child
URL OUTCOMES_PATH``: it submits ``crash_group_calls()`` concurrently through a
``BatchingLedger`` (so they form one group), and right after the group's
transaction commits it writes the committed outcomes to ``OUTCOMES_PATH`` and
ends the process with ``os._exit`` — no reply is delivered, no connection is
closed, nothing is flushed beyond what the database committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.wallet.batching_helpers import crash_group_calls
from wallet import BatchingLedger, NewTransfer, SqlLedger, TransferOutcome, open_database

CRASH_EXIT_CODE = 87


class DiesAfterCommit(SqlLedger):
    def __init__(self, url: str, outcomes_path: Path) -> None:
        super().__init__(open_database(url))
        self._outcomes_path = outcomes_path

    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /
    ) -> list[list[TransferOutcome]]:
        outcomes = await super().create_transfer_batches(batches)
        committed = [
            [[o.id, o.result.value, o.replayed, o.timestamp_us] for o in batch]
            for batch in outcomes
        ]
        self._outcomes_path.write_text(json.dumps(committed))
        os._exit(CRASH_EXIT_CODE)


async def main(url: str, outcomes_path: Path) -> None:
    async with BatchingLedger(DiesAfterCommit(url, outcomes_path)) as batching:
        await asyncio.gather(*(batching.create_transfers(call) for call in crash_group_calls()))
    raise AssertionError("unreachable: the process dies after the commit")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
