"""Benchmark: subscription renewals by the timers and digital goods sales, beside their limits.

The two new ways agents sell (issue 14), against one exchange per run:
nats-server (auth on) and the exchange worker started from this process
(``EmbeddedStack``), on SQLite (a fresh file) or PostgreSQL (a fresh
database, ``--database postgres``).

* Renewals: ``--subscriptions`` subscriptions are made over NATS: PROVIDERS
  providers each advertise a capability and publish PLANS_PER_PROVIDER
  monthly plans, and funded buyers subscribe (a buyer holds one live
  subscription per plan, so each buyer takes every plan, and there are as
  many buyers as that needs). Every first period is charged then. The
  agents disconnect, and the worker's clock is moved past the last period's
  end (as ``TimeTravel`` does in tests/exchange/test_subscriptions.py); the
  timed part is the worker's own timer, ``subscriptions.sweep()``, called
  pass after pass (each takes at most SWEEP_BATCH_MAX) until one finds none
  due, and the renewals' notices sent (on core NATS). The worker's
  background timers are put to sleep for the run (TIMERS_ASLEEP_S), so
  these passes are the only ones. Renewals per second, and CPU per renewal
  of this process (the exchange alone: no agent is connected then;
  PostgreSQL's own processes are not counted) and of nats-server. Then
  every subscription must be active with exactly two periods charged
  (``subscriptions_renewed_once``).
* Purchases: one provider publishes an ARTIFACT_BYTES item; ``--buyers``
  funded buyers (Agents in this process) each buy it once, at most
  PURCHASES_IN_FLIGHT at a time, getting the licence and the artifact
  decrypted with their own key. Purchases per second, latency p50/p99, and
  CPU per purchase of this process (the exchange and the buyers together)
  and of nats-server. Every buyer must have paid and got the artifact byte
  for byte (``every_buyer_got_the_artifact``).

Raw limits measured in the same run:

* ``ledger_chains_per_s``: the wallet alone applying the same money chain as
  a renewal (escrow hold, post, net payout and fee, ``Escrow.charge``), one
  ``SqlLedger`` transaction per chain, one after another as the sweep
  applies renewals, on a fresh database of the same kind;
* ``ed25519_sign_verify_per_s``: one signature and one verification, each
  rate measured alone (pynacl, ``deals.sign_and_verify_rates``);
* ``sealed_box_seal_open_per_s``: one libsodium sealed box sealed and opened
  (a goods content key, keys converted as agent_client/sealing.py does).

The exchange invariants (``check_exchange_invariants``) are checked after
each part while the exchange runs, and on its database once it has stopped
(``ledger_balanced``); the benchmark exits 1 if a check fails. ``--runs K``
repeats everything with a fresh exchange and database and prints medians and
the key figures of each run. Prints text, or one JSON object with ``--json``.

    python bench/sales.py [--database sqlite|postgres] [--database-url URL]
                          [--subscriptions 500] [--buyers 200] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nacl.public
import sqlalchemy as sa
from benchmark_main import run_benchmark
from deals import sign_and_verify_rates
from exchange_process import ledger_problems, nats_server_pid, percentiles
from ledger import POSTGRES_URL_VARIABLE, fresh_postgres, fresh_sqlite, prepare, wallet_id
from metered import CpuMeter, print_text
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient
from agent_client import limits as protocol_limits
from agent_client.keys import verify_key_for
from agent_client.protocol import PlanView, SubscriptionState, SubscriptionView
from agent_client.signing import SystemClock
from escrow import Escrow, HoldOrder, Settlement, SettleOrder, settlement_for
from exchange import EmbeddedStack, ExchangeWorker, StackConfig
from exchange.adapters.exchange_tables import subscriptions
from exchange.limits import SWEEP_BATCH_MAX
from exchange.use_cases.exchange_accounts import ensure_platform_accounts
from wallet import FeeSchedule, SqlLedger, check_invariants, open_database

SUBSCRIPTION_CAPABILITY = "bench.sales.subscribed"
GOODS_CAPABILITY = "bench.sales.goods"
GOODS_SLUG = "bench-artifact"
PROVIDERS = 5
PLANS_PER_PROVIDER = 4
PLANS = PROVIDERS * PLANS_PER_PROVIDER
PLAN_PRICE_MILLICREDITS = 1_000
PLAN_PERIOD_S = 3_600
# Each subscription is charged twice: when made, and once by the timers.
PERIODS_CHARGED = 2
GOODS_PRICE_MILLICREDITS = 10_000
ARTIFACT_BYTES = 4 * 1024
SUBSCRIPTIONS_DEFAULT, SUBSCRIPTIONS_MAX = 500, 10_000
BUYERS_DEFAULT, BUYERS_MAX = 200, 2_000
RUNS_DEFAULT, RUNS_MAX = 3, 20
# Agents connecting, plans published, subscriptions and mints made at once.
SETUP_IN_FLIGHT = 16
PURCHASES_IN_FLIGHT = 32
# Passes beyond the ones the subscriptions fill: the pass that finds none due.
SWEEP_PASSES_SPARE = 2
NOTICE_WAITS_MAX = 100
# The worker's own timers wake this rarely, that is not during a run: the
# timed sweep passes are then the only ones, and nothing else is swept with
# the moved clock.
TIMERS_ASLEEP_S = 24 * 3600.0
# Each part must end within this (a lost reply would otherwise hang the run).
PHASE_TIMEOUT_S = 600.0
# Raw limits: wallets the ledger's chains move between, and how long (and at
# most how many times) the sealed box is probed.
RAW_LEDGER_WALLETS = 100
RAW_PROBE_S = 1.0
RAW_PROBE_CALLS_MAX = 1_000_000
AGENT_OPTIONS = AgentOptions(close_grace_s=0.2)
KEY_FIGURES = (
    "renewals_per_s",
    "ledger_chains_per_s",
    "cpu_us_per_renewal_exchange",
    "purchases_per_s",
    "purchase_p50_ms",
    "purchase_p99_ms",
    "ed25519_sign_verify_per_s",
    "sealed_box_seal_open_per_s",
)

assert PLANS_PER_PROVIDER <= protocol_limits.PLANS_PER_PROVIDER_MAX
assert protocol_limits.SUBSCRIPTION_PERIOD_MIN_S <= PLAN_PERIOD_S
assert ARTIFACT_BYTES <= protocol_limits.GOODS_ARTIFACT_BYTES_MAX
assert PURCHASES_IN_FLIGHT <= BUYERS_MAX
# A buyer's subscribing and a mint are one request at a time per agent.
assert SETUP_IN_FLIGHT <= 64
# The timers must not wake during a run (bounded by PHASE_TIMEOUT_S per part).
assert TIMERS_ASLEEP_S > 4 * PHASE_TIMEOUT_S

Result = TypeVar("Result")


# --- the raw limits ---------------------------------------------------------------------


def sealed_box_seal_open_per_s() -> float:
    """Sealed boxes of a 32-byte content key sealed and opened per second, this thread."""
    keys = AgentKeys.generate()
    verify_key = verify_key_for(keys.agent_id)
    assert verify_key is not None
    recipient = nacl.public.PublicKey(bytes(verify_key.to_curve25519_public_key()))
    sealer = nacl.public.SealedBox(recipient)
    opener = nacl.public.SealedBox(keys.box_private_key())
    content_key = os.urandom(protocol_limits.GOODS_CONTENT_KEY_BYTES)
    count, started = 0, time.perf_counter()
    while count < RAW_PROBE_CALLS_MAX and time.perf_counter() - started < RAW_PROBE_S:
        assert opener.decrypt(sealer.encrypt(content_key)) == content_key
        count += 1
    return count / (time.perf_counter() - started)


def crypto_limits() -> dict[str, float]:
    sign_per_s, verify_per_s = sign_and_verify_rates()
    return {
        "ed25519_sign_per_s": sign_per_s,
        "ed25519_verify_per_s": verify_per_s,
        # One sign and one verify, one after the other on one core.
        "ed25519_sign_verify_per_s": 1 / (1 / sign_per_s + 1 / verify_per_s),
        "sealed_box_seal_open_per_s": sealed_box_seal_open_per_s(),
    }


def renewal_orders(index: int, settlement: Settlement, /) -> tuple[HoldOrder, SettleOrder]:
    """A renewal's money between two of the prepared wallets: hold, then post and pay out."""
    charge_id = f"bench-renewal-{index}"
    buyer = wallet_id(index % RAW_LEDGER_WALLETS)
    provider = wallet_id((index + 1) % RAW_LEDGER_WALLETS)
    return (
        HoldOrder(charge_id, buyer, settlement.price_millicredits),
        SettleOrder(charge_id, buyer, provider, settlement),
    )


