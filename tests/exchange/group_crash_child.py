"""An exchange worker that commits one group of contract steps and dies before replying.

Run by ``test_group_commit_contracts.py`` as ``python -m
tests.exchange.group_crash_child NATS_URL DATABASE_URL SEED OPERATOR_ID
COMMITTED_PATH``: it serves the exchange's endpoints; right after its first
group commits it writes the ids of the contracts that group opened to
``COMMITTED_PATH`` and ends the process with ``os._exit``: no reply is sent,
no connection closed, nothing flushed beyond what the database committed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from agent_client import AgentKeys
from exchange import ExchangeConfig, ExchangeWorker
from exchange.use_cases.contract_groups import OpenJob

CRASH_EXIT_CODE = 86


async def main(nats_url: str, database_url: str, seed: Path, operator_id: str, out: Path) -> None:
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=AgentKeys.load(seed),
            operator_ids=frozenset({operator_id}),
        )
    )
    await worker.start()

    async def die(jobs: list[object]) -> None:
        record_and_exit([job.contract.contract_id for job in jobs if isinstance(job, OpenJob)], out)

    groups = worker.contract_groups
    assert groups is not None
    groups.after_commit = die
    print("ready", flush=True)
    await asyncio.sleep(3600)
    raise AssertionError("unreachable: the process dies after its first group's commit")


def record_and_exit(opened: list[str], out: Path) -> None:
    out.write_text("\n".join(opened))
    os._exit(CRASH_EXIT_CODE)


if __name__ == "__main__":
    nats_url, database_url, seed, operator_id, out = sys.argv[1:6]
    asyncio.run(main(nats_url, database_url, Path(seed), operator_id, Path(out)))
