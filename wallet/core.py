"""The pure core of the ledger: planning a batch of transfers.

The SQL adapter loads what a batch needs (the involved accounts, the pending
transfers it references or that have expired on those accounts, and the
outcomes already stored for its ids), calls ``plan_batch``, and writes the
plan. ``plan_batches`` decides several callers' batches in one plan, each as
if applied alone after the ones before it: the batching writer's group
commit. Everything that decides money lives here, without I/O, so it can be
tested with plain values.

Semantics follow TigerBeetle:

* transfers apply in order and each sees the effects of the earlier ones;
* a ``LINKED`` chain succeeds or fails as a whole: the failing member gets its
  own result, the others ``linked_event_failed``; a batch that ends inside a
  chain fails that chain with ``linked_event_chain_open``;
* a pending transfer past its deadline counts as released: before applying
  the batch the plan voids every such hold whose two accounts are loaded
  (an ``EXPIRY`` record), so no reader has to wait for the sweeper;
* the transfer id is the idempotency key: a known id with identical fields
  gets the stored outcome back with ``replayed=True`` (even as a member of a
  chain that fails); with different fields, ``exists_with_different_fields``.
  Stored are the applied transfers and the failures that depend on state
  (``STORED_RESULTS``); a failure found while a chain was being tried is
  stored too, so that retrying the same chain fails the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from wallet.limits import ACCOUNT_TOTAL_MAX, BATCH_SIZE_MAX, TIMESTAMP_US_MAX
from wallet.model import (
    AccountBalance,
    AccountFlags,
    AccountOutcome,
    AccountResult,
    LedgerId,
    NewAccount,
    NewTransfer,
    PendingStatus,
    TransferCode,
    TransferFlags,
    TransferOutcome,
    TransferRecord,
    TransferResult,
)
from wallet.validation import (
    STORED_RESULTS,
    expiry_transfer_id,
    transfer_fingerprint,
    validate_account,
    validate_transfer,
)

__all__ = [
    "BalanceDelta",
    "BatchPlan",
    "PendingHold",
    "StoredFailure",
    "StoredOutcome",
    "assert_account_valid",
    "plan_accounts",
    "plan_batch",
    "plan_batches",
    "release_expired",
]

_MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class PendingHold:
    """A pending transfer and where it stands."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: LedgerId
    status: PendingStatus
    expires_at_us: int | None
    user_data: str

    def __post_init__(self) -> None:
        assert self.amount > 0
        assert self.debit_account_id != self.credit_account_id
        assert self.expires_at_us is None or self.expires_at_us > 0

    def is_past_deadline(self, now_us: int, /) -> bool:
        """Still pending, but no longer postable or voidable: it counts as released."""
        return (
            self.status is PendingStatus.PENDING
            and self.expires_at_us is not None
            and self.expires_at_us <= now_us
        )


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """What the ledger decided for a transfer id earlier."""

    result: TransferResult
    fingerprint: str
    timestamp_us: int


@dataclass(frozen=True, slots=True)
class _AppliedHere:
    """A transfer this plan applied, as the outcome later uses of its id see.

    Its fingerprint is computed only if the id comes again in the same plan:
    computing it for every transfer cost about a tenth of planning one.
    """

    transfer: NewTransfer
    timestamp_us: int
    result: ClassVar[TransferResult] = TransferResult.OK

    @property
    def fingerprint(self) -> str:
        return transfer_fingerprint(self.transfer)


# What a plan knows was decided for an id: before it, or by it.
_Decided = StoredOutcome | _AppliedHere


@dataclass(frozen=True, slots=True)
class StoredFailure:
    id: str
    fingerprint: str
    result: TransferResult
    timestamp_us: int