async def ledger_chains_per_s(database_url: str, count: int, /) -> float:
    """The wallet alone: ``count`` renewal chains, a transaction each, one after another."""
    await prepare(database_url, wallets=RAW_LEDGER_WALLETS)
    engine = open_database(database_url)
    try:
        ledger = SqlLedger(engine)
        await ensure_platform_accounts(ledger)
        escrow = Escrow(ledger)
        settlement = settlement_for(
            PLAN_PRICE_MILLICREDITS,
            provider_share_millicredits=PLAN_PRICE_MILLICREDITS,
            fee_rate_bps=FeeSchedule().subscription_bps,
        )
        started = time.perf_counter()
        for index in range(count):
            # connection=None: the ledger runs the chain in a transaction of its own.
            await escrow.charge(*renewal_orders(index, settlement), connection=None)
        elapsed_s = time.perf_counter() - started
        await check_invariants(engine)
    finally:
        await engine.dispose()
    return count / elapsed_s


# --- agents -------------------------------------------------------------------------------


async def bounded_gather(
    calls: Sequence[Callable[[], Awaitable[Result]]], /, *, in_flight: int
) -> list[Result]:
    """Every call's result, in order, with at most ``in_flight`` running at once."""
    gate = asyncio.Semaphore(in_flight)

    async def gated(call: Callable[[], Awaitable[Result]]) -> Result:
        async with gate:
            return await call()

    return await asyncio.gather(*(gated(call) for call in calls))


