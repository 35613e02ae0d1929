"""Contract steps decided together: every open and every transition goes through here.

:mod:`exchange.use_cases.group_commit` hands a group of jobs to
:func:`apply_contract_group`, inside one transaction; a lone step is a group
of one. It loads what the whole group needs with one ``IN`` query per table,
decides each job on its own (the pure :func:`decide_transition`, the
spending rules, the ledger's answer for each contract), applies every
escrow hold and settlement in one ledger call, and writes the contracts,
their events and notices with one ``executemany`` per table. A refused job
gets its error as its outcome; the others commit.

A job that must see another job's outcome is answered ``DEFER`` and decided
in the next group:

* a second job for the same contract (or the same negotiation);
* a step on a contract this same group opens;
* a second opening by a buyer who has spending controls (a daily limit
  counts the holds before it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client.protocol import ContractUpdatedNotice, DeliveredNotice, Header
from escrow import EscrowError, HoldOrder, InsufficientFunds, Settlement, SettleOrder
from exchange.adapters import contract_store, listing_store
from exchange.adapters.contract_store import ContractMove
from exchange.adapters.negotiation_store import (
    accepted_negotiations,
    insert_negotiations,
    superseded_error,
)
from exchange.domain.contract_states import (
    DELIVERED_STATES,
    SETTLED_STATES,
    ContractEvent,
    ContractRow,
    Role,
    applied_event,
    check_party,
    due_at_ms,
    due_event,
    next_state,
)
from exchange.domain.listings import listing_id_for
from exchange.domain.negotiation_rules import AcceptedNegotiation
from exchange.domain.spending_rules import Controls, SpendingRequest
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.contract_views import object_ref_from_text, raw_json
from exchange.use_cases.exchange_accounts import agent_account_id, ensure_agent_accounts
from exchange.use_cases.exchange_context import ExchangeContext, OutboxNotice, escrow_refused_error
from exchange.use_cases.group_commit import DEFER, Defer
from exchange.use_cases.spending import spending_refusals

__all__ = [
    "Applied",
    "ContractJob",
    "OpenJob",
    "Step",
    "TransitionJob",
    "already_accepted_error",
    "apply_contract_group",
    "decide_transition",
]


@dataclass(frozen=True, slots=True)
class Step:
    """What one transition changes, decided from the loaded contract."""

    changes: dict[str, Any]
    settlement: Settlement | None = None
    detail: str = ""
    # False: the parties are not told (a buyer's cancel request is only history).
    notify: bool = True
    # True: the contract already is what the step asks for (a repeated
    # request); nothing is written and the answer is the contract as it is.
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A contract to open; everything but the database checks is done already."""

    contract: ContractRow
    negotiation: AcceptedNegotiation
    notices: list[OutboxNotice]
    # The buyer's spending, as its human's controls (if any) judge it.
    spending: SpendingRequest


@dataclass(frozen=True, slots=True)
class TransitionJob:
    """An event for one contract; ``event`` None means the timer that is due."""

    contract_id: str
    actor_id: str
    event: ContractEvent | None
    decide: Callable[[ContractRow, int], Step]
    role: Role | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class Applied:
    """A job's committed result: the contract as it now is, and its notices to publish."""

    contract: ContractRow
    notices: list[OutboxNotice]


ContractJob = OpenJob | TransitionJob
ContractOutcome = Applied | ExchangeError


# --- the decisions -------------------------------------------------------------------


def already_accepted_error(contract_id: str) -> ExchangeError:
    return ExchangeError(
        ErrorCode.QUOTE_ALREADY_ACCEPTED, "this quote was already accepted", contract_id=contract_id
    )


def no_active_listing_error(capability: str) -> ExchangeError:
    return ExchangeError(
        ErrorCode.NOT_FOUND, f"the provider has no active listing for {capability}"
    )


def insufficient_funds_error() -> ExchangeError:
    return ExchangeError(ErrorCode.INSUFFICIENT_FUNDS, "the available balance is below the price")


def decide_transition(
    contract: ContractRow, job: TransitionJob
) -> tuple[ContractRow, Step, ContractEvent] | None:
    """The contract after ``job``'s event, what changes, and the event applied (pure).

    None: ``job`` repeats what the contract already holds (the delivery,
    a buyer's cancel request), so nothing changes and the answer is the
    contract as it is. A party's event
    on a contract whose timer is already due is refused: the expiry counts
    even if the sweeper has not run yet.
    """
    acting_role = job.role or check_party(contract, job.actor_id)
    if _repeats_delivery(contract, job, acting_role):
        return None
    timer = due_event(contract, now_ms=job.now_ms)
    requested = timer if job.event is None else job.event
    if requested is None or (job.event is not None and timer is not None):
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            "a deadline of this contract has passed" if timer else "nothing is due",
            contract_id=contract.contract_id,
        )
    event = applied_event(requested, acting_role)
    to_state = next_state(contract, event, acting_role)
    step = job.decide(contract, job.now_ms)
    if step.repeat:
        return None
    updated = dataclasses.replace(
        contract, state=to_state, updated_at_ms=job.now_ms, **step.changes
    )
    return dataclasses.replace(updated, due_at_ms=_due_at(updated)), step, event


