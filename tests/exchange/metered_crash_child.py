"""An exchange worker in a process of its own, for a test to kill with SIGKILL.

Run by ``test_metered_crash.py`` as ``python -m tests.exchange.metered_crash_child
NATS_URL DATABASE_URL SEED_PATH OPERATOR_ID``: it serves the exchange's
endpoints on that NATS server and database with the exchange key saved at
``SEED_PATH``, prints ``ready`` once it listens, and then only waits. It never
ends by itself within a test's time: the test that started it kills it by its
process id, mid-work, so whatever was not committed is lost as in a real crash.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent_client import AgentKeys
from exchange import ExchangeConfig, ExchangeWorker

# Longer than any test runs: the test kills this process well before.
IDLE_S = 3600


async def main(nats_url: str, database_url: str, seed_path: Path, operator_id: str) -> None:
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=AgentKeys.load(seed_path),
            operator_ids=frozenset({operator_id}),
        )
    )
    await worker.start()
    print("ready", flush=True)
    await asyncio.sleep(IDLE_S)
    await worker.stop()


if __name__ == "__main__":
    nats_url, database_url, seed_path, operator_id = sys.argv[1:5]
    asyncio.run(main(nats_url, database_url, Path(seed_path), operator_id))
