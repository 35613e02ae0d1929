"""The contract lifecycle table allows exactly its transitions, each to one role.

Proves on plain ``ContractRow`` values, with no exchange running, that
``next_state`` gives the documented target for each allowed (state, event)
pair when the right role asks, refuses the wrong role with ``forbidden`` and
every other (state, event) pair, for every role, with ``invalid_state``
(every state x event x role combination is checked against a table written
out here). It pins how a party's cancel becomes an event (``applied_event``),
which timer event each holding state fires just after (never at) its
deadline and which deadline ``due_at_ms`` picks, that only the two parties
have a role (a stranger gets ``not_found``, as for a missing contract), and
that a quote's contract id is a fixed function of its bytes.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from exchange.domain.contract_states import (
    HOLDING_STATES,
    SETTLED_STATES,
    ContractEvent,
    ContractRow,
    ContractState,
    Role,
    applied_event,
    check_party,
    contract_id_for_quote,
    due_at_ms,
    due_event,
    next_state,
    provider_share_bps,
    role_of,
)
from exchange.errors import ErrorCode, ExchangeError

State, Event = ContractState, ContractEvent
BUYER_ID = "buyer-agent"
PROVIDER_ID = "provider-agent"
DEADLINE_MS = 1_700_000_000_000

# The lifecycle of docs/PROTOCOL.md, written out independently of the code.
ALLOWED: dict[tuple[ContractState, ContractEvent], tuple[ContractState, Role]] = {
    (State.OPEN, Event.DELIVER): (State.DELIVERED, Role.PROVIDER),
    (State.OPEN, Event.PROVIDER_CANCEL): (State.REFUNDED, Role.PROVIDER),
    # A buyer's cancel only records the request: the contract stays open.
    (State.OPEN, Event.CANCEL_REQUEST): (State.OPEN, Role.BUYER),
    (State.OPEN, Event.DEADLINE_PASSED): (State.REFUNDED, Role.EXCHANGE),
    (State.DELIVERED, Event.ACCEPT): (State.RELEASED, Role.BUYER),
    (State.DELIVERED, Event.REJECT): (State.DISPUTED, Role.BUYER),
    (State.DELIVERED, Event.REVIEW_WINDOW_PASSED): (State.RELEASED, Role.EXCHANGE),
    (State.DISPUTED, Event.RESOLVE): (State.RESOLVED, Role.OPERATOR),
    (State.DISPUTED, Event.DISPUTE_WINDOW_PASSED): (State.RESOLVED, Role.EXCHANGE),
}

TIMER_EVENT = {
    State.OPEN: Event.DEADLINE_PASSED,
    State.DELIVERED: Event.REVIEW_WINDOW_PASSED,
    State.DISPUTED: Event.DISPUTE_WINDOW_PASSED,
}


def contract(state: ContractState = State.OPEN, *, due_ms: int | None = DEADLINE_MS) -> ContractRow:
    return ContractRow(
        contract_id="c_" + "0f" * 16,
        buyer_id=BUYER_ID,
        provider_id=PROVIDER_ID,
        capability="text.summarize",
        state=state,
        price_millicredits=1_000,
        fee_millicredits=50,
        fee_rate_bps=500,
        net_millicredits=None,
        refunded_millicredits=0,
        delivery_deadline_ms=DEADLINE_MS,
        review_deadline_ms=None,
        dispute_deadline_ms=None,
        due_at_ms=due_ms,
        quote_envelope="",
        acceptance_envelope="",
        record_envelope="",
        task="{}",
        result=None,
        result_sha256=None,
        result_ref=None,
        output_schema="{}",
        seal_result=False,
        dispute_reason=None,
        buyer_cancel_requested=False,
        resolution=None,
        created_at_ms=DEADLINE_MS - 60_000,
        updated_at_ms=DEADLINE_MS - 60_000,
    )


# --- next_state --------------------------------------------------------------------

CANCELS = {Event.PROVIDER_CANCEL, Event.CANCEL_REQUEST}
EVERY_COMBINATION = list(itertools.product(ContractState, ContractEvent, Role))


@pytest.mark.parametrize(
    ("state", "event", "role"),
    EVERY_COMBINATION,
    ids=[f"{s.value}-{e.value}-{r.value}" for s, e, r in EVERY_COMBINATION],
)
def test_next_state_allows_only_the_table_and_refuses_the_rest_with_a_typed_code(
    state: ContractState, event: ContractEvent, role: Role
) -> None:
    row = contract(state)
    allowed = ALLOWED.get((state, event))
    if allowed is not None and allowed[1] is role:
        assert next_state(row, event, role) is allowed[0]
        return
    with pytest.raises(ExchangeError) as refused:
        next_state(row, event, role)
    assert refused.value.contract_id == row.contract_id
    if allowed is None:
        assert refused.value.code is ErrorCode.INVALID_STATE
        if event in CANCELS:
            assert refused.value.message == (
                f"only an open contract can be cancelled; this one is {state.value}"
            )
        else:
            assert refused.value.message == (
                f"cannot {event.value.replace('_', ' ')} a contract that is {state.value}"
            )
    else:
        assert refused.value.code is ErrorCode.FORBIDDEN
        assert refused.value.message.startswith(f"only the {allowed[1].value} can")


def test_the_refusal_says_what_cannot_be_done_in_words() -> None:
    with pytest.raises(ExchangeError) as refused:
        next_state(contract(State.DISPUTED), Event.ACCEPT, Role.BUYER)
    assert refused.value.message == "cannot accept a contract that is disputed"
    with pytest.raises(ExchangeError) as late_cancel:
        next_state(contract(State.DELIVERED), Event.PROVIDER_CANCEL, Role.PROVIDER)
    assert late_cancel.value.message == (
        "only an open contract can be cancelled; this one is delivered"
    )
    with pytest.raises(ExchangeError) as forbidden:
        next_state(contract(State.DELIVERED), Event.ACCEPT, Role.PROVIDER)
    assert forbidden.value.message == "only the buyer can accept"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (Role.PROVIDER, Event.PROVIDER_CANCEL),
        (Role.BUYER, Event.CANCEL_REQUEST),
        # Nobody else cancels: the request stays a bare cancel, which no state accepts.
        (Role.OPERATOR, Event.CANCEL),
        (Role.EXCHANGE, Event.CANCEL),
    ],
)
def test_a_cancel_becomes_the_event_of_whoever_asks(role: Role, expected: ContractEvent) -> None:
    assert applied_event(Event.CANCEL, role) is expected


def test_every_event_but_cancel_is_applied_as_asked() -> None:
    for event, role in itertools.product(ContractEvent, Role):
        if event is not Event.CANCEL:
            assert applied_event(event, role) is event


def test_settled_states_are_final_and_holding_states_can_always_end() -> None:
    assert set(ContractState) == HOLDING_STATES | SETTLED_STATES
    assert not HOLDING_STATES & SETTLED_STATES
    for state, _event in ALLOWED:
        assert state in HOLDING_STATES
    # From every holding state, the exchange's timer alone reaches a settled state.
    for state in HOLDING_STATES:
        reached = state
        while reached in HOLDING_STATES:
            reached = next_state(contract(reached), TIMER_EVENT[reached], Role.EXCHANGE)
        assert reached in SETTLED_STATES


# --- timers ------------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(HOLDING_STATES))
def test_a_timer_fires_only_after_its_deadline(state: ContractState) -> None:
    row = contract(state, due_ms=DEADLINE_MS)
    assert due_event(row, now_ms=DEADLINE_MS - 1) is None
    assert due_event(row, now_ms=DEADLINE_MS) is None
    assert due_event(row, now_ms=DEADLINE_MS + 1) is TIMER_EVENT[state]
    # And the event it fires is one the exchange may cause in that state.
    assert next_state(row, TIMER_EVENT[state], Role.EXCHANGE) in SETTLED_STATES


@pytest.mark.parametrize("state", sorted(ContractState))
def test_no_timer_fires_without_a_deadline(state: ContractState) -> None:
    assert due_event(contract(state, due_ms=None), now_ms=DEADLINE_MS * 2) is None


@pytest.mark.parametrize("state", sorted(SETTLED_STATES))
def test_a_settled_contract_fires_no_timer_even_with_a_stale_deadline(
    state: ContractState,
) -> None:
    assert due_event(contract(state, due_ms=DEADLINE_MS), now_ms=DEADLINE_MS + 1) is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.OPEN, 100),
        (State.DELIVERED, 200),
        (State.DISPUTED, 300),
        (State.RELEASED, None),
        (State.REFUNDED, None),
        (State.RESOLVED, None),
    ],
)
def test_due_at_is_the_deadline_of_the_state(state: ContractState, expected: int | None) -> None:
    assert (
        due_at_ms(state, delivery_deadline_ms=100, review_deadline_ms=200, dispute_deadline_ms=300)
        == expected
    )


def test_a_state_whose_deadline_is_not_set_yet_is_not_due() -> None:
    deadline = due_at_ms(
        State.DELIVERED, delivery_deadline_ms=100, review_deadline_ms=None, dispute_deadline_ms=300
    )
    assert deadline is None


# --- parties -----------------------------------------------------------------------


def test_the_buyer_and_the_provider_are_the_parties() -> None:
    row = contract()
    assert (role_of(row, BUYER_ID), check_party(row, BUYER_ID)) == (Role.BUYER, Role.BUYER)
    assert (role_of(row, PROVIDER_ID), check_party(row, PROVIDER_ID)) == (
        Role.PROVIDER,
        Role.PROVIDER,
    )


@pytest.mark.parametrize("agent_id", ["stranger-agent", "", BUYER_ID.upper()])
def test_a_stranger_is_told_the_contract_does_not_exist(agent_id: str) -> None:
    row = contract()
    assert role_of(row, agent_id) is None
    with pytest.raises(ExchangeError) as refused:
        check_party(row, agent_id)
    assert refused.value.code is ErrorCode.NOT_FOUND
    # No contract id in the answer: it must look like one for a missing contract.
    assert refused.value.contract_id is None
    assert refused.value.message == "no such contract"


def test_a_contract_row_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        contract().state = State.RELEASED  # type: ignore[misc]


# --- contract ids ------------------------------------------------------------------


def test_a_quotes_contract_id_is_a_fixed_digest_of_its_bytes() -> None:
    # Pinned: contracts already stored carry ids derived this way.
    assert contract_id_for_quote(b"a signed quote") == "c_51c655badf4759ff9a47d7918963c8b5"
    assert contract_id_for_quote(b"a signed quote") == contract_id_for_quote(b"a signed quote")


def test_a_quote_differing_in_one_byte_gets_another_contract_id() -> None:
    ids = {contract_id_for_quote(b"quote %d" % number) for number in range(1_000)}
    assert len(ids) == 1_000
    assert all(len(contract_id) == 34 and contract_id.startswith("c_") for contract_id in ids)


@pytest.mark.parametrize(
    ("event", "expected_bps"),
    [
        (ContractEvent.ACCEPT, 10_000),
        (ContractEvent.REVIEW_WINDOW_PASSED, 10_000),
        (ContractEvent.PROVIDER_CANCEL, 0),
        (ContractEvent.DEADLINE_PASSED, 0),
        (ContractEvent.DISPUTE_WINDOW_PASSED, 2_500),
        (ContractEvent.RESOLVE, 7_000),
    ],
)
def test_each_settling_event_gives_the_provider_its_share(
    event: ContractEvent, expected_bps: int
) -> None:
    share = provider_share_bps(event, resolved_bps=7_000, dispute_default_bps=2_500)
    assert share == expected_bps


@pytest.mark.parametrize(
    "event", [ContractEvent.DELIVER, ContractEvent.REJECT, ContractEvent.CANCEL_REQUEST]
)
def test_an_event_that_settles_nothing_has_no_share(event: ContractEvent) -> None:
    with pytest.raises(AssertionError):
        provider_share_bps(event, dispute_default_bps=0)
