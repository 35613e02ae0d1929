"""The ``agentx`` command as a user runs it: keys, demo, and its refusals.

Runs the real CLI (in-process through ``main`` and as a subprocess) on the
embedded stack: the demo settles every deal with balanced books and exits 0,
and tells a negotiation with counter-offers that settles;
bad options exit 2 with a message; ``keys new`` writes a 0600 seed and
prints an agent id that the seed reproduces.
"""

from __future__ import annotations

import gc
import stat
import subprocess
import sys

from agent_client import AgentKeys, is_agent_id
from exchange.entrypoints.cli import freeze_startup_objects, main
from exchange.entrypoints.demo import DemoOptions, run_demo


async def test_the_demo_settles_every_deal_with_balanced_books(tmp_path):
    lines: list[str] = []
    succeeded = await run_demo(
        DemoOptions(agents=5, deals=6, data_dir=tmp_path, concurrency=3), say=lines.append
    )
    assert succeeded, "\n".join(lines)
    assert "6 of 6 deals settled" in lines
    assert any(line.startswith("ledger invariants: OK") for line in lines)
    assert sum(line.startswith("deal ") and "escrow locked" in line for line in lines) == 6
    # Two providers compete for a capability, so some RFQ got two quotes.
    assert any(line.count(" cr") == 2 and "quotes:" in line for line in lines)


async def test_the_demo_tells_a_negotiation_with_counter_offers_that_settles(tmp_path):
    lines: list[str] = []
    assert await run_demo(DemoOptions(agents=2, deals=1, data_dir=tmp_path), say=lines.append)
    story = [line for line in lines if line.startswith("negotiation:")]
    assert any("makes a counter-offer" in line for line in story), "\n".join(story)
    assert any("agreed at" in line and "counter-offer" in line for line in story)
    assert any("released" in line for line in story)
    assert not any("FAILED" in line for line in story)


async def test_the_demo_tells_a_refund_and_a_dispute_resolved_by_split(tmp_path):
    lines: list[str] = []
    assert await run_demo(DemoOptions(agents=2, deals=1, data_dir=tmp_path), say=lines.append)
    refund = [line for line in lines if line.startswith("refund scenario:")]
    assert any("missed the delivery deadline" in line and "refunded" in line for line in refund)
    dispute = [line for line in lines if line.startswith("dispute scenario:")]
    assert any("dispute opened" in line for line in dispute)
    assert any("resolved by split" in line for line in dispute), "\n".join(dispute)
    (verdict,) = [line for line in lines if line.startswith("scenarios: ")]
    for scenario in ("negotiation", "refund", "dispute", "metered", "subscription", "goods"):
        assert f"{scenario} OK" in verdict, verdict
    assert "FAILED" not in verdict
    subscription = [line for line in lines if line.startswith("subscription scenario:")]
    assert any("checked the buyer's token offline" in line for line in subscription)
    assert any("the exchange charged period 1" in line for line in subscription)
    metered = [line for line in lines if line.startswith("metered scenario:")]
    assert any("tokens claimed" in line for line in metered), "\n".join(metered)
    assert any("released" in line and "to the buyer" in line for line in metered)


def test_agentx_demo_runs_as_a_command_and_exits_zero(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.entrypoints.cli", "demo", "--agents", "2", "--deals", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = [line.split() for line in completed.stdout.splitlines()]
    assert ["deals", "settled", "2", "of", "2"] in rows
    assert ["ledger", "invariants", "OK"] in rows and ["demo", "OK"] in rows
    assert "\x1b" not in completed.stdout


def test_demo_options_out_of_range_exit_with_usage_error(capsys):
    assert main(["demo", "--agents", "1"]) == 2
    assert "--agents must be between" in capsys.readouterr().err
    assert main(["demo", "--deals", "0"]) == 2


def test_keys_new_writes_a_private_seed_and_prints_its_id(tmp_path, capsys):
    seed_path = tmp_path / "agent.seed"
    assert main(["keys", "new", "--out", str(seed_path)]) == 0
    printed_id = capsys.readouterr().out.strip()
    assert is_agent_id(printed_id)
    assert stat.S_IMODE(seed_path.stat().st_mode) == 0o600
    assert AgentKeys.load(seed_path).agent_id == printed_id


def test_keys_new_refuses_to_overwrite_a_seed(tmp_path, capsys):
    seed_path = tmp_path / "agent.seed"
    AgentKeys.generate().save(seed_path)
    assert main(["keys", "new", "--out", str(seed_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_a_started_process_keeps_its_startup_objects_out_of_full_collections():
    # `agentx up` and `agentx worker` call this once they are serving.
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        freeze_startup_objects()
        assert gc.get_freeze_count() > 1_000
    finally:
        gc.unfreeze()
