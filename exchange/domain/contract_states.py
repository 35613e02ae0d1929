"""The contract lifecycle (pure): events, who may cause them, and timers.

The states are the wire's (:class:`agent_client.protocol.ContractState`):
one enum for the protocol, the exchange, escrow and the portal.

::

    open ──deliver──────────────▶ delivered ──accept / review window passed──▶ released
      │                              │
      ├─ deadline passed ──┐         └──reject──▶ disputed ──resolve / dispute window──▶ resolved
      └─ provider cancels ─┴──▶ refunded   (a buyer's cancel is a request until then)

``open``, ``delivered`` and ``disputed`` hold the price in escrow; the other
states have settled it: ``released`` paid the provider in full (minus the
fee), ``refunded`` returned it all to the buyer, ``resolved`` applied an
operator's (or the default) outcome: all, nothing, or a split.

Timers are data: each holding state has a deadline, and :func:`due_event`
says which event a deadline fires. The sweeper and every read apply due
events, so an expiry counts even before the sweeper runs. The repository
applies each transition as a compare-and-set on the state, so of a release,
a refund and an expiry racing on one contract exactly one wins.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from agent_client.protocol import DELIVERED_STATES, HOLDING_STATES, SETTLED_STATES, ContractState
from exchange.errors import ErrorCode, ExchangeError

__all__ = [
    "DELIVERED_STATES",
    "HOLDING_STATES",
    "SETTLED_STATES",
    "ContractEvent",
    "ContractRow",
    "ContractState",
    "Role",
    "applied_event",
    "check_party",
    "contract_id_for_quote",
    "due_at_ms",
    "due_event",
    "next_state",
    "provider_share_bps",
]


class ContractEvent(enum.StrEnum):
    OPEN = "open"  # how a contract starts; not a transition
    DELIVER = "deliver"
    ACCEPT = "accept"
    REJECT = "reject"
    # What a party asks for with ``contract.cancel``; its role decides the
    # event applied (``applied_event``): the provider's cancel refunds at once,
    # a buyer's is only a request until the provider cancels too.
    CANCEL = "cancel"
    CANCEL_REQUEST = "cancel_request"
    PROVIDER_CANCEL = "provider_cancel"
    DEADLINE_PASSED = "deadline_passed"
    REVIEW_WINDOW_PASSED = "review_window_passed"
    RESOLVE = "resolve"
    DISPUTE_WINDOW_PASSED = "dispute_window_passed"


class Role(enum.StrEnum):
    BUYER = "buyer"
    PROVIDER = "provider"
    OPERATOR = "operator"
    EXCHANGE = "exchange"  # timers


_TRANSITIONS: dict[tuple[ContractState, ContractEvent], tuple[ContractState, Role]] = {
    (ContractState.OPEN, ContractEvent.DELIVER): (ContractState.DELIVERED, Role.PROVIDER),
    (ContractState.OPEN, ContractEvent.PROVIDER_CANCEL): (ContractState.REFUNDED, Role.PROVIDER),
    (ContractState.OPEN, ContractEvent.CANCEL_REQUEST): (ContractState.OPEN, Role.BUYER),
    (ContractState.OPEN, ContractEvent.DEADLINE_PASSED): (ContractState.REFUNDED, Role.EXCHANGE),
    (ContractState.DELIVERED, ContractEvent.ACCEPT): (ContractState.RELEASED, Role.BUYER),
    (ContractState.DELIVERED, ContractEvent.REJECT): (ContractState.DISPUTED, Role.BUYER),
    (ContractState.DELIVERED, ContractEvent.REVIEW_WINDOW_PASSED): (
        ContractState.RELEASED,
        Role.EXCHANGE,
    ),
    (ContractState.DISPUTED, ContractEvent.RESOLVE): (ContractState.RESOLVED, Role.OPERATOR),
    (ContractState.DISPUTED, ContractEvent.DISPUTE_WINDOW_PASSED): (
        ContractState.RESOLVED,
        Role.EXCHANGE,
    ),
}


@dataclass(frozen=True, slots=True)
class ContractRow:
    contract_id: str
    buyer_id: str
    provider_id: str
    capability: str
    state: ContractState
    price_millicredits: int
    # Before settlement: the fee if released in full (as in the signed
    # record). After: the fee actually charged.
    fee_millicredits: int
    fee_rate_bps: int
    net_millicredits: int | None
    refunded_millicredits: int
    delivery_deadline_ms: int
    review_deadline_ms: int | None
    dispute_deadline_ms: int | None
    due_at_ms: int | None
    quote_envelope: str
    acceptance_envelope: str
    record_envelope: str
    task: str
    result: str | None
    result_sha256: str | None
    # JSON of an ObjectRef when the result was too large to send inline.
    result_ref: str | None
    # The listing's output schema when the contract opened; deliveries are
    # checked against it (unless sealed).
    output_schema: str
    seal_result: bool
    dispute_reason: str | None
    buyer_cancel_requested: bool
    resolution: str | None
    created_at_ms: int
    updated_at_ms: int


def contract_id_for_quote(quote_document_bytes: bytes, /) -> str:
    """A quote can be accepted once: its contract id is a hash of its signed bytes."""
    return "c_" + hashlib.sha256(quote_document_bytes).hexdigest()[:32]


def role_of(contract: ContractRow, agent_id: str, /) -> Role | None:
    if agent_id == contract.buyer_id:
        return Role.BUYER
    if agent_id == contract.provider_id:
        return Role.PROVIDER
    return None


def check_party(contract: ContractRow, agent_id: str, /) -> Role:
    # Someone who is not a party gets the same answer as for a missing
    # contract, so contract ids cannot be probed.
    role = role_of(contract, agent_id)
    if role is None:
        raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
    return role


_EVENT_BY_ROLE = {
    (ContractEvent.CANCEL, Role.PROVIDER): ContractEvent.PROVIDER_CANCEL,
    (ContractEvent.CANCEL, Role.BUYER): ContractEvent.CANCEL_REQUEST,
}
_CANCEL_EVENTS = frozenset({ContractEvent.PROVIDER_CANCEL, ContractEvent.CANCEL_REQUEST})


def applied_event(requested: ContractEvent, role: Role, /) -> ContractEvent:
    """The event a party's request becomes, given who asks (a cancel depends on it)."""
    return _EVENT_BY_ROLE.get((requested, role), requested)