@dataclass(frozen=True, slots=True)
class BalanceDelta:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What to write for one batch, in the order it must be written."""

    outcomes: tuple[TransferOutcome, ...]
    # Expiry voids first, then the applied transfers, in timestamp order.
    records: tuple[TransferRecord, ...] = ()
    failures: tuple[StoredFailure, ...] = ()
    account_deltas: Mapping[str, BalanceDelta] = field(default_factory=dict)
    # Holds created by this batch (in their final status) ...
    holds_created: tuple[PendingHold, ...] = ()
    # ... and the new status of holds that existed before it.
    holds_resolved: Mapping[str, PendingStatus] = field(default_factory=dict)
    expired_count: int = 0


def assert_account_valid(account: AccountBalance, /) -> None:
    """The invariants every stored account satisfies (mirrored by CHECKs)."""
    # Spelled out rather than looped: this runs twice per transfer.
    assert 0 <= account.debits_pending <= ACCOUNT_TOTAL_MAX, account
    assert 0 <= account.debits_posted <= ACCOUNT_TOTAL_MAX, account
    assert 0 <= account.credits_pending <= ACCOUNT_TOTAL_MAX, account
    assert 0 <= account.credits_posted <= ACCOUNT_TOTAL_MAX, account
    assert account.debits_pending + account.debits_posted <= ACCOUNT_TOTAL_MAX, account
    assert account.credits_pending + account.credits_posted <= ACCOUNT_TOTAL_MAX, account
    if AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS in account.flags:
        assert account.debits_pending + account.debits_posted <= account.credits_posted, account


def release_expired(
    accounts: Mapping[str, AccountBalance], holds: Sequence[PendingHold], /, *, now_us: int
) -> dict[str, AccountBalance]:
    """The balances as readers must see them: holds past their deadline are released."""
    released = dict(accounts)
    for hold in holds:
        if not hold.is_past_deadline(now_us):
            continue
        debit = released.get(hold.debit_account_id)
        if debit is not None:
            released[debit.id] = replace(debit, debits_pending=debit.debits_pending - hold.amount)
        credit = released.get(hold.credit_account_id)
        if credit is not None:
            released[credit.id] = replace(
                credit, credits_pending=credit.credits_pending - hold.amount
            )
    for account in released.values():
        assert_account_valid(account)
    return released


def plan_accounts(
    accounts: Sequence[NewAccount], /, *, existing: Mapping[str, NewAccount]
) -> tuple[list[AccountOutcome], list[NewAccount]]:
    """Outcomes for a batch of new accounts, and the accounts to insert."""
    if len(accounts) > BATCH_SIZE_MAX:
        return [AccountOutcome(a.id, AccountResult.BATCH_TOO_LARGE) for a in accounts], []
    known = dict(existing)
    outcomes: list[AccountOutcome] = []
    inserts: list[NewAccount] = []
    for account in accounts:
        result = validate_account(account)
        prior = known.get(account.id) if result is AccountResult.OK else None
        if prior is not None and prior != account:
            result = AccountResult.EXISTS_WITH_DIFFERENT_FIELDS
        outcomes.append(AccountOutcome(account.id, result, replayed=prior == account))
        if result is AccountResult.OK and prior is None:
            known[account.id] = account
            inserts.append(account)
    assert len(outcomes) == len(accounts)
    return outcomes, inserts


class _State:
    """The ledger as the batch has changed it so far."""

    def __init__(
        self,
        accounts: Mapping[str, AccountBalance],
        holds: Mapping[str, PendingHold],
        decided: Mapping[str, StoredOutcome],
    ) -> None:
        self.accounts = dict(accounts)
        self.holds = dict(holds)
        self.decided: dict[str, _Decided] = dict(decided)
        self.records: list[TransferRecord] = []
        self.failures: list[StoredFailure] = []

    def store_failure(self, failure: StoredFailure) -> None:
        assert failure.result in STORED_RESULTS
        assert failure.id not in self.decided
        self.failures.append(failure)
        self.decided[failure.id] = StoredOutcome(
            failure.result, failure.fingerprint, failure.timestamp_us
        )


class _Draft:
    """The changes of one chain, applied to the state only if all of it succeeds."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self.accounts: dict[str, AccountBalance] = {}
        self.holds: dict[str, PendingHold] = {}
        self.decided: dict[str, _Decided] = {}
        self.records: list[TransferRecord] = []

    def account(self, account_id: str) -> AccountBalance | None:
        found = self.accounts.get(account_id)
        return found if found is not None else self._state.accounts.get(account_id)

    def hold(self, hold_id: str) -> PendingHold | None:
        found = self.holds.get(hold_id)
        return found if found is not None else self._state.holds.get(hold_id)

    def decided_outcome(self, transfer_id: str) -> _Decided | None:
        found = self.decided.get(transfer_id)
        return found if found is not None else self._state.decided.get(transfer_id)

    def change(
        self,
        account_id: str,
        *,
        debits_pending: int = 0,
        debits_posted: int = 0,
        credits_pending: int = 0,
        credits_posted: int = 0,
    ) -> None:
        """Add the given amounts to the account's totals."""
        account = self.account(account_id)
        assert account is not None
        # The constructor and plain ints, not dataclasses.replace and a delta
        # object: this runs twice per transfer, and both cost several times more.
        changed = AccountBalance(
            id=account.id,
            ledger=account.ledger,
            code=account.code,
            flags=account.flags,
            debits_pending=account.debits_pending + debits_pending,
            debits_posted=account.debits_posted + debits_posted,
            credits_pending=account.credits_pending + credits_pending,
            credits_posted=account.credits_posted + credits_posted,
        )
        assert_account_valid(changed)
        self.accounts[account_id] = changed

    def commit(self) -> None:
        self._state.accounts.update(self.accounts)
        self._state.holds.update(self.holds)
        self._state.decided.update(self.decided)
        self._state.records.extend(self.records)


