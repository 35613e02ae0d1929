"""The batching writer keeps every guarantee of unbatched calls, on SQLite and PostgreSQL.

``BatchingLedger`` applies many callers' batches in one transaction. These
tests drive it with real concurrent callers against a real database and
prove, each by name: concurrent callers sharing accounts never overdraw and
each gets exactly the outcomes a one-by-one replay of the groups gives; an id
used twice in one group, or again in a later group, gets its first outcome; a
failing or open linked chain fails only its own caller; a full queue makes
callers wait for room in arrival order, and beyond the bound on waiting calls
refuses at once; at the writer's timeout a call not yet taken into a group is
refused (``LedgerOverloaded``) and never applied, while a call whose group is
running gets ``LedgerTimeout`` and learns its outcome by retrying;
``close()`` drains the queue and refuses what was not accepted; a database
refusal fails only the caller whose batch caused it; an unavailable database
fails the group's callers and the writer goes on; a call with a connection
joins the caller's transaction. Crash safety is proven three ways: callers
cancelled between the commit and the replies, a writer killed right after the
commit, and a real process ended with ``os._exit`` right after the commit; in
each, retries with the same ids (through a new engine, as after a restart)
return exactly the committed outcomes, marked ``replayed``.

Groups are lined up deterministically with ``RecordingLedger``: a first call
is held at a gate inside the writer while the calls under test queue behind
it, so they form the next group together, which the test asserts. Every test
ends with ``check_invariants`` (an autouse fixture).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.batching_crash_child import CRASH_EXIT_CODE
from tests.wallet.batching_helpers import WAIT_S, RecordingLedger, crash_group_calls
from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    ISSUANCE,
    balance_of,
    mint,
    mint_into,
    open_accounts,
    payment,
)
from tests.wallet.memory_ledger import MemoryLedger
from wallet import (
    BATCH_SIZE_MAX,
    BatchingLedger,
    LedgerClosed,
    LedgerOverloaded,
    LedgerRejected,
    LedgerTimeout,
    LedgerUnavailable,
    NewTransfer,
    SqlLedger,
    TransferFlags,
    TransferOutcome,
    TransferResult,
    ValueOutOfRange,
    WriterState,
    check_invariants,
    open_database,
)
from wallet.limits import BATCHING_CALL_TIMEOUT_S_MAX, BATCHING_WAITING_CALLS_MAX

R = TransferResult
F = TransferFlags
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recording(database_engine: AsyncEngine) -> RecordingLedger:
    return RecordingLedger(database_engine)


@pytest.fixture
async def batching(recording: RecordingLedger) -> AsyncIterator[BatchingLedger]:
    writer = BatchingLedger(recording, group_size_max=64)
    await writer.start()
    try:
        yield writer
    finally:
        # Open any gate a failing test left closed, so that closing can drain.
        for gate in (recording.before_gate, recording.after_gate):
            if gate is not None:
                gate.set()
        await writer.close(timeout_s=WAIT_S)


@pytest.fixture(autouse=True)
async def invariants_hold_after_every_test(
    database_engine: AsyncEngine,
) -> AsyncIterator[None]:
    yield
    await check_invariants(database_engine)


@pytest.fixture
async def funded(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    for account_id in (ALICE, BOB, CAROL):
        await mint_into(ledger, account_id, 1000, key=account_id)


async def line_up(
    batching: BatchingLedger, recording: RecordingLedger, calls: Sequence[Sequence[NewTransfer]]
) -> list[asyncio.Task[list[TransferOutcome]]]:
    """Start ``calls`` so that they form one group: a first call is held in the
    writer while they queue behind it. The gate is left closed; open it with
    ``recording.before_gate.set()``."""
    recording.before_gate = asyncio.Event()
    recording.entered.clear()
    blocker = asyncio.create_task(batching.create_transfers([mint("blocker", BOB, 1)]))
    async with asyncio.timeout(WAIT_S):
        await recording.entered.wait()
    tasks = [asyncio.create_task(batching.create_transfers(call)) for call in calls]
    # Each task queues its call in its first step, and all of them run before
    # this one resumes.
    await asyncio.sleep(0)
    assert batching.queued_transfers == sum(len(call) for call in calls)
    tasks.insert(0, blocker)
    return tasks


async def release(
    recording: RecordingLedger, tasks: list[asyncio.Task[list[TransferOutcome]]]
) -> list[list[TransferOutcome]]:
    """Open the gate and collect the lined-up calls' outcomes (without the blocker's)."""
    assert recording.before_gate is not None
    recording.before_gate.set()
    async with asyncio.timeout(WAIT_S):
        outcomes = await asyncio.gather(*tasks)
    assert [o.result for o in outcomes[0]] == [R.OK], "the blocker"
    return outcomes[1:]


def results(outcomes: Sequence[TransferOutcome]) -> list[tuple[R, bool]]:
    return [(outcome.result, outcome.replayed) for outcome in outcomes]


async def test_concurrent_callers_sharing_accounts_never_overdraw_and_each_get_their_own_outcomes(
    funded: None, batching: BatchingLedger, recording: RecordingLedger, ledger: SqlLedger
) -> None:
    agents = (ALICE, BOB, CAROL)
    # ALICE pays in two calls of three, 70..109 millicredits each: far more
    # than her 1,000 and what she is paid, so many of her spends must fail.
    payers = (ALICE, ALICE, BOB, ALICE, ALICE, CAROL)
    payees = (BOB, CAROL, CAROL, CAROL, BOB, ALICE)
    calls = [[payment(f"pay-{i}", payers[i % 6], payees[i % 6], 70 + i % 40)] for i in range(300)]
    answered = await asyncio.gather(*(batching.create_transfers(call) for call in calls))

    # Every caller got outcomes for its own transfers, and only those.
    for call, outcomes in zip(calls, answered, strict=True):
        assert [o.id for o in outcomes] == [t.id for t in call]
    assert {o.result for outcomes in answered for o in outcomes} <= {R.OK, R.EXCEEDS_CREDITS}
    assert R.EXCEEDS_CREDITS in {o.result for outcomes in answered for o in outcomes}
    # Groups held many callers each.
    assert len(recording.groups) > 1
    assert max(len(group) for group in recording.groups) > 1
    # The oracle: the groups' batches applied one by one by the pure core,
    # in the order the writer applied them, decide exactly the same.
    memory = MemoryLedger()
    memory.submit([mint(f"mint:{a}", a, 1000) for a in agents])
    expected = {
        o.id: (o.result, o.replayed)
        for group in recording.groups
        for batch in group
        for o in memory.submit(batch).outcomes
    }
    assert {o.id: (o.result, o.replayed) for outcomes in answered for o in outcomes} == expected
    for agent in agents:
        balance = await balance_of(ledger, agent)
        assert balance.available >= 0
        assert balance == memory.accounts[agent]


async def test_two_writers_on_two_engines_never_overdraw_and_agree_on_every_outcome(
    funded: None, ledger: SqlLedger, database_url: str
) -> None:
    """Two exchange workers, each with its own engine and writer, race on the
    same accounts: their groups are transactions that lock like any other."""
    agents = (ALICE, BOB, CAROL)
    payers = (ALICE, ALICE, BOB, ALICE, ALICE, CAROL)
    payees = (BOB, CAROL, CAROL, CAROL, BOB, ALICE)
    calls = [[payment(f"race-{i}", payers[i % 6], payees[i % 6], 70 + i % 40)] for i in range(400)]
    engines = [open_database(database_url) for _ in range(2)]
    try:
        writers = [BatchingLedger(SqlLedger(engine), group_size_max=32) for engine in engines]
        for writer in writers:
            await writer.start()
        answered = await asyncio.gather(
            *(writers[i % 2].create_transfers(call) for i, call in enumerate(calls))
        )
        for writer in writers:
            await writer.close()
    finally:
        for engine in engines:
            await engine.dispose()

    results_by_id = {o.id: o.result for outcomes in answered for o in outcomes}
    assert set(results_by_id.values()) == {R.OK, R.EXCEEDS_CREDITS}
    # The balances are exactly what the applied transfers moved.
    for agent in agents:
        paid = sum(
            c[0].amount
            for c in calls
            if c[0].debit_account_id == agent and results_by_id[c[0].id] is R.OK
        )
        received = sum(
            c[0].amount
            for c in calls
            if c[0].credit_account_id == agent and results_by_id[c[0].id] is R.OK
        )
        balance = await balance_of(ledger, agent)
        assert (balance.debits_posted, balance.credits_posted) == (paid, 1000 + received)
        assert balance.available >= 0
    # Every outcome is the stored one: a retry through the unbatched path agrees.
    retried = await ledger.create_transfers([call[0] for call in calls])
    assert {o.id: o.result for o in retried} == results_by_id
    assert all(o.replayed for o in retried)


async def test_an_id_used_twice_in_one_group_is_applied_once_and_the_second_caller_gets_it_replayed(
    funded: None, batching: BatchingLedger, recording: RecordingLedger, ledger: SqlLedger
) -> None:
    same = payment("twice", ALICE, BOB, 300)
    changed = payment("twice", ALICE, BOB, 301)
    tasks = await line_up(batching, recording, [[same], [same], [changed]])
    first, second, third = await release(recording, tasks)

    assert recording.group_ids(1) == [["twice"], ["twice"], ["twice"]]
    assert results(first) == [(R.OK, False)]
    assert results(second) == [(R.OK, True)]
    assert second[0].timestamp_us == first[0].timestamp_us
    assert results(third) == [(R.EXISTS_WITH_DIFFERENT_FIELDS, False)]
    assert (await balance_of(ledger, ALICE)).debits_posted == 300


async def test_an_id_retried_in_a_later_group_gets_its_first_outcome_even_a_stored_failure(
    funded: None, batching: BatchingLedger, ledger: SqlLedger
) -> None:
    too_much = payment("too-much", ALICE, BOB, 5000)
    fine = payment("fine", ALICE, BOB, 100)
    assert results(await batching.create_transfers([too_much, fine])) == [
        (R.EXCEEDS_CREDITS, False),
        (R.OK, False),
    ]
    await mint_into(ledger, ALICE, 10_000, key="more")
    # Still refused, though ALICE could now pay: the first outcome stands.
    retried = await batching.create_transfers([too_much, fine])
    assert results(retried) == [(R.EXCEEDS_CREDITS, True), (R.OK, True)]
    # The unbatched path answers the same: one ledger, one idempotency table.
    assert results(await ledger.create_transfers([too_much, fine])) == results(retried)
    assert (await balance_of(ledger, ALICE)).debits_posted == 100


async def test_a_failing_or_open_linked_chain_fails_only_its_own_caller_in_a_shared_group(
    funded: None, batching: BatchingLedger, recording: RecordingLedger, ledger: SqlLedger
) -> None:
    failing_chain = [
        payment("chain-1", ALICE, BOB, 600, flags=F.LINKED),
        payment("chain-2", ALICE, CAROL, 600),
    ]
    plain = [payment("plain", BOB, CAROL, 100)]
    open_chain = [payment("open-1", CAROL, BOB, 10, flags=F.LINKED)]
    after_open = [payment("after-open", ALICE, BOB, 300)]
    tasks = await line_up(batching, recording, [failing_chain, plain, open_chain, after_open])
    chain, paid, opened, after = await release(recording, tasks)

    assert recording.group_ids(1) == [["chain-1", "chain-2"], ["plain"], ["open-1"], ["after-open"]]
    assert results(chain) == [(R.LINKED_EVENT_FAILED, False), (R.EXCEEDS_CREDITS, False)]
    assert results(paid) == [(R.OK, False)]
    assert results(opened) == [(R.LINKED_EVENT_CHAIN_OPEN, False)]
    # The open chain ended with its caller's batch: the next caller's transfer
    # was not pulled into it, and saw ALICE untouched by the failed chain.
    assert results(after) == [(R.OK, False)]
    assert (await balance_of(ledger, ALICE)).debits_posted == 300


async def test_a_full_queue_makes_callers_wait_for_room_and_applies_them_once_there_is_some(
    recording: RecordingLedger, ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    async with BatchingLedger(recording, queue_transfers_max=BATCH_SIZE_MAX) as batching:
        filling = [mint(f"fill-{i}", ALICE, 1) for i in range(BATCH_SIZE_MAX)]
        tasks = await line_up(batching, recording, [filling])
        assert batching.queued_transfers == BATCH_SIZE_MAX
        patient = [
            asyncio.create_task(batching.create_transfers([mint(f"patient-{i}", BOB, 7)]))
            for i in range(3)
        ]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in patient)
        [filled] = await release(recording, tasks)
        assert {o.result for o in filled} == {R.OK}
        async with asyncio.timeout(WAIT_S):
            answered = await asyncio.gather(*patient)
        assert [results(outcomes) for outcomes in answered] == [[(R.OK, False)]] * 3
    # They waited for room and then went in together, in arrival order.
    assert recording.group_ids(2) == [[f"patient-{i}"] for i in range(3)]
    assert (await balance_of(ledger, BOB)).credits_posted == 3 * 7 + 1  # and the blocker's 1


async def test_beyond_the_bound_on_waiting_calls_a_call_is_refused_at_once(
    recording: RecordingLedger, ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    async with BatchingLedger(recording, queue_transfers_max=BATCH_SIZE_MAX) as batching:
        filling = [mint(f"fill-{i}", ALICE, 1) for i in range(BATCH_SIZE_MAX)]
        tasks = await line_up(batching, recording, [filling])
        waiting = [
            asyncio.create_task(batching.create_transfers([mint(f"wait-{i}", BOB, 1)]))
            for i in range(BATCHING_WAITING_CALLS_MAX)
        ]
        await asyncio.sleep(0)
        with pytest.raises(LedgerOverloaded) as refused:
            await batching.create_transfers([mint("one-too-many", CAROL, 1)])
        assert refused.value.waited_s == 0
        await release(recording, tasks)
        async with asyncio.timeout(WAIT_S * 3):
            answered = await asyncio.gather(*waiting)
        assert {o.result for outcomes in answered for o in outcomes} == {R.OK}
    assert await ledger.account_transfers(CAROL) == []
    assert (await balance_of(ledger, BOB)).credits_posted == BATCHING_WAITING_CALLS_MAX + 1


async def test_calls_not_answered_in_time_are_refused_and_only_a_taken_one_may_be_applied(
    recording: RecordingLedger, ledger: SqlLedger, database_url: str
) -> None:
    """The taken call (its group is running) gets LedgerTimeout and is applied
    later; the queued and the waiting calls get LedgerOverloaded and are not."""
    await open_accounts(ledger, ALICE, BOB, CAROL)
    timeout_s = 0.3
    batching = BatchingLedger(
        recording, queue_transfers_max=BATCH_SIZE_MAX, call_timeout_s=timeout_s
    )
    await batching.start()
    filling = [mint(f"fill-{i}", ALICE, 1) for i in range(BATCH_SIZE_MAX)]
    blocker, queued = await line_up(batching, recording, [filling])
    waiting = asyncio.create_task(batching.create_transfers([mint("waiting", CAROL, 5)]))
    started_s = asyncio.get_running_loop().time()
    answers = await asyncio.gather(blocker, queued, waiting, return_exceptions=True)
    assert asyncio.get_running_loop().time() - started_s >= timeout_s * 0.9
    assert isinstance(answers[0], LedgerTimeout)
    assert answers[0].timeout_s == timeout_s
    assert isinstance(answers[1], LedgerOverloaded)
    assert isinstance(answers[2], LedgerOverloaded)
    assert answers[2].queue_transfers_max == BATCH_SIZE_MAX
    # The queue is free again: the refused calls gave their room back.
    assert batching.queued_transfers == 0
    assert recording.before_gate is not None
    recording.before_gate.set()
    await batching.close(timeout_s=WAIT_S)

    assert len(recording.groups) == 1, "only the blocker's group ran"
    assert await ledger.account_transfers(ALICE) == []
    assert await ledger.account_transfers(CAROL) == []
    # The caller that timed out learns its outcome by retrying.
    [retried] = await ledger.create_transfers([mint("blocker", BOB, 1)])
    assert (retried.result, retried.replayed) == (R.OK, True)
    assert retried.timestamp_us == recording.committed[0][0][0].timestamp_us


async def test_close_drains_the_queue_then_refuses_every_new_call(
    funded: None, recording: RecordingLedger, ledger: SqlLedger
) -> None:
    batching = BatchingLedger(recording)
    await batching.start()
    tasks = await line_up(
        batching, recording, [[payment(f"q-{i}", ALICE, BOB, 10)] for i in range(5)]
    )
    closing = asyncio.create_task(batching.close(timeout_s=WAIT_S))
    await asyncio.sleep(0)
    assert batching.state is WriterState.CLOSING
    with pytest.raises(LedgerClosed):
        await batching.create_transfers([payment("too-late", ALICE, BOB, 10)])
    drained = await release(recording, tasks)
    await closing
    # mypy keeps the narrowing from before the awaits; the state moved on.
    assert batching.state is WriterState.CLOSED  # type: ignore[comparison-overlap]
    assert [results(outcomes) for outcomes in drained] == [[(R.OK, False)]] * 5
    with pytest.raises(LedgerClosed):
        await batching.create_transfers([payment("after-close", ALICE, BOB, 10)])
    await batching.close()  # idempotent
    assert (await balance_of(ledger, ALICE)).debits_posted == 50


async def test_a_call_still_waiting_for_room_when_closing_starts_is_refused_with_nothing_applied(
    recording: RecordingLedger, ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    batching = BatchingLedger(recording, queue_transfers_max=BATCH_SIZE_MAX)
    await batching.start()
    filling = [mint(f"fill-{i}", ALICE, 1) for i in range(BATCH_SIZE_MAX)]
    tasks = await line_up(batching, recording, [filling])
    waiting = asyncio.create_task(batching.create_transfers([mint("waiting", CAROL, 5)]))
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(batching.close(timeout_s=WAIT_S))
    with pytest.raises(LedgerClosed):
        await waiting
    await release(recording, tasks)
    await closing
    assert await ledger.account_transfers(CAROL) == []


async def test_replies_lost_after_the_commit_are_recovered_by_retrying_the_same_ids(
    funded: None, batching: BatchingLedger, recording: RecordingLedger, database_url: str
) -> None:
    calls = crash_group_calls()
    recording.after_gate = asyncio.Event()
    callers = [asyncio.create_task(batching.create_transfers(call)) for call in calls]
    async with asyncio.timeout(WAIT_S):
        await recording.after_commit.wait()
    # The group committed; its callers give up before any reply arrives.
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert all(caller.cancelled() for caller in callers)
    recording.after_gate.set()
    await batching.close(timeout_s=WAIT_S)
    [committed] = recording.committed

    await assert_retries_return(committed, calls, database_url)


class SimulatedCrash(BaseException):
    """Ends the writer task the way a crash would: nothing catches it."""


class CrashesAfterCommit(RecordingLedger):
    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /
    ) -> list[list[TransferOutcome]]:
        await super().create_transfer_batches(batches)
        raise SimulatedCrash


async def test_a_writer_killed_between_the_commit_and_the_replies_loses_no_outcome(
    funded: None, database_engine: AsyncEngine, database_url: str, ledger: SqlLedger
) -> None:
    crashing = CrashesAfterCommit(database_engine)
    batching = BatchingLedger(crashing)
    await batching.start()
    calls = crash_group_calls()
    answered = await asyncio.gather(
        *(batching.create_transfers(call) for call in calls), return_exceptions=True
    )
    # Every caller hears that the outcome is unknown, none hangs.
    assert all(type(answer) is LedgerUnavailable for answer in answered), answered
    assert batching.state is WriterState.CLOSED
    with pytest.raises(LedgerClosed):
        await batching.create_transfers([payment("after-crash", ALICE, BOB, 1)])
    [committed] = crashing.committed

    await assert_retries_return(committed, calls, database_url)


async def test_a_process_ended_between_the_commit_and_the_replies_loses_no_outcome(
    funded: None, database_url: str, tmp_path: Path
) -> None:
    outcomes_path = tmp_path / "committed.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.wallet.batching_crash_child",
        database_url,
        str(outcomes_path),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, stderr = await child.communicate()
    assert child.returncode == CRASH_EXIT_CODE, stderr.decode()
    committed = [
        [TransferOutcome(i, R(result), replayed, timestamp) for i, result, replayed, timestamp in b]
        for b in json.loads(outcomes_path.read_text())
    ]

    await assert_retries_return(committed, crash_group_calls(), database_url)


async def assert_retries_return(
    committed: list[list[TransferOutcome]], calls: list[list[NewTransfer]], database_url: str
) -> None:
    """Retrying every call through a new engine and writer (a restarted
    process) returns the committed outcomes, replayed, and moves no money."""
    assert [[o.id for o in batch] for batch in committed] == [[t.id for t in c] for c in calls]
    assert {o.result for batch in committed for o in batch} == {
        R.OK,
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
    }
    engine = open_database(database_url)
    try:
        ledger = SqlLedger(engine)
        before = await ledger.lookup_accounts([ALICE, BOB, CAROL, ISSUANCE])
        async with BatchingLedger(ledger) as batching:
            retried = await asyncio.gather(*(batching.create_transfers(call) for call in calls))
        for first, again in zip(committed, retried, strict=True):
            for first_outcome, outcome in zip(first, again, strict=True):
                assert outcome.result is first_outcome.result
                if first_outcome.result is R.OK or first_outcome.result is R.EXCEEDS_CREDITS:
                    # What was decided and stored comes back as it was.
                    assert outcome.replayed
                    assert outcome.timestamp_us == first_outcome.timestamp_us
        assert await ledger.lookup_accounts([ALICE, BOB, CAROL, ISSUANCE]) == before
    finally:
        await engine.dispose()


async def _poison_inserts(engine: AsyncEngine) -> None:
    """A trigger that refuses transfers whose user data is 'poison': a write the
    database rejects although the planner accepted it."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.user_data = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON ledger_transfers "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )
        else:
            await connection.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON ledger_transfers "
                    "WHEN NEW.user_data = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            )


