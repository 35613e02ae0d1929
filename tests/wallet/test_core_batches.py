"""Planning many callers' batches as one group decides each exactly as alone (pure core).

The batching writer applies several independent batches in one database
transaction through ``plan_batches``. Its guarantee is that grouping changes
nothing a caller can see: Hypothesis draws a history and then a group of
batches (payments, holds, posts and voids, linked chains, chains left open,
exact retries, ids reused across batches, invalid transfers) and applies the
group once with ``plan_batches`` and once batch by batch with ``plan_batch``
on a copy of the same ledger. Every outcome (result and ``replayed``) must be
the same, and so must the balances, the holds (but for deadlines a few
microseconds apart, as timestamps are given by position) and every decided
id. A few
examples pin the cases by name: a chain left open fails only its own batch,
an id used by two batches of a group is applied once, and a batch that is too
large is refused alone.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wallet.memory_ledger import ALICE, BOB, CAROL, ISSUANCE, MemoryLedger
from tests.wallet.test_core_properties import assert_ledger_consistent, mints, scenarios
from wallet import BATCH_SIZE_MAX, LedgerId, NewTransfer, TransferCode, TransferFlags
from wallet import TransferResult as R
from wallet.core import PendingHold

F = TransferFlags


def pay(transfer_id: str, debit: str, credit: str, amount: int, /, **fields: object) -> NewTransfer:
    return NewTransfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=LedgerId.CREDITS,
        code=TransferCode.TRANSFER,
        **fields,  # type: ignore[arg-type]
    )


def split(outcomes: tuple[object, ...], batches: list[list[NewTransfer]]) -> list[list[object]]:
    parts, start = [], 0
    for batch in batches:
        parts.append(list(outcomes[start : start + len(batch)]))
        start += len(batch)
    return parts


def without_deadlines(ledger: MemoryLedger) -> dict[str, PendingHold]:
    # A hold's deadline counts from its own timestamp. A group gives each
    # transfer the timestamp of its position in the group, batch by batch
    # applies it after the records stored so far: the two differ by a few
    # microseconds, never by anything a decision in the group depends on.
    return {hold_id: replace(hold, expires_at_us=None) for hold_id, hold in ledger.holds.items()}


def decisions(ledger: MemoryLedger) -> dict[str, R]:
    return {transfer_id: outcome.result for transfer_id, outcome in ledger.outcomes.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=scenarios(batches_max=3),
    group=scenarios(batches_max=6),
    minted=st.integers(0, 3000),
    step_s=st.integers(0, 4),
)
def test_a_group_decides_every_batch_as_the_batches_applied_one_after_the_other(
    history: list[list[NewTransfer]], group: list[list[NewTransfer]], minted: int, step_s: int
) -> None:
    grouped = MemoryLedger()
    grouped.submit(mints(minted) if minted else [])
    for batch in history:
        grouped.submit(batch)
    grouped.now_us += step_s * 1_000_000
    one_by_one = copy.deepcopy(grouped)

    plan = grouped.submit_group(group)
    expected = [
        [(o.id, o.result, o.replayed) for o in one_by_one.submit(batch).outcomes] for batch in group
    ]
    actual = [
        [(o.id, o.result, o.replayed) for o in part]  # type: ignore[attr-defined]
        for part in split(plan.outcomes, group)
    ]
    assert actual == expected
    assert grouped.stored_totals() == one_by_one.stored_totals()
    assert without_deadlines(grouped) == without_deadlines(one_by_one)
    assert decisions(grouped) == decisions(one_by_one)
    assert_ledger_consistent(grouped)


def test_a_chain_left_open_fails_only_its_own_batch_and_the_next_batch_starts_fresh() -> None:
    ledger = MemoryLedger()
    ledger.submit(mints(1000))
    open_chain = [pay("a1", ALICE, BOB, 100, flags=F.LINKED)]
    next_batch = [pay("b1", BOB, CAROL, 100)]
    plan = ledger.submit_group([open_chain, next_batch])
    assert [o.result for o in plan.outcomes] == [R.LINKED_EVENT_CHAIN_OPEN, R.OK]


def test_an_id_used_by_two_batches_of_a_group_is_applied_once_and_replayed_once() -> None:
    ledger = MemoryLedger()
    ledger.submit(mints(1000))
    same = pay("twice", ALICE, BOB, 300)
    plan = ledger.submit_group([[same], [same], [pay("twice", ALICE, BOB, 301)]])
    assert [(o.result, o.replayed) for o in plan.outcomes] == [
        (R.OK, False),
        (R.OK, True),
        (R.EXISTS_WITH_DIFFERENT_FIELDS, False),
    ]
    assert len(plan.records) == 1
    assert ledger.accounts[ALICE].debits_posted == 300


def test_a_failing_chain_leaves_the_other_batches_of_its_group_applied() -> None:
    ledger = MemoryLedger()
    ledger.submit(mints(1000))
    failing = [pay("c1", ALICE, BOB, 600, flags=F.LINKED), pay("c2", ALICE, CAROL, 600)]
    plan = ledger.submit_group(
        [[pay("p1", BOB, CAROL, 200)], failing, [pay("p2", CAROL, ISSUANCE, 1)]]
    )
    assert [o.result for o in plan.outcomes] == [
        R.OK,
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
        R.OK,
    ]
    assert ledger.accounts[ALICE].debits_posted == 0


def test_a_batch_too_large_is_refused_alone_and_takes_no_timestamps() -> None:
    ledger = MemoryLedger()
    ledger.submit(mints(1000))
    too_large = [pay(f"big-{i}", ALICE, BOB, 1) for i in range(BATCH_SIZE_MAX + 1)]
    plan = ledger.submit_group([too_large, [pay("small", ALICE, BOB, 1)]])
    assert {o.result for o in plan.outcomes[:-1]} == {R.BATCH_TOO_LARGE}
    assert plan.outcomes[-1].result is R.OK
    assert len(plan.records) == 1