def plan_batch(
    transfers: Sequence[NewTransfer],
    /,
    *,
    accounts: Mapping[str, AccountBalance],
    holds: Mapping[str, PendingHold],
    existing: Mapping[str, StoredOutcome],
    now_us: int,
    last_timestamp_us: int,
) -> BatchPlan:
    """Decide every transfer of the batch and what to write.

    ``accounts`` are the loaded (and, on PostgreSQL, locked) accounts; an
    account missing from it does not exist. ``holds`` are the pending
    transfers the batch references plus those past their deadline on the
    loaded accounts. ``existing`` holds the stored outcomes of the batch's ids
    and of the pending ids it references that name no hold in ``holds``.
    ``last_timestamp_us`` is the newest stored timestamp: new ones are
    strictly greater, so history pages by time.
    """
    return plan_batches(
        (transfers,),
        accounts=accounts,
        holds=holds,
        existing=existing,
        now_us=now_us,
        last_timestamp_us=last_timestamp_us,
    )


def plan_batches(
    batches: Sequence[Sequence[NewTransfer]],
    /,
    *,
    accounts: Mapping[str, AccountBalance],
    holds: Mapping[str, PendingHold],
    existing: Mapping[str, StoredOutcome],
    now_us: int,
    last_timestamp_us: int,
) -> BatchPlan:
    """Decide several independent batches in one plan (group commit).

    Each batch is decided exactly as ``plan_batch`` would decide it if it were
    applied alone, right after the batches before it: it sees their effects,
    its chains end where the batch ends (a chain left open fails only that
    batch), and a batch over ``BATCH_SIZE_MAX`` is refused alone. The inputs
    are those of ``plan_batch`` for all the batches together. The outcomes are
    the batches' outcomes concatenated in order; split them by batch length.
    """
    planned = [batch for batch in batches if len(batch) <= BATCH_SIZE_MAX]
    # A group is never larger than one maximal batch, so that no database
    # transaction grows beyond what unbatched calls already produce.
    assert sum(len(batch) for batch in planned) <= BATCH_SIZE_MAX
    _assert_inputs(accounts, holds, now_us=now_us, last_timestamp_us=last_timestamp_us)
    state = _State(accounts, holds, existing)
    first_timestamp_us = max(now_us, last_timestamp_us + 1)
    expired_count = _expire_holds(state, now_us=now_us, first_timestamp_us=first_timestamp_us)
    batch_timestamp_us = first_timestamp_us + expired_count
    outcomes: list[TransferOutcome] = []
    for batch in batches:
        if len(batch) > BATCH_SIZE_MAX:
            outcomes.extend(TransferOutcome(t.id, TransferResult.BATCH_TOO_LARGE) for t in batch)
            continue
        outcomes.extend(
            _plan_one_batch(state, batch, now_us=now_us, timestamp_us=batch_timestamp_us)
        )
        batch_timestamp_us += len(batch)
    assert batch_timestamp_us <= TIMESTAMP_US_MAX
    plan = _finish(state, accounts, holds, outcomes=outcomes, expired_count=expired_count)
    _assert_plan(plan, [transfer for batch in batches for transfer in batch])
    return plan