async def test_a_batch_the_database_refuses_fails_only_its_own_caller(
    funded: None,
    batching: BatchingLedger,
    recording: RecordingLedger,
    ledger: SqlLedger,
    database_engine: AsyncEngine,
) -> None:
    await _poison_inserts(database_engine)
    poisoned = replace(payment("poisoned", BOB, CAROL, 5), user_data="poison")
    tasks = await line_up(
        batching,
        recording,
        [[payment("before", ALICE, BOB, 10)], [poisoned], [payment("after", ALICE, CAROL, 20)]],
    )
    assert recording.before_gate is not None
    recording.before_gate.set()
    answered = await asyncio.gather(*tasks, return_exceptions=True)
    before, refused, after = answered[1:]

    assert recording.group_ids(1) == [["before"], ["poisoned"], ["after"]]
    assert [recording.group_ids(i) for i in (2, 3, 4)] == [
        [["before"]],
        [["poisoned"]],
        [["after"]],
    ]
    assert isinstance(before, list) and results(before) == [(R.OK, False)]
    assert isinstance(after, list) and results(after) == [(R.OK, False)]
    assert isinstance(refused, LedgerRejected)
    assert (await balance_of(ledger, ALICE)).debits_posted == 30


class Unavailable(RecordingLedger):
    """A database that is down for the first group only."""

    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /
    ) -> list[list[TransferOutcome]]:
        if not self.groups:
            self.groups.append([list(batch) for batch in batches])
            raise LedgerUnavailable("connection refused", attempts=3)
        return await super().create_transfer_batches(batches)