@contextlib.asynccontextmanager
async def connected_agents(nats_url: str, count: int, /) -> AsyncIterator[list[Agent]]:
    """``count`` agents with new keys, connected; all closed on exit."""
    agents: list[Agent] = []

    async def connect() -> None:
        agents.append(await Agent.connect(nats_url, AgentKeys.generate(), options=AGENT_OPTIONS))

    try:
        await bounded_gather([connect] * count, in_flight=SETUP_IN_FLIGHT)
        yield agents
    finally:
        await asyncio.gather(*(agent.close() for agent in agents))


async def mint_each(stack: EmbeddedStack, amounts: dict[str, int], /) -> None:
    """The operator mints each agent its amount."""
    operator = await Agent.connect(stack.nats_url, stack.operator_keys, options=AGENT_OPTIONS)
    try:
        minting = OperatorClient(operator)

        def mint(agent_id: str, amount: int) -> Callable[[], Awaitable[object]]:
            return lambda: minting.mint(agent_id, amount, reason="bench")

        calls = [mint(agent_id, amount) for agent_id, amount in amounts.items()]
        await bounded_gather(calls, in_flight=SETUP_IN_FLIGHT)
    finally:
        await operator.close()


# --- renewals ------------------------------------------------------------------------------


async def publish_plans(provider: Agent, /) -> list[PlanView]:
    await provider.advertise(
        SUBSCRIPTION_CAPABILITY,
        description="a benchmark's subscribed capability",
        price_millicredits=PLAN_PRICE_MILLICREDITS,
    )
    return [
        await provider.publish_plan(
            SUBSCRIPTION_CAPABILITY,
            f"monthly-{index}",
            price_millicredits=PLAN_PRICE_MILLICREDITS,
            period_s=PLAN_PERIOD_S,
        )
        for index in range(PLANS_PER_PROVIDER)
    ]