def _plan_one_batch(
    state: _State, transfers: Sequence[NewTransfer], *, now_us: int, timestamp_us: int
) -> list[TransferOutcome]:
    """Each transfer may take the timestamp ``timestamp_us`` + its index."""
    outcomes: list[TransferOutcome] = []
    for start, chain, is_open in _chains(transfers):
        if is_open:
            outcomes.extend(_open_chain_outcomes(state, chain))
        else:
            outcomes.extend(
                _plan_chain(state, chain, now_us=now_us, first_timestamp_us=timestamp_us + start)
            )
    assert len(outcomes) == len(transfers)
    return outcomes


def _assert_inputs(
    accounts: Mapping[str, AccountBalance],
    holds: Mapping[str, PendingHold],
    *,
    now_us: int,
    last_timestamp_us: int,
) -> None:
    assert 0 < now_us < TIMESTAMP_US_MAX
    assert 0 <= last_timestamp_us < TIMESTAMP_US_MAX
    for account_id, account in accounts.items():
        assert account_id == account.id
        assert_account_valid(account)
    for hold_id, hold in holds.items():
        assert hold_id == hold.id


def _chains(
    transfers: Sequence[NewTransfer],
) -> Iterator[tuple[int, Sequence[NewTransfer], bool]]:
    """Each chain with its start index and whether the batch left it open."""
    start = 0
    for index, transfer in enumerate(transfers):
        if TransferFlags.LINKED not in transfer.flags:
            yield start, transfers[start : index + 1], False
            start = index + 1
    if start < len(transfers):
        yield start, transfers[start:], True


def _open_chain_outcomes(state: _State, chain: Sequence[NewTransfer]) -> list[TransferOutcome]:
    # A malformed batch: the chain is refused as a whole, without evaluation.
    outcomes = [_unevaluated(state, t, TransferResult.LINKED_EVENT_FAILED) for t in chain[:-1]]
    outcomes.append(_unevaluated(state, chain[-1], TransferResult.LINKED_EVENT_CHAIN_OPEN))
    return outcomes


def _unevaluated(state: _State, transfer: NewTransfer, result: TransferResult) -> TransferOutcome:
    """A member of a refused chain that was not evaluated gets ``result`` unless
    its id was decided before: a decided id always answers with its outcome."""
    prior = state.decided.get(transfer.id)
    if (
        prior is not None
        and validate_transfer(transfer) is TransferResult.OK
        and prior.fingerprint == transfer_fingerprint(transfer)
    ):
        return TransferOutcome(
            transfer.id, prior.result, replayed=True, timestamp_us=prior.timestamp_us
        )
    return TransferOutcome(transfer.id, result)