def next_state(contract: ContractRow, event: ContractEvent, role: Role, /) -> ContractState:
    """The state ``event`` leads to, if ``role`` may cause it now; else a typed refusal."""
    transition = _TRANSITIONS.get((contract.state, event))
    if transition is None and event in _CANCEL_EVENTS:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"only an open contract can be cancelled; this one is {contract.state.value}",
            contract_id=contract.contract_id,
        )
    if transition is None:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"cannot {event.value.replace('_', ' ')} a contract that is {contract.state.value}",
            contract_id=contract.contract_id,
        )
    to_state, allowed_role = transition
    if role is not allowed_role:
        raise ExchangeError(
            ErrorCode.FORBIDDEN,
            f"only the {allowed_role.value} can {event.value.replace('_', ' ')}",
            contract_id=contract.contract_id,
        )
    return to_state


# What each settling event gives the provider, in basis points of the price.
# An operator's resolve names its own share; the dispute window's is a setting.
_PROVIDER_SHARE_BPS = {
    ContractEvent.ACCEPT: 10_000,
    ContractEvent.REVIEW_WINDOW_PASSED: 10_000,
    ContractEvent.PROVIDER_CANCEL: 0,
    ContractEvent.DEADLINE_PASSED: 0,
}


def provider_share_bps(
    event: ContractEvent, /, *, resolved_bps: int | None = None, dispute_default_bps: int
) -> int:
    """The provider's share of the price that ``event`` settles the contract with."""
    if event is ContractEvent.RESOLVE:
        assert resolved_bps is not None and 0 <= resolved_bps <= 10_000
        return resolved_bps
    if event is ContractEvent.DISPUTE_WINDOW_PASSED:
        assert 0 <= dispute_default_bps <= 10_000
        return dispute_default_bps
    share = _PROVIDER_SHARE_BPS.get(event)
    assert share is not None, f"{event} settles nothing"
    return share


def due_event(contract: ContractRow, /, *, now_ms: int) -> ContractEvent | None:
    """The timer event that is due on this contract at ``now_ms``, if any."""
    if contract.due_at_ms is None or now_ms <= contract.due_at_ms:
        return None
    return _TIMER_EVENT_BY_STATE.get(contract.state)


_TIMER_EVENT_BY_STATE = {
    ContractState.OPEN: ContractEvent.DEADLINE_PASSED,
    ContractState.DELIVERED: ContractEvent.REVIEW_WINDOW_PASSED,
    ContractState.DISPUTED: ContractEvent.DISPUTE_WINDOW_PASSED,
}


def due_at_ms(
    state: ContractState,
    /,
    *,
    delivery_deadline_ms: int,
    review_deadline_ms: int | None,
    dispute_deadline_ms: int | None,
) -> int | None:
    """When the timer of ``state`` fires (None for settled states)."""
    if state is ContractState.OPEN:
        return delivery_deadline_ms
    if state is ContractState.DELIVERED:
        return review_deadline_ms
    if state is ContractState.DISPUTED:
        return dispute_deadline_ms
    return None