def plans_of_buyers(plans: list[PlanView], count: int, /) -> list[list[PlanView]]:
    """Subscription k is buyer k // PLANS's, on plan k % PLANS: one per plan per buyer."""
    return [plans[: min(PLANS, count - start)] for start in range(0, count, PLANS)]


async def subscribe(buyer: Agent, plans: list[PlanView], /) -> list[SubscriptionView]:
    """``buyer`` subscribes to each plan, one after another."""
    return [await buyer.subscribe(plan) for plan in plans]


async def subscribe_all(stack: EmbeddedStack, count: int, /) -> list[SubscriptionView]:
    """``count`` subscriptions, their first periods charged; every agent gone on return."""
    async with connected_agents(stack.nats_url, PROVIDERS) as providers:
        published = await bounded_gather(
            [functools.partial(publish_plans, provider) for provider in providers],
            in_flight=SETUP_IN_FLIGHT,
        )
        plans = [plan for provider_plans in published for plan in provider_plans]
        assert len(plans) == PLANS
        buyers_plans = plans_of_buyers(plans, count)
        async with connected_agents(stack.nats_url, len(buyers_plans)) as buyers:
            await mint_each(
                stack,
                {
                    buyer.agent_id: PERIODS_CHARGED * PLAN_PRICE_MILLICREDITS * len(buyer_plans)
                    for buyer, buyer_plans in zip(buyers, buyers_plans, strict=True)
                },
            )

            made = await bounded_gather(
                [
                    functools.partial(subscribe, buyer, buyer_plans)
                    for buyer, buyer_plans in zip(buyers, buyers_plans, strict=True)
                ],
                in_flight=SETUP_IN_FLIGHT,
            )
    views = [view for buyer_views in made for view in buyer_views]
    assert len(views) == count
    assert all(view.state is SubscriptionState.ACTIVE for view in views)
    assert all(view.periods_charged == 1 for view in views)
    return views


@dataclass(frozen=True, slots=True)
class ShiftedClock:
    """The real time moved ``shift_ms`` ahead: the worker's clock while its timers run later."""

    shift_ms: int

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.shift_ms


@contextlib.contextmanager
def worker_clock_from(worker: ExchangeWorker, at_ms: int, /) -> Iterator[None]:
    """The worker's clock reads ``at_ms`` now (and runs on) in the block; then the real one."""
    context = worker.context
    real = context.clock
    context.clock = ShiftedClock(max(0, at_ms - SystemClock().now_ms()))
    try:
        yield
    finally:
        context.clock = real


async def sweep_until_none_due(worker: ExchangeWorker, expected: int, /) -> int:
    """Sweep passes until one finds nothing due; how many timers they applied."""
    passes_max = math.ceil(expected / SWEEP_BATCH_MAX) + SWEEP_PASSES_SPARE
    applied = 0
    for _ in range(passes_max):
        applied_in_pass = await worker.subscriptions.sweep()
        if applied_in_pass == 0:
            return applied
        applied += applied_in_pass
    raise RuntimeError(f"timers still due after {passes_max} passes ({applied} applied)")


async def notices_published(worker: ExchangeWorker, /) -> None:
    """Wait for the notices the sweeps publish after each commit: a renewal's last step."""
    context = worker.context
    # ExchangeContext offers no public wait on them short of close(); a pass
    # of waiting can see tasks started meanwhile, hence the bounded loop.
    for _ in range(NOTICE_WAITS_MAX):
        if not context._publishing:
            return
        await asyncio.gather(*context._publishing)
    raise RuntimeError(f"notices still publishing after {NOTICE_WAITS_MAX} waits")


async def subscriptions_by_state(engine: AsyncEngine, /) -> dict[tuple[str, int], int]:
    """How many subscriptions are in each (state, periods charged)."""
    statement = sa.select(
        subscriptions.c.state, subscriptions.c.periods_charged, sa.func.count()
    ).group_by(subscriptions.c.state, subscriptions.c.periods_charged)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
    return {(str(state), int(periods)): int(count) for state, periods, count in rows}


