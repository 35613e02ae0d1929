"""Two separate agent processes complete a deal through the exchange.

Runs the shipped examples (examples/provider.py, examples/buyer.py) as real
OS processes against the test's exchange worker and nats-server, proving the
client library works outside the exchange's process and that the examples
in the README really run. Ends with the ledger invariants.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent_client import AgentKeys, OperatorClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROCESS_TIMEOUT_S = 30


async def test_a_provider_process_and_a_buyer_process_settle_a_deal(exchange, tmp_path):
    provider_keys, buyer_keys = AgentKeys.generate(), AgentKeys.generate()
    provider_keys.save(tmp_path / "provider.seed")
    buyer_keys.save(tmp_path / "buyer.seed")
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(buyer_keys.agent_id, 10_000, reason="example buyer")

    provider = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "provider.py"),
        "--url", exchange.nats_url, "--key", str(tmp_path / "provider.seed"), "--price", "2000",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert provider.stdout is not None
        ready = await asyncio.wait_for(provider.stdout.readline(), PROCESS_TIMEOUT_S)
        assert b"serving text.upper" in ready
        buyer = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "buyer.py"),
            "--url", exchange.nats_url, "--key", str(tmp_path / "buyer.seed"), "--text", "hi there",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(buyer.communicate(), PROCESS_TIMEOUT_S)
        assert buyer.returncode == 0, output
    finally:
        if provider.returncode is None:
            provider.terminate()
        await asyncio.wait_for(provider.wait(), PROCESS_TIMEOUT_S)
    text = output.decode()
    assert "delivered: {'text': 'HI THERE'}" in text
    assert "accepted: contract released, fee 100 mcr" in text
    watcher = await exchange.agent(provider_keys)
    assert (await watcher.balance()).available_millicredits == 2_000 - 100
    await exchange.check_invariants()