def _expire_holds(state: _State, *, now_us: int, first_timestamp_us: int) -> int:
    """Void every hold past its deadline whose two accounts are loaded."""
    expired = [
        hold
        for hold in state.holds.values()
        if hold.is_past_deadline(now_us)
        and hold.debit_account_id in state.accounts
        and hold.credit_account_id in state.accounts
    ]
    expired.sort(key=lambda hold: (hold.expires_at_us or 0, hold.id))
    for index, hold in enumerate(expired):
        draft = _Draft(state)
        _resolve(draft, hold, PendingStatus.EXPIRED, posted_amount=0)
        draft.records.append(
            TransferRecord(
                id=expiry_transfer_id(hold.id),
                debit_account_id=hold.debit_account_id,
                credit_account_id=hold.credit_account_id,
                amount=hold.amount,
                ledger=hold.ledger,
                code=TransferCode.EXPIRY,
                flags=TransferFlags.VOID_PENDING,
                pending_id=hold.id,
                timeout_s=0,
                user_data=hold.user_data,
                timestamp_us=first_timestamp_us + index,
            )
        )
        draft.commit()
    return len(expired)


def _plan_chain(
    state: _State, chain: Sequence[NewTransfer], *, now_us: int, first_timestamp_us: int
) -> list[TransferOutcome]:
    draft = _Draft(state)
    outcomes: list[TransferOutcome] = []
    for index, transfer in enumerate(chain):
        outcome = _plan_transfer(
            draft, transfer, now_us=now_us, timestamp_us=first_timestamp_us + index
        )
        outcomes.append(outcome)
        if outcome.result is not TransferResult.OK:
            return _fail_chain(state, chain, outcomes)
    draft.commit()
    return outcomes


def _fail_chain(
    state: _State, chain: Sequence[NewTransfer], outcomes: list[TransferOutcome]
) -> list[TransferOutcome]:
    """The draft is dropped; only a state-dependent failure is remembered."""
    failed_index = len(outcomes) - 1
    failed = outcomes[failed_index]
    if failed.result in STORED_RESULTS and not failed.replayed:
        assert failed.timestamp_us is not None
        fingerprint = transfer_fingerprint(chain[failed_index])
        state.store_failure(
            StoredFailure(failed.id, fingerprint, failed.result, failed.timestamp_us)
        )
    # Every other member fails with the chain, unless an earlier batch decided
    # it: that outcome stands. (A replay of a member applied earlier in this
    # very chain does not count; the draft it saw is gone.)
    return [
        failed
        if index == failed_index
        else _unevaluated(state, transfer, TransferResult.LINKED_EVENT_FAILED)
        for index, transfer in enumerate(chain)
    ]


def _plan_transfer(
    draft: _Draft, transfer: NewTransfer, *, now_us: int, timestamp_us: int
) -> TransferOutcome:
    result = validate_transfer(transfer)
    if result is not TransferResult.OK:
        return TransferOutcome(transfer.id, result)
    prior = draft.decided_outcome(transfer.id)
    if prior is not None:
        if prior.fingerprint != transfer_fingerprint(transfer):
            return TransferOutcome(transfer.id, TransferResult.EXISTS_WITH_DIFFERENT_FIELDS)
        return TransferOutcome(
            transfer.id, prior.result, replayed=True, timestamp_us=prior.timestamp_us
        )
    result, hold = _check_against_state(draft, transfer, now_us=now_us)
    if result is not TransferResult.OK:
        return TransferOutcome(transfer.id, result, timestamp_us=timestamp_us)
    _apply(draft, transfer, hold, timestamp_us=timestamp_us)
    draft.decided[transfer.id] = _AppliedHere(transfer, timestamp_us)
    return TransferOutcome(transfer.id, TransferResult.OK, timestamp_us=timestamp_us)


