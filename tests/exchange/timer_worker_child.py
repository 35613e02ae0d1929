"""An exchange worker in a process of its own, one of several racing on one database.

Run by ``test_timer_leases.py`` as ``python -m tests.exchange.timer_worker_child
NATS_URL DATABASE_URL SEED_PATH OPERATOR_ID SWEEP_INTERVAL_S``: it serves the
exchange's endpoints and runs its timers with the given sweep interval, logs
at INFO to stderr (the test reads which worker took which timer lease), prints
``ready <instance id>`` once it listens, and then only waits. The test that
started it stops it with SIGTERM (a clean stop) or SIGKILL (a crash), by its
process id.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from agent_client import AgentKeys
from exchange import ExchangeConfig, ExchangeWorker

# Longer than any test runs: the test stops this process well before.
IDLE_S = 3600


async def main(
    nats_url: str, database_url: str, seed_path: Path, operator_id: str, sweep_interval_s: float
) -> None:
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=AgentKeys.load(seed_path),
            operator_ids=frozenset({operator_id}),
            sweep_interval_s=sweep_interval_s,
        )
    )
    await worker.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print("ready", worker.instance_id, flush=True)
    try:
        await asyncio.wait_for(stopping.wait(), IDLE_S)
    finally:
        await worker.stop()


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    nats_url, database_url, seed_path, operator_id, sweep_interval_s = sys.argv[1:6]
    asyncio.run(main(nats_url, database_url, Path(seed_path), operator_id, float(sweep_interval_s)))