async def test_an_unavailable_database_fails_the_groups_callers_and_the_writer_goes_on(
    funded: None, database_engine: AsyncEngine
) -> None:
    async with BatchingLedger(Unavailable(database_engine)) as batching:
        calls = [[payment(f"down-{i}", ALICE, BOB, 10)] for i in range(3)]
        answered = await asyncio.gather(
            *(batching.create_transfers(call) for call in calls), return_exceptions=True
        )
        assert all(isinstance(answer, LedgerUnavailable) for answer in answered)
        assert all(answer.attempts == 3 for answer in answered)  # type: ignore[union-attr]
        # Each caller got its own exception object, caused by the group's.
        assert len({id(answer) for answer in answered}) == 3
        retried = await asyncio.gather(*(batching.create_transfers(call) for call in calls))
        assert [results(outcomes) for outcomes in retried] == [[(R.OK, False)]] * 3


async def test_a_call_with_a_connection_joins_the_callers_transaction_and_skips_the_writer(
    funded: None,
    batching: BatchingLedger,
    recording: RecordingLedger,
    ledger: SqlLedger,
    database_engine: AsyncEngine,
) -> None:
    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack):
        async with database_engine.begin() as connection:
            outcomes = await batching.create_transfers(
                [payment("in-unit-of-work", ALICE, BOB, 10)], connection=connection
            )
            assert results(outcomes) == [(R.OK, False)]
            raise RolledBack
    assert recording.groups == []
    assert (await balance_of(ledger, ALICE)).debits_posted == 0


