"""Benchmark: ledger transfers per second through the wallet's public API, beside the raw limit.

Many concurrent callers (asyncio tasks) each submit one transfer at a time:

* ``transfers``: plain transfers between agent wallets;
* ``pairs``: a pending transfer (an escrow-style hold) and then its post, two
  calls in sequence per pair.

Each is run unbatched (one ``SqlLedger.create_transfers`` call, so one
transaction, per transfer) and batched (``BatchingLedger``: one writer, many
callers' transfers per transaction); call latencies are those of a closed
loop at saturation (each caller sends its next call when the last one is
answered, so a call waits for the group ahead of its own). In the same run
it measures the raw limit: the driver alone inserting the same transfer rows
into the same schema in one transaction (stdlib ``sqlite3`` for SQLite,
``asyncpg`` for PostgreSQL). Every run starts from a fresh database (SQLite: a temp file in
WAL mode with synchronous=NORMAL, as ``open_database`` configures it) and ends
with ``check_invariants``. Figures are medians over ``--runs`` runs.

    python bench/ledger.py                      # SQLite, readable text
    python bench/ledger.py --json               # one JSON object
    AGENTX_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python bench/ledger.py                  # PostgreSQL too, when the URL is set
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from wallet import (
    BATCHING_GROUP_SIZE_DEFAULT,
    AccountCode,
    AccountFlags,
    AccountResult,
    BatchingLedger,
    LedgerId,
    NewAccount,
    NewTransfer,
    SqlLedger,
    TransferCode,
    TransferFlags,
    TransferOutcome,
    TransferResult,
    check_invariants,
    open_database,
    upgrade_schema,
)
from wallet.database import async_database_url

POSTGRES_URL_VARIABLE = "AGENTX_TEST_POSTGRES_URL"
TARGET_SQLITE_BATCHED_TRANSFERS_PER_S = 20_000
ISSUANCE = "bench:issuance"
MINT_PER_WALLET = 10**12

CreateTransfers = Callable[[Sequence[NewTransfer]], Awaitable[list[TransferOutcome]]]
Scenario = Callable[[int], Sequence[NewTransfer]]


def wallet_id(index: int) -> str:
    return f"bench:wallet:{index:06d}"


def payment(transfer_id: str, debit: str, credit: str, /, **fields: Any) -> NewTransfer:
    return NewTransfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=fields.pop("amount", 1),
        ledger=LedgerId.CREDITS,
        code=TransferCode.TRANSFER,
        **fields,
    )


def plain_transfer(prefix: str, index: int, /, *, wallets: int) -> NewTransfer:
    """Transfer ``index`` moves 1 millicredit from wallet ``index mod wallets``
    to another wallet that changes every round, so concurrent callers share
    accounts."""
    assert wallets >= 2
    debit = index % wallets
    credit = (debit + 1 + (index // wallets) % (wallets - 1)) % wallets
    return payment(f"{prefix}:{index}", wallet_id(debit), wallet_id(credit))


def hold_then_post(prefix: str, index: int, /, *, wallets: int) -> list[NewTransfer]:
    """A pending transfer and the post of all of it: two calls, in this order."""
    transfer = plain_transfer(prefix, index, wallets=wallets)
    hold = payment(
        f"{transfer.id}:hold",
        transfer.debit_account_id,
        transfer.credit_account_id,
        flags=TransferFlags.PENDING,
        timeout_s=3600,
    )
    post = payment(
        f"{transfer.id}:post",
        transfer.debit_account_id,
        transfer.credit_account_id,
        flags=TransferFlags.POST_PENDING,
        pending_id=hold.id,
    )
    return [hold, post]


async def prepare(url: str, *, wallets: int) -> None:
    """Migrate, open the issuance account and the wallets, fund every wallet."""
    await upgrade_schema(url)
    engine = open_database(url)
    try:
        ledger = SqlLedger(engine)
        accounts = [NewAccount(ISSUANCE, LedgerId.CREDITS, AccountCode.ISSUANCE, AccountFlags.NONE)]
        accounts += [
            NewAccount(
                wallet_id(i),
                LedgerId.CREDITS,
                AccountCode.AGENT_WALLET,
                AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
            for i in range(wallets)
        ]
        outcomes = await ledger.create_accounts(accounts)
        assert all(outcome.result is AccountResult.OK for outcome in outcomes)
        mints = [
            NewTransfer(
                id=f"mint:{i}",
                debit_account_id=ISSUANCE,
                credit_account_id=wallet_id(i),
                amount=MINT_PER_WALLET,
                ledger=LedgerId.CREDITS,
                code=TransferCode.MINT,
            )
            for i in range(wallets)
        ]
        minted = await ledger.create_transfers(mints)
        assert all(outcome.result is TransferResult.OK for outcome in minted)
    finally:
        await engine.dispose()


async def drive(
    create: CreateTransfers, scenario: Scenario, *, count: int, callers: int
) -> tuple[float, list[float]]:
    """Seconds for ``callers`` tasks to play ``scenario`` for indexes 0..count-1,
    and every call's latency in seconds.

    Each index is a sequence of single-transfer calls made one after the
    other. Transfers are built when they are sent, as a server decodes
    requests, rather than all up front: a large prebuilt input would only
    slow Python's garbage collector down and measure the bench, not the ledger.
    """
    next_index = itertools.count()
    latencies_s: list[float] = []

    async def caller() -> None:
        while (index := next(next_index)) < count:
            for transfer in scenario(index):
                called = time.perf_counter()
                [outcome] = await create([transfer])
                latencies_s.append(time.perf_counter() - called)
                assert outcome.result is TransferResult.OK, outcome

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started, latencies_s


async def measure_scenarios(
    create: CreateTransfers, mode: str, *, count: int, arguments: argparse.Namespace
) -> dict[str, float]:
    """``{mode}_transfers_per_s`` over ``count`` transfers and ``{mode}_pairs_per_s``
    over ``count // 2`` pending→posted pairs (so as many transfers)."""
    wallets, callers = arguments.wallets, arguments.callers

    def single(index: int) -> list[NewTransfer]:
        return [plain_transfer(mode, index, wallets=wallets)]

    def pair(index: int) -> list[NewTransfer]:
        return hold_then_post(f"{mode}-pair", index, wallets=wallets)

    transfers_s, latencies_s = await drive(create, single, count=count, callers=callers)
    pairs_s, _ = await drive(create, pair, count=count // 2, callers=callers)
    latencies_s.sort()
    return {
        f"{mode}_transfers_per_s": count / transfers_s,
        f"{mode}_pairs_per_s": (count // 2) / pairs_s,
        # Closed loop at saturation: a call waits for the group before its own.
        f"{mode}_call_p50_ms": latencies_s[len(latencies_s) // 2] * 1000,
        f"{mode}_call_p99_ms": latencies_s[int(len(latencies_s) * 0.99)] * 1000,
    }


async def measure_ledger(url: str, arguments: argparse.Namespace) -> dict[str, float]:
    """One run's rates on a prepared database; ends with ``check_invariants``."""
    engine = open_database(url)
    figures: dict[str, float] = {}
    try:
        ledger = SqlLedger(engine)
        count = arguments.unbatched_transfers
        figures |= await measure_scenarios(
            ledger.create_transfers, "unbatched", count=count, arguments=arguments
        )
        async with BatchingLedger(ledger, group_size_max=arguments.group_size) as batching:
            count = arguments.transfers
            figures |= await measure_scenarios(
                batching.create_transfers, "batched", count=count, arguments=arguments
            )
        await check_invariants(engine)
    finally:
        await engine.dispose()
    return figures


def transfer_rows(count: int, *, wallets: int) -> list[tuple[Any, ...]]:
    """The rows the ledger writes for ``count`` plain transfers."""
    start_us = time.time_ns() // 1000
    return [
        (
            t.id,
            t.debit_account_id,
            t.credit_account_id,
            t.amount,
            int(t.ledger),
            int(t.code),
            int(t.flags),
            None,
            0,
            "",
            start_us + index,
        )
        for index, t in enumerate(plain_transfer("raw", i, wallets=wallets) for i in range(count))
    ]


_INSERT_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, ledger, code, flags, "
    "pending_id, timeout_s, user_data, timestamp_us"
)


def raw_sqlite_rows_per_s(path: Path, *, count: int, wallets: int) -> float:
    """stdlib sqlite3 inserting ``count`` transfer rows in one transaction."""
    rows = transfer_rows(count, wallets=wallets)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO ledger_transfers ({_INSERT_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


async def raw_postgres_rows_per_s(url: str, *, count: int, wallets: int) -> float:
    """asyncpg inserting ``count`` transfer rows in one transaction."""
    rows = transfer_rows(count, wallets=wallets)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.executemany(
                f"INSERT INTO ledger_transfers ({_INSERT_COLUMNS}) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                rows,
            )
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_sqlite() -> AsyncIterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder:
        path = Path(folder) / "ledger.sqlite3"
        yield f"sqlite+aiosqlite:///{path}", path


@asynccontextmanager
async def fresh_postgres(admin_url: str) -> AsyncIterator[str]:
    admin_url = async_database_url(admin_url)
    name = f"agentx_ledger_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def run_sqlite(arguments: argparse.Namespace) -> dict[str, float]:
    async with fresh_sqlite() as (url, _path):
        await prepare(url, wallets=arguments.wallets)
        figures = await measure_ledger(url, arguments)
    async with fresh_sqlite() as (url, path):
        await prepare(url, wallets=arguments.wallets)
        figures["raw_rows_per_s"] = raw_sqlite_rows_per_s(
            path, count=arguments.transfers, wallets=arguments.wallets
        )
    return figures


async def run_postgres(arguments: argparse.Namespace, admin_url: str) -> dict[str, float]:
    async with fresh_postgres(admin_url) as url:
        await prepare(url, wallets=arguments.wallets)
        figures = await measure_ledger(url, arguments)
    async with fresh_postgres(admin_url) as url:
        await prepare(url, wallets=arguments.wallets)
        figures["raw_rows_per_s"] = await raw_postgres_rows_per_s(
            url, count=arguments.transfers, wallets=arguments.wallets
        )
    return figures


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Medians over the runs, the ratios to the raw limit, and every run's figures."""
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    raw = medians["raw_rows_per_s"]
    return {
        **{name: round(value, 1) for name, value in medians.items()},
        "batched_ratio_to_raw": round(medians["batched_transfers_per_s"] / raw, 4),
        # A pair writes two transfer rows.
        "batched_pairs_ratio_to_raw": round(2 * medians["batched_pairs_per_s"] / raw, 4),
        "unbatched_ratio_to_raw": round(medians["unbatched_transfers_per_s"] / raw, 4),
        "batching_speedup": round(
            medians["batched_transfers_per_s"] / medians["unbatched_transfers_per_s"], 1
        ),
        "runs": [{name: round(value, 1) for name, value in run.items()} for run in runs],
    }


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "callers": arguments.callers,
        "wallets": arguments.wallets,
        "transfers": arguments.transfers,
        "unbatched_transfers": arguments.unbatched_transfers,
        "group_size_max": arguments.group_size,
    }
    sqlite_runs = [await run_sqlite(arguments) for _ in range(arguments.runs)]
    result["sqlite"] = summarise(sqlite_runs)
    result["sqlite"]["target_transfers_per_s"] = TARGET_SQLITE_BATCHED_TRANSFERS_PER_S
    result["sqlite"]["target_met"] = (
        result["sqlite"]["batched_transfers_per_s"] >= TARGET_SQLITE_BATCHED_TRANSFERS_PER_S
    )
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if admin_url:
        postgres_runs = [await run_postgres(arguments, admin_url) for _ in range(arguments.runs)]
        result["postgres"] = summarise(postgres_runs)
    else:
        result["postgres"] = f"skipped: {POSTGRES_URL_VARIABLE} is not set"
    return result


_TEXT_ROWS = (
    ("raw limit (driver alone, one transaction)", "raw_rows_per_s", "rows/s", None),
    ("batched transfers", "batched_transfers_per_s", "/s", "batched_ratio_to_raw"),
    ("batched pending→posted pairs", "batched_pairs_per_s", "/s", "batched_pairs_ratio_to_raw"),
    ("batched call latency p50", "batched_call_p50_ms", "ms", None),
    ("batched call latency p99", "batched_call_p99_ms", "ms", None),
    ("unbatched transfers", "unbatched_transfers_per_s", "/s", "unbatched_ratio_to_raw"),
    ("unbatched pending→posted pairs", "unbatched_pairs_per_s", "/s", None),
    ("unbatched call latency p50", "unbatched_call_p50_ms", "ms", None),
    ("unbatched call latency p99", "unbatched_call_p99_ms", "ms", None),
)


def print_text(result: dict[str, Any]) -> None:
    print(
        f"{result['callers']} callers, {result['wallets']} wallets, "
        f"{result['transfers']} batched and {result['unbatched_transfers']} unbatched "
        f"transfers per scenario, groups of at most {result['group_size_max']}"
    )
    for database in ("sqlite", "postgres"):
        figures = result[database]
        if isinstance(figures, str):
            print(f"{database}: {figures}")
            continue
        print(f"{database} (medians of {len(figures['runs'])} runs):")
        for label, name, unit, ratio in _TEXT_ROWS:
            line = f"  {label:<42} {figures[name]:>10,.0f} {unit:<6}"
            if ratio is not None:
                line += f" ratio to raw {figures[ratio]:.3f}"
            print(line.rstrip())
        print(f"  {'batched / unbatched':<42} {figures['batching_speedup']:>10.1f} ×")
        if "target_met" in figures:
            verdict = "met" if figures["target_met"] else "NOT met"
            print(f"  target {figures['target_transfers_per_s']:,} transfers/s: {verdict}")
    print("ledger invariants held after every run")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--callers", type=int, default=4096, help="concurrent callers")
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--transfers", type=int, default=40_000, help="per batched scenario")
    parser.add_argument("--unbatched-transfers", type=int, default=2_000)
    parser.add_argument(
        "--group-size", type=int, default=BATCHING_GROUP_SIZE_DEFAULT, help="transfers per group"
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = asyncio.run(main_async(arguments))
    if arguments.json:
        print(json.dumps(result))
    else:
        print_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