async def renewals_part(stack: EmbeddedStack, count: int, /) -> dict[str, Any]:
    """Make ``count`` subscriptions, then time the timers renewing them all."""
    views = await subscribe_all(stack, count)
    due_at_ms = max(view.period_ends_at_ms for view in views)
    meter = CpuMeter({"exchange": os.getpid(), "nats_server": nats_server_pid(os.getpid())})
    meter.start()
    started = time.perf_counter()
    with worker_clock_from(stack.worker, due_at_ms):
        renewed = await sweep_until_none_due(stack.worker, count)
        await notices_published(stack.worker)
    elapsed_s = time.perf_counter() - started
    cpu = meter.per(renewed, "renewal")
    by_state = await subscriptions_by_state(stack.worker.engine)
    renewed_once = by_state == {(SubscriptionState.ACTIVE.value, PERIODS_CHARGED): count}
    if not renewed_once:
        print(f"subscriptions by (state, periods charged): {by_state}", file=sys.stderr)
    return {
        "renewals": renewed,
        "renewals_per_s": renewed / elapsed_s,
        **cpu,
        "subscriptions_renewed_once": renewed_once and renewed == count,
    }


# --- purchases -----------------------------------------------------------------------------


async def buy_all(
    buyers: list[Agent], item_id: str, artifact: bytes, /
) -> tuple[list[float], float, int]:
    """Each buyer buys once, PURCHASES_IN_FLIGHT at a time: latencies, seconds, and how
    many buyers did not pay and get the artifact byte for byte."""
    latencies_s: list[float] = []

    async def buy(buyer: Agent) -> bool:
        started = time.perf_counter()
        purchase = await buyer.buy_goods(item_id, price_millicredits=GOODS_PRICE_MILLICREDITS)
        latencies_s.append(time.perf_counter() - started)
        return purchase.charged and purchase.artifact == artifact

    started = time.perf_counter()
    got = await bounded_gather(
        [functools.partial(buy, buyer) for buyer in buyers], in_flight=PURCHASES_IN_FLIGHT
    )
    return latencies_s, time.perf_counter() - started, got.count(False)


async def purchases_part(stack: EmbeddedStack, buyers_count: int, /) -> dict[str, Any]:
    """One provider publishes an item; ``buyers_count`` funded buyers buy it, timed."""
    artifact = os.urandom(ARTIFACT_BYTES)
    async with connected_agents(stack.nats_url, 1) as (provider,):
        item = await provider.publish_goods(
            GOODS_SLUG,
            artifact,
            title="A benchmark's artifact",
            capability=GOODS_CAPABILITY,
            price_millicredits=GOODS_PRICE_MILLICREDITS,
        )
        async with connected_agents(stack.nats_url, buyers_count) as buyers:
            await mint_each(stack, {buyer.agent_id: GOODS_PRICE_MILLICREDITS for buyer in buyers})
            meter = CpuMeter(
                {"exchange_and_agents": os.getpid(), "nats_server": nats_server_pid(os.getpid())}
            )
            meter.start()
            latencies_s, elapsed_s, without_artifact = await buy_all(buyers, item.item_id, artifact)
            cpu = meter.per(len(latencies_s), "purchase")
    if without_artifact:
        print(f"{without_artifact} buyers did not get the artifact", file=sys.stderr)
    latency = percentiles(latencies_s)
    return {
        "purchases": len(latencies_s),
        "purchases_per_s": len(latencies_s) / elapsed_s,
        "purchase_p50_ms": latency["p50_ms"],
        "purchase_p99_ms": latency["p99_ms"],
        **cpu,
        "every_buyer_got_the_artifact": without_artifact == 0,
    }


# --- runs, output --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database(arguments: argparse.Namespace) -> AsyncIterator[str]:
    """The URL of a new, empty database of the chosen kind, dropped (or deleted) on exit."""
    if arguments.database == "postgres":
        async with fresh_postgres(arguments.database_url) as url:
            yield url
    else:
        async with fresh_sqlite() as (url, _path):
            yield url