def _check_against_state(
    draft: _Draft, transfer: NewTransfer, *, now_us: int
) -> tuple[TransferResult, PendingHold | None]:
    debit = draft.account(transfer.debit_account_id)
    if debit is None:
        return TransferResult.DEBIT_ACCOUNT_NOT_FOUND, None
    credit = draft.account(transfer.credit_account_id)
    if credit is None:
        return TransferResult.CREDIT_ACCOUNT_NOT_FOUND, None
    if debit.ledger != credit.ledger:
        return TransferResult.ACCOUNTS_HAVE_DIFFERENT_LEDGERS, None
    if transfer.ledger != debit.ledger:
        return TransferResult.TRANSFER_LEDGER_MISMATCH, None
    if TransferFlags.POST_PENDING in transfer.flags or TransferFlags.VOID_PENDING in transfer.flags:
        return _check_hold(draft, transfer, now_us=now_us)
    return _check_balances(debit, credit, transfer.amount), None


def _check_hold(
    draft: _Draft, transfer: NewTransfer, *, now_us: int
) -> tuple[TransferResult, PendingHold | None]:
    assert transfer.pending_id is not None
    hold = draft.hold(transfer.pending_id)
    if hold is None:
        prior = draft.decided_outcome(transfer.pending_id)
        if prior is not None and prior.result is TransferResult.OK:
            return TransferResult.PENDING_TRANSFER_NOT_PENDING, None
        return TransferResult.PENDING_TRANSFER_NOT_FOUND, None
    if hold.debit_account_id != transfer.debit_account_id:
        return TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT, None
    if hold.credit_account_id != transfer.credit_account_id:
        return TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT, None
    if hold.status is PendingStatus.POSTED:
        return TransferResult.PENDING_TRANSFER_ALREADY_POSTED, None
    if hold.status is PendingStatus.VOIDED:
        return TransferResult.PENDING_TRANSFER_ALREADY_VOIDED, None
    if hold.status is PendingStatus.EXPIRED or hold.is_past_deadline(now_us):
        return TransferResult.PENDING_TRANSFER_EXPIRED, None
    if TransferFlags.POST_PENDING in transfer.flags and transfer.amount > hold.amount:
        return TransferResult.PENDING_AMOUNT_EXCEEDED, None
    if TransferFlags.VOID_PENDING in transfer.flags and transfer.amount != hold.amount:
        return TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, None
    return TransferResult.OK, hold


def _check_balances(debit: AccountBalance, credit: AccountBalance, amount: int) -> TransferResult:
    debits_total = debit.debits_pending + debit.debits_posted
    if debits_total + amount > ACCOUNT_TOTAL_MAX:
        return TransferResult.OVERFLOWS_DEBITS
    if credit.credits_pending + credit.credits_posted + amount > ACCOUNT_TOTAL_MAX:
        return TransferResult.OVERFLOWS_CREDITS
    must_not_exceed = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS in debit.flags
    if must_not_exceed and debits_total + amount > debit.credits_posted:
        return TransferResult.EXCEEDS_CREDITS
    return TransferResult.OK


def _apply(
    draft: _Draft, transfer: NewTransfer, hold: PendingHold | None, *, timestamp_us: int
) -> None:
    amount = transfer.amount
    if TransferFlags.POST_PENDING in transfer.flags:
        assert hold is not None
        _resolve(draft, hold, PendingStatus.POSTED, posted_amount=amount)
    elif TransferFlags.VOID_PENDING in transfer.flags:
        assert hold is not None
        _resolve(draft, hold, PendingStatus.VOIDED, posted_amount=0)
    elif TransferFlags.PENDING in transfer.flags:
        draft.change(transfer.debit_account_id, debits_pending=amount)
        draft.change(transfer.credit_account_id, credits_pending=amount)
        draft.holds[transfer.id] = _new_hold(transfer, timestamp_us=timestamp_us)
    else:
        draft.change(transfer.debit_account_id, debits_posted=amount)
        draft.change(transfer.credit_account_id, credits_posted=amount)
    draft.records.append(_record(transfer, timestamp_us=timestamp_us))


