"""Random batches never create or destroy money (Hypothesis, pure core).

Hypothesis draws sequences of batches over a few accounts: payments, holds
with short timeouts, posts and voids of earlier holds, linked chains,
repeated ids, unknown accounts, bad amounts, and clock jumps between
batches. After every batch the in-memory ledger must hold: per ledger
Σ debits == Σ credits (pending and posted), every account's totals equal
the sums recomputed from the applied records, no wallet is overdrawn, and
no hold is resolved twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wallet.memory_ledger import ALICE, BOB, CAROL, DOLLARS, ISSUANCE, MemoryLedger
from wallet import (
    AccountFlags,
    LedgerId,
    NewTransfer,
    TransferCode,
    TransferFlags,
    TransferResult,
)
from wallet.validation import STORED_RESULTS

F = TransferFlags
# Repeats weight the draws toward transfers that can succeed; the rare
# entries (another ledger, an unknown account, bad amounts) keep failures in.
ACCOUNT_IDS = [ISSUANCE, ISSUANCE, ALICE, ALICE, BOB, BOB, CAROL, CAROL, DOLLARS, "agent:ghost"]
TRANSFER_IDS = [f"t{index}" for index in range(24)]
AMOUNTS = [100, 200, 300, 500, 100, 200, 300, 500, 0, -1, 10**15 + 1]
LEDGERS = [LedgerId.CREDITS] * 9 + [LedgerId.USD_CENTS]
FLAG_CHOICES = [
    F.NONE,
    F.NONE,
    F.LINKED,
    F.PENDING,
    F.PENDING,
    F.PENDING | F.LINKED,
    F.POST_PENDING,
    F.POST_PENDING,
    F.POST_PENDING | F.LINKED,
    F.VOID_PENDING,
    F.VOID_PENDING,
]


@st.composite
def transfers(draw: st.DrawFn) -> NewTransfer:
    flags = draw(st.sampled_from(FLAG_CHOICES))
    resolves = bool(flags & (F.POST_PENDING | F.VOID_PENDING))
    return NewTransfer(
        id=draw(st.sampled_from(TRANSFER_IDS)),
        debit_account_id=draw(st.sampled_from(ACCOUNT_IDS)),
        credit_account_id=draw(st.sampled_from(ACCOUNT_IDS)),
        amount=draw(st.sampled_from(AMOUNTS)),
        ledger=draw(st.sampled_from(LEDGERS)),
        code=TransferCode.TRANSFER,
        flags=flags,
        pending_id=draw(st.sampled_from(TRANSFER_IDS)) if resolves else None,
        timeout_s=draw(st.sampled_from([0, 0, 1, 3])) if flags & F.PENDING else 0,
    )


@st.composite
def scenarios(draw: st.DrawFn, *, batches_max: int = 6) -> list[list[NewTransfer]]:
    """Batches where most posts and voids name holds drawn earlier, with their
    accounts and amounts, and where some transfers are exact retries."""
    holds: list[NewTransfer] = []
    sent: list[NewTransfer] = []
    batches: list[list[NewTransfer]] = []
    for batch_index in range(draw(st.integers(1, batches_max))):
        batch: list[NewTransfer] = []
        for index in range(draw(st.integers(0, 10))):
            kind = draw(st.sampled_from(["pay", "hold", "post", "void", "retry", "random"]))
            transfer_id = f"b{batch_index}-{index}"
            if kind in ("post", "void") and holds:
                chosen = _resolution(draw, draw(st.sampled_from(holds)), kind, transfer_id)
            elif kind == "retry" and sent:
                chosen = draw(st.sampled_from(sent))
            elif kind == "random":
                chosen = draw(transfers())
            else:
                chosen = _payment(draw, transfer_id, pending=kind == "hold")
            if draw(st.sampled_from([False, False, False, True])):
                chosen = replace(chosen, flags=chosen.flags | F.LINKED)
            holds += [chosen] if chosen.flags & F.PENDING and chosen.amount > 0 else []
            sent.append(chosen)
            batch.append(chosen)
        batches.append(batch)
    return batches


def _payment(draw: st.DrawFn, transfer_id: str, *, pending: bool) -> NewTransfer:
    debit_account_id, credit_account_id = draw(
        st.permutations([ISSUANCE, ALICE, BOB, CAROL]).map(lambda ids: ids[:2])
    )
    return NewTransfer(
        id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=draw(st.integers(1, 700)),
        ledger=LedgerId.CREDITS,
        code=TransferCode.TRANSFER,
        flags=F.PENDING if pending else F.NONE,
        timeout_s=draw(st.sampled_from([0, 1, 3])) if pending else 0,
    )


def _resolution(draw: st.DrawFn, hold: NewTransfer, kind: str, transfer_id: str) -> NewTransfer:
    if kind == "void":
        amount = hold.amount
    else:
        amount = draw(st.one_of(st.integers(1, hold.amount), st.just(hold.amount + 1)))
    return NewTransfer(
        id=transfer_id,
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=amount,
        ledger=hold.ledger,
        code=TransferCode.TRANSFER,
        flags=F.VOID_PENDING if kind == "void" else F.POST_PENDING,
        pending_id=hold.id,
    )


def mints(amount: int) -> list[NewTransfer]:
    return [
        NewTransfer(
            id=f"mint:{account_id}",
            debit_account_id=ISSUANCE,
            credit_account_id=account_id,
            amount=amount,
            ledger=LedgerId.CREDITS,
            code=TransferCode.MINT,
        )
        for account_id in (ALICE, BOB, CAROL)
    ]


def assert_ledger_consistent(ledger: MemoryLedger) -> None:
    for ledger_id in LedgerId:
        accounts = [a for a in ledger.accounts.values() if a.ledger is ledger_id]
        assert sum(a.debits_pending for a in accounts) == sum(a.credits_pending for a in accounts)
        assert sum(a.debits_posted for a in accounts) == sum(a.credits_posted for a in accounts)
    assert ledger.stored_totals() == ledger.recomputed_totals()
    for account in ledger.accounts.values():
        if account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
            assert account.debits_pending + account.debits_posted <= account.credits_posted
    resolved = Counter(r.pending_id for r in ledger.records if r.pending_id is not None)
    assert all(count == 1 for count in resolved.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=scenarios(),
    clock_steps_s=st.lists(st.integers(0, 4), min_size=6, max_size=6),
    minted=st.integers(0, 3000),
)
def test_random_batches_never_create_or_destroy_money(
    batches: list[list[NewTransfer]], clock_steps_s: list[int], minted: int
) -> None:
    ledger = MemoryLedger()
    if minted:
        ledger.submit(mints(minted))
    for batch, step_s in zip(batches, clock_steps_s, strict=False):
        plan = ledger.submit(batch)
        assert len(plan.outcomes) == len(batch)
        assert_ledger_consistent(ledger)
        ledger.now_us += step_s * 1_000_000


@settings(max_examples=200, deadline=None)
@given(batch=scenarios(batches_max=1).map(lambda batches: batches[0]))
def test_replaying_a_whole_batch_repeats_every_decided_outcome_and_moves_no_money(
    batch: list[NewTransfer],
) -> None:
    ledger = MemoryLedger()
    ledger.submit(mints(2000))
    first = ledger.submit(batch)
    before = ledger.stored_totals()
    replay = ledger.submit(batch)
    for first_outcome, replay_outcome in zip(first.outcomes, replay.outcomes, strict=True):
        # What the ledger decided and stored (an applied transfer, or a
        # failure that depends on state) comes back. Other outcomes are not
        # decisions: a chain member may fail in another way next time (its
        # chain still fails), as may a clash with an id the chain had tried.
        if first_outcome.result is TransferResult.OK or first_outcome.result in STORED_RESULTS:
            assert replay_outcome.result is first_outcome.result
        if first_outcome.result is TransferResult.OK:
            assert replay_outcome.replayed
    assert replay.records == ()
    assert ledger.stored_totals() == before
    assert_ledger_consistent(ledger)
