"""A Python process that starts an EmbeddedNatsServer and waits to be killed.

Run as ``python embedded_server_child.py DATA_DIR``. Once the server is
ready it prints the nats-server pid on one line, then waits until killed
(or until its wait runs out, so a forgotten child ends by itself). The test
that runs it SIGKILLs it, so ``stop()`` never runs; whatever ends the
nats-server then is the parent-death signal.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from broker import EmbeddedNatsServer, NatsServerConfig

# Far longer than the test needs; only a bound for a child nobody kills.
WAIT_FOR_KILL_S = 120.0


async def main(data_dir: Path) -> None:
    async with EmbeddedNatsServer(NatsServerConfig(data_dir=data_dir)) as server:
        print(server.process_id, flush=True)
        await asyncio.sleep(WAIT_FOR_KILL_S)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