def _repeats_delivery(contract: ContractRow, job: TransitionJob, role: Role) -> bool:
    """Whether ``job`` is a retry of the deliver whose result ``contract`` holds.

    Clients retry ``contract.deliver`` after a timeout or ``unavailable``
    until the deadline, so a delivery that was applied may come again (also
    after the contract moved on: disputed, released, resolved). The
    deliver's own step says which result it brings (the ``result_sha256`` it
    would write) and checks it as the first time did (the sealed flag must be
    the contract's). A step that refuses, or another result, is no retry:
    the deliver is then refused as any deliver after the first one.
    """
    if (
        job.event is not ContractEvent.DELIVER
        or role is not Role.PROVIDER
        or contract.state not in DELIVERED_STATES
    ):
        return False
    try:
        step = job.decide(contract, job.now_ms)
    except ExchangeError:
        return False
    return bool(step.changes.get("result_sha256") == contract.result_sha256)


def move_for(before: ContractRow, after: ContractRow, step: Step) -> ContractMove:
    return ContractMove(
        before.contract_id,
        from_state=before.state,
        to_state=after.state,
        changes={
            **step.changes,
            "due_at_ms": after.due_at_ms,
            "updated_at_ms": after.updated_at_ms,
        },
    )


def hold_order(contract: ContractRow) -> HoldOrder:
    return HoldOrder(
        contract.contract_id, agent_account_id(contract.buyer_id), contract.price_millicredits
    )


def settle_order(contract: ContractRow, settlement: Settlement) -> SettleOrder:
    return SettleOrder(
        contract.contract_id,
        buyer_account_id=agent_account_id(contract.buyer_id),
        provider_account_id=agent_account_id(contract.provider_id),
        settlement=settlement,
    )


def event_values(
    contract: ContractRow, event: str, actor_id: str, detail: str, *, at_ms: int
) -> dict[str, Any]:
    return {
        "contract_id": contract.contract_id,
        "event": event,
        "actor_id": actor_id,
        "to_state": contract.state.value,
        "detail": detail,
        "at_ms": at_ms,
    }


def transition_notices(
    context: ExchangeContext,
    contract: ContractRow,
    event: ContractEvent,
    detail: str,
    *,
    requester_id: str,
) -> list[OutboxNotice]:
    """The news of a transition, to each party its reply does not already tell.

    The party whose request made the transition has the contract as it now
    is in its reply, so it gets a notice only of a settlement (the money
    moved; ``wait_settled`` waits for it). A buyer learns of a delivery
    from ``notice.delivered`` alone. (PROTOCOL.md section 1.7.1.)
    """
    told_by_reply = requester_id if contract.state not in SETTLED_STATES else None
    told_by_delivered = contract.buyer_id if event is ContractEvent.DELIVER else None
    notices = [
        updated_notice(context, agent_id, contract, event, detail)
        for agent_id in (contract.buyer_id, contract.provider_id)
        if agent_id not in (told_by_reply, told_by_delivered)
    ]
    if event is ContractEvent.DELIVER:
        assert contract.result_sha256 is not None
        result_sha256 = contract.result_sha256
        notices.append(
            context.notice(
                contract.buyer_id,
                lambda header: DeliveredNotice(
                    header=header,
                    contract_id=contract.contract_id,
                    result_sha256=result_sha256,
                    result=raw_json(contract.result or "null"),
                    result_ref=object_ref_from_text(contract.result_ref),
                    sealed=contract.seal_result,
                ),
            )
        )
    return notices


def updated_notice(
    context: ExchangeContext,
    agent_id: str,
    contract: ContractRow,
    event: ContractEvent,
    detail: str,
) -> OutboxNotice:
    def build(header: Header) -> ContractUpdatedNotice:
        return ContractUpdatedNotice(
            header=header,
            contract_id=contract.contract_id,
            state=contract.state,
            event=event.value,
            price_millicredits=contract.price_millicredits,
            fee_millicredits=contract.fee_millicredits,
            net_millicredits=contract.net_millicredits,
            refunded_millicredits=contract.refunded_millicredits,
            detail=detail[: protocol_limits.TEXT_LENGTH_MAX],
        )

    return context.notice(agent_id, build)