def _resolve(
    draft: _Draft, hold: PendingHold, status: PendingStatus, *, posted_amount: int
) -> None:
    """Take the hold out of pending; ``posted_amount`` of it is posted, the rest released."""
    assert hold.status is PendingStatus.PENDING
    assert status is not PendingStatus.PENDING
    assert 0 <= posted_amount <= hold.amount
    assert (posted_amount > 0) == (status is PendingStatus.POSTED)
    draft.change(hold.debit_account_id, debits_pending=-hold.amount, debits_posted=posted_amount)
    draft.change(hold.credit_account_id, credits_pending=-hold.amount, credits_posted=posted_amount)
    draft.holds[hold.id] = replace(hold, status=status)


def _new_hold(transfer: NewTransfer, *, timestamp_us: int) -> PendingHold:
    expires_at_us = None
    if transfer.timeout_s > 0:
        expires_at_us = timestamp_us + transfer.timeout_s * _MICROSECONDS_PER_SECOND
    return PendingHold(
        id=transfer.id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        amount=transfer.amount,
        ledger=transfer.ledger,
        status=PendingStatus.PENDING,
        expires_at_us=expires_at_us,
        user_data=transfer.user_data,
    )


def _record(transfer: NewTransfer, *, timestamp_us: int) -> TransferRecord:
    return TransferRecord(
        id=transfer.id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        amount=transfer.amount,
        ledger=transfer.ledger,
        code=transfer.code,
        flags=transfer.flags,
        pending_id=transfer.pending_id,
        timeout_s=transfer.timeout_s,
        user_data=transfer.user_data,
        timestamp_us=timestamp_us,
    )


def _finish(
    state: _State,
    accounts_before: Mapping[str, AccountBalance],
    holds_before: Mapping[str, PendingHold],
    *,
    outcomes: list[TransferOutcome],
    expired_count: int,
) -> BatchPlan:
    deltas: dict[str, BalanceDelta] = {}
    # Per ledger: (debits_pending - credits_pending, debits_posted - credits_posted).
    imbalance: dict[LedgerId, tuple[int, int]] = {}
    for account_id, after in state.accounts.items():
        before = accounts_before[account_id]
        if after == before:
            continue
        delta = BalanceDelta(
            debits_pending=after.debits_pending - before.debits_pending,
            debits_posted=after.debits_posted - before.debits_posted,
            credits_pending=after.credits_pending - before.credits_pending,
            credits_posted=after.credits_posted - before.credits_posted,
        )
        deltas[account_id] = delta
        pending, posted = imbalance.get(after.ledger, (0, 0))
        imbalance[after.ledger] = (
            pending + delta.debits_pending - delta.credits_pending,
            posted + delta.debits_posted - delta.credits_posted,
        )
    # Double entry: a batch never creates or destroys money on any ledger.
    assert all(sums == (0, 0) for sums in imbalance.values()), imbalance
    created = tuple(hold for hold in state.holds.values() if hold.id not in holds_before)
    resolved = {
        hold.id: hold.status
        for hold in state.holds.values()
        if hold.id in holds_before and hold.status is not holds_before[hold.id].status
    }
    return BatchPlan(
        outcomes=tuple(outcomes),
        records=tuple(state.records),
        failures=tuple(state.failures),
        account_deltas=deltas,
        holds_created=created,
        holds_resolved=resolved,
        expired_count=expired_count,
    )


def _assert_plan(plan: BatchPlan, transfers: Sequence[NewTransfer]) -> None:
    """Post-conditions: one outcome per transfer, in order, and one record per change."""
    assert len(plan.outcomes) == len(transfers)
    assert all(o.id == t.id for o, t in zip(plan.outcomes, transfers, strict=True))
    applied = sum(1 for o in plan.outcomes if o.result is TransferResult.OK and not o.replayed)
    assert len(plan.records) == plan.expired_count + applied
    timestamps = [record.timestamp_us for record in plan.records]
    assert timestamps == sorted(set(timestamps))
    assert all(hold.status is not PendingStatus.EXPIRED for hold in plan.holds_created)