async def checked(part: Awaitable[dict[str, Any]], database_url: str, name: str) -> dict[str, Any]:
    """A part's figures (within PHASE_TIMEOUT_S), and whether the invariants held after it."""
    figures = await asyncio.wait_for(part, PHASE_TIMEOUT_S)
    problems = await ledger_problems(database_url)
    for problem in problems:
        print(f"after the {name}: ledger invariant violated: {problem}", file=sys.stderr)
    figures[f"ledger_balanced_after_{name}"] = not problems
    return figures


async def measure_once(arguments: argparse.Namespace) -> dict[str, Any]:
    """The raw limits, then a fresh exchange for the renewals and the purchases."""
    figures: dict[str, Any] = crypto_limits()
    async with fresh_database(arguments) as database_url:
        figures["ledger_chains_per_s"] = await ledger_chains_per_s(
            database_url, arguments.subscriptions
        )
    async with fresh_database(arguments) as database_url:
        with tempfile.TemporaryDirectory(prefix="agentx-bench-sales-") as data_dir:
            config = StackConfig(
                data_dir=Path(data_dir), database_url=database_url, sweep_interval_s=TIMERS_ASLEEP_S
            )
            async with EmbeddedStack(config) as stack:
                renewals = renewals_part(stack, arguments.subscriptions)
                figures.update(await checked(renewals, database_url, "renewals"))
                purchases = purchases_part(stack, arguments.buyers)
                figures.update(await checked(purchases, database_url, "purchases"))
        # The exchange has stopped: check what it left in its database.
        problems = await ledger_problems(database_url)
    for problem in problems:
        print(f"ledger invariant violated: {problem}", file=sys.stderr)
    figures["ledger_balanced"] = not problems
    figures["renewals_ratio_to_ledger_chains"] = (
        figures["renewals_per_s"] / figures["ledger_chains_per_s"]
    )
    return figures


def summarize(arguments: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric figure over the runs, and the key ones per run."""
    summary: dict[str, Any] = {
        "database": arguments.database,
        "subscriptions": arguments.subscriptions,
        "buyers": arguments.buyers,
        "purchases_in_flight": PURCHASES_IN_FLIGHT,
        "artifact_bytes": ARTIFACT_BYTES,
        "cores": os.cpu_count(),
        "runs_count": len(runs),
    }
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        if isinstance(first, bool):
            summary[name] = all(values)
        elif isinstance(first, int | float):
            summary[name] = statistics.median(values)
    summary["runs"] = [{name: run[name] for name in KEY_FIGURES} for run in runs]
    return summary


def passed(summary: dict[str, Any], /) -> bool:
    checks = [value for name, value in summary.items() if isinstance(value, bool)]
    return all(checks)


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = [await measure_once(arguments) for _ in range(arguments.runs)]
    return summarize(arguments, runs)


def parse_arguments() -> argparse.Namespace | str:
    """The arguments, or what is wrong with them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(POSTGRES_URL_VARIABLE),
        help=f"PostgreSQL server to make fresh databases on (default ${POSTGRES_URL_VARIABLE})",
    )
    parser.add_argument("--subscriptions", type=int, default=SUBSCRIPTIONS_DEFAULT)
    parser.add_argument("--buyers", type=int, default=BUYERS_DEFAULT)
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="fresh exchange each run")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if arguments.database == "postgres" and not arguments.database_url:
        return f"--database postgres needs --database-url or ${POSTGRES_URL_VARIABLE}"
    if not 1 <= arguments.subscriptions <= SUBSCRIPTIONS_MAX:
        return f"--subscriptions 1..{SUBSCRIPTIONS_MAX:,}"
    if not 1 <= arguments.buyers <= BUYERS_MAX:
        return f"--buyers 1..{BUYERS_MAX:,}"
    if not 1 <= arguments.runs <= RUNS_MAX:
        return f"--runs 1..{RUNS_MAX}"
    return arguments


def main() -> int:
    return run_benchmark(parse_arguments, main_async, print_text, passed=passed)


if __name__ == "__main__":
    raise SystemExit(main())