def _due_at(contract: ContractRow) -> int | None:
    if contract.state in SETTLED_STATES:
        return None
    return due_at_ms(
        contract.state,
        delivery_deadline_ms=contract.delivery_deadline_ms,
        review_deadline_ms=contract.review_deadline_ms,
        dispute_deadline_ms=contract.dispute_deadline_ms,
    )


# --- the group ---------------------------------------------------------------------


@dataclass(slots=True)
class _GroupWrites:
    """Everything a group writes, in the order it must be written."""

    opened: list[tuple[ContractRow, AcceptedNegotiation]] = dataclasses.field(default_factory=list)
    moves: list[ContractMove] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notices: list[OutboxNotice] = dataclasses.field(default_factory=list)

    async def write(self, context: ExchangeContext, connection: AsyncConnection) -> None:
        await contract_store.insert_contracts(connection, [contract for contract, _ in self.opened])
        await insert_negotiations(
            connection,
            [
                (negotiation, contract.contract_id, contract.created_at_ms)
                for contract, negotiation in self.opened
            ],
        )
        await contract_store.transition_contracts(connection, self.moves)
        await contract_store.add_contract_events(connection, self.events)
        await context.stage(connection, self.notices)


async def apply_contract_group(
    context: ExchangeContext, connection: AsyncConnection, jobs: list[ContractJob]
) -> list[ContractOutcome | Defer]:
    """Decide and write every job of a group in ``connection``'s transaction."""
    outcomes: list[ContractOutcome | Defer] = [DEFER] * len(jobs)
    opens = [(index, job) for index, job in enumerate(jobs) if isinstance(job, OpenJob)]
    steps = [(index, job) for index, job in enumerate(jobs) if isinstance(job, TransitionJob)]
    ready = await _openable(context, connection, opens, outcomes) if opens else []
    decided: list[_Decided] = []
    if steps:
        opening = {job.contract.contract_id for _, job in opens}
        decided = await _decided_transitions(connection, steps, outcomes, opening=opening)
    settling = [entry for entry in decided if entry.step.settlement is not None]
    # One ledger call for the whole group: its reads are paid once.
    hold_refusals, settle_refusals = await context.escrow.hold_and_settle_all(
        [hold_order(contract) for _, contract, _ in ready],
        [entry.settle_order() for entry in settling],
        connection=connection,
    )
    writes = _GroupWrites()
    _record_openings(context, ready, hold_refusals, outcomes, writes)
    refused = {
        entry.index: refusal
        for entry, refusal in zip(settling, settle_refusals, strict=True)
        if refusal is not None
    }
    _record_transitions(context, decided, refused, outcomes, writes)
    await writes.write(context, connection)
    return outcomes


_Ready = tuple[int, ContractRow, OpenJob]


async def _openable(
    context: ExchangeContext,
    connection: AsyncConnection,
    opens: Sequence[tuple[int, OpenJob]],
    outcomes: list[ContractOutcome | Defer],
) -> list[_Ready]:
    """The openings that pass every check but the escrow hold; the others get their outcome."""
    contracts = [job.contract for _, job in opens]
    # Locked before the ledger's rows, in the order every money path takes them.
    controls = await context.spending.locked_controls(
        connection, sorted({c.buyer_id for c in contracts})
    )
    checked = _first_of_each(opens, controls)
    existing = await contract_store.get_contracts(
        connection, [job.contract.contract_id for _, job in checked]
    )
    accepted = await accepted_negotiations(
        connection, [job.negotiation.negotiation_id for _, job in checked]
    )
    listings = await listing_store.get_listings(
        connection, [listing_id_for(c.provider_id, c.capability) for c in contracts]
    )
    ready: list[_Ready] = []
    for index, job in checked:
        contract = job.contract
        listing = listings.get(listing_id_for(contract.provider_id, contract.capability))
        if contract.contract_id in existing:
            outcomes[index] = already_accepted_error(contract.contract_id)
        elif job.negotiation.negotiation_id in accepted:
            outcomes[index] = superseded_error(accepted[job.negotiation.negotiation_id])
        elif listing is None or listing["status"] != "active":
            outcomes[index] = no_active_listing_error(contract.capability)
        else:
            schema = str(listing["output_schema"])
            ready.append((index, dataclasses.replace(contract, output_schema=schema), job))
    ready = await _within_spending_controls(context, connection, ready, controls, outcomes)
    if ready:
        parties = {agent for _, c, _ in ready for agent in (c.buyer_id, c.provider_id)}
        await ensure_agent_accounts(context.ledger, sorted(parties), connection=connection)
    return ready