async def test_empty_and_too_large_calls_are_answered_without_the_writer(
    funded: None, batching: BatchingLedger, recording: RecordingLedger
) -> None:
    assert await batching.create_transfers([]) == []
    too_large = [payment(f"big-{i}", ALICE, BOB, 1) for i in range(BATCH_SIZE_MAX + 1)]
    outcomes = await batching.create_transfers(too_large)
    assert {o.result for o in outcomes} == {R.BATCH_TOO_LARGE}
    assert recording.groups == []


async def test_bounds_outside_their_limits_are_refused_with_the_bound(
    recording: RecordingLedger,
) -> None:
    with pytest.raises(ValueOutOfRange) as raised:
        BatchingLedger(recording, group_size_max=BATCH_SIZE_MAX + 1)
    assert raised.value.maximum == BATCH_SIZE_MAX
    with pytest.raises(ValueOutOfRange) as raised:
        BatchingLedger(recording, queue_transfers_max=BATCH_SIZE_MAX - 1)
    assert raised.value.minimum == BATCH_SIZE_MAX
    with pytest.raises(ValueOutOfRange):
        BatchingLedger(recording, call_timeout_s=0)
    with pytest.raises(ValueOutOfRange):
        BatchingLedger(recording, call_timeout_s=BATCHING_CALL_TIMEOUT_S_MAX + 1)
    async with BatchingLedger(recording) as batching:
        with pytest.raises(ValueOutOfRange):
            await batching.close(timeout_s=-1)
    with pytest.raises(LedgerClosed):
        await batching.start()