def _first_of_each(
    opens: Sequence[tuple[int, OpenJob]], controls: Mapping[str, Controls]
) -> list[tuple[int, OpenJob]]:
    """The openings this group decides: the first of each contract, negotiation and
    controlled buyer (the others, left ``DEFER``, see its outcome in the next group)."""
    checked: list[tuple[int, OpenJob]] = []
    seen: set[str] = set()
    for index, job in opens:
        keys = {job.contract.contract_id, "negotiation:" + job.negotiation.negotiation_id}
        if job.contract.buyer_id in controls:
            keys.add("buyer:" + job.contract.buyer_id)
        if keys & seen:
            continue
        seen |= keys
        checked.append((index, job))
    return checked


async def _within_spending_controls(
    context: ExchangeContext,
    connection: AsyncConnection,
    ready: list[_Ready],
    controls: Mapping[str, Controls],
    outcomes: list[ContractOutcome | Defer],
) -> list[_Ready]:
    """The openings the buyers' humans allow; the others get the controls' refusal."""
    controlled = [entry for entry in ready if entry[1].buyer_id in controls]
    if not controlled:
        return ready
    refusals = await spending_refusals(
        controls,
        [job.spending for _, _, job in controlled],
        store=context.spending,
        ledger=context.ledger,
        connection=connection,
    )
    refused: set[int] = set()
    for (index, contract, _), refusal in zip(controlled, refusals, strict=True):
        if refusal is not None:
            outcomes[index] = refusal.error(contract_id=contract.contract_id)
            refused.add(index)
    return [entry for entry in ready if entry[0] not in refused]


def _record_openings(
    context: ExchangeContext,
    ready: Sequence[_Ready],
    hold_refusals: Sequence[EscrowError | None],
    outcomes: list[ContractOutcome | Defer],
    writes: _GroupWrites,
) -> None:
    for (index, contract, job), refusal in zip(ready, hold_refusals, strict=True):
        if isinstance(refusal, InsufficientFunds):
            outcomes[index] = insufficient_funds_error()
        elif refusal is not None:
            outcomes[index] = escrow_refused_error(refusal)
        else:
            writes.opened.append((contract, job.negotiation))
            writes.events.append(
                event_values(
                    contract,
                    ContractEvent.OPEN.value,
                    contract.buyer_id,
                    "",
                    at_ms=context.clock.now_ms(),
                )
            )
            writes.notices.extend(job.notices)
            outcomes[index] = Applied(contract, job.notices)


async def _decided_transitions(
    connection: AsyncConnection,
    steps: Sequence[tuple[int, TransitionJob]],
    outcomes: list[ContractOutcome | Defer],
    *,
    opening: set[str],
) -> list[_Decided]:
    """The steps that pass their checks, decided; the others get their outcome (or DEFER)."""
    loaded = await contract_store.get_contracts(
        connection,
        [job.contract_id for _, job in steps],
        for_update=connection.dialect.name == "postgresql",
    )
    decided: list[_Decided] = []
    seen = set(opening)
    for index, job in steps:
        if job.contract_id in seen:
            continue  # DEFER: it must see the outcome of the job before it
        seen.add(job.contract_id)
        contract = loaded.get(job.contract_id)
        try:
            if contract is None:
                raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
            transition = decide_transition(contract, job)
        except ExchangeError as refusal:
            outcomes[index] = refusal
            continue
        if transition is None:
            outcomes[index] = Applied(contract, [])  # a repeated request: nothing to write
            continue
        updated, step, event = transition
        decided.append(_Decided(index, job, contract, updated, step, event))
    return decided


def _record_transitions(
    context: ExchangeContext,
    decided: Sequence[_Decided],
    refused: dict[int, EscrowError],
    outcomes: list[ContractOutcome | Defer],
    writes: _GroupWrites,
) -> None:
    for entry in decided:
        if entry.index in refused:
            outcomes[entry.index] = escrow_refused_error(refused[entry.index])
            continue
        writes.moves.append(move_for(entry.before, entry.after, entry.step))
        writes.events.append(
            event_values(
                entry.after,
                entry.event.value,
                entry.job.actor_id,
                entry.step.detail,
                at_ms=context.clock.now_ms(),
            )
        )
        notices: list[OutboxNotice] = []
        if entry.step.notify:
            notices = transition_notices(
                context,
                entry.after,
                entry.event,
                entry.step.detail,
                requester_id=entry.job.actor_id,
            )
        writes.notices.extend(notices)
        outcomes[entry.index] = Applied(entry.after, notices)


@dataclass(frozen=True, slots=True)
class _Decided:
    """A group's step that passed its checks, before its settlement is applied."""

    index: int
    job: TransitionJob
    before: ContractRow
    after: ContractRow
    step: Step
    event: ContractEvent

    def settle_order(self) -> SettleOrder:
        assert self.step.settlement is not None
        return settle_order(self.before, self.step.settlement)
