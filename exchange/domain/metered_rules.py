"""Metered sessions (pure): what a usage claim captures, and when a session ends.

A buyer opens a session against a provider's signed metered offer; the
exchange holds a ceiling in escrow. The buyer signs cumulative usage
receipts; the provider claims against the latest it holds, as often as it
likes, and each claim captures what the receipt's units cost beyond what
earlier claims captured (never past the ceiling). The price of ``n`` units
is ``n * unit_price // units_per_price``, on the cumulative count, so
rounding never loses or invents a millicredit across claims.

::

    open ──buyer closes / expires──▶ closing ──claim window passed──▶ closed
      └───────────── provider closes (after a final claim) ─────────────┘

Claims are taken while ``open`` and ``closing``; ``closed`` released the
rest of the hold to the buyer. Invariant of every session: captured +
(the pending hold) + released == ceiling, and fee + net == captured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from agent_client.protocol import MeteredState, price_of_units
from exchange.errors import ErrorCode, ExchangeError
from wallet import fee_split

__all__ = [
    "Claim",
    "MeteredRow",
    "claim_window_passed",
    "claimed",
    "closed",
    "decide_claim",
    "metered_id_for_offer",
    "price_of_units",
    "state_after_buyer_close",
    "timer_due",
]


@dataclass(frozen=True, slots=True)
class MeteredRow:
    contract_id: str
    buyer_id: str
    provider_id: str
    capability: str
    unit_price_millicredits: int
    units_per_price: int
    ceiling_millicredits: int
    fee_rate_bps: int
    state: MeteredState
    claimed_units: int
    captured_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    released_millicredits: int
    # How many holds this session's ceiling has been carried by (one more after
    # every capture that leaves something held): the ledger ids derive from it.
    hold_sequence: int
    expires_at_ms: int
    closes_at_ms: int | None
    offer_envelope: str
    acceptance_envelope: str
    created_at_ms: int
    updated_at_ms: int

    def __post_init__(self) -> None:
        assert self.units_per_price in (1, 1000)
        assert 0 <= self.captured_millicredits <= self.ceiling_millicredits
        assert self.fee_millicredits + self.net_millicredits == self.captured_millicredits
        if self.state is MeteredState.CLOSED:
            assert self.captured_millicredits + self.released_millicredits == (
                self.ceiling_millicredits
            )
        else:
            assert self.released_millicredits == 0

    @property
    def held_millicredits(self) -> int:
        """What the pending hold carries now (0 once closed)."""
        if self.state is MeteredState.CLOSED:
            return 0
        return self.ceiling_millicredits - self.captured_millicredits


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim captures now, and how it splits."""

    units: int
    capture_millicredits: int
    fee_millicredits: int
    net_millicredits: int


def metered_id_for_offer(offer_document_bytes: bytes, /) -> str:
    """An offer opens one session: its id is a hash of the offer's signed bytes."""
    return "m_" + hashlib.sha256(offer_document_bytes).hexdigest()[:32]


def claim_window_passed(session: MeteredRow, /, *, now_ms: int, window_ms: int) -> bool:
    """Whether claims are over: the window after a close or after expiry has ended."""
    if session.state is MeteredState.CLOSING:
        assert session.closes_at_ms is not None
        return now_ms >= session.closes_at_ms
    return session.state is MeteredState.OPEN and now_ms >= session.expires_at_ms + window_ms


def decide_claim(session: MeteredRow, units: int, /) -> Claim:
    """What a receipt for ``units`` (cumulative) captures from ``session``."""
    if session.state is MeteredState.CLOSED:
        raise ExchangeError(
            ErrorCode.INVALID_STATE, "the session is closed", contract_id=session.contract_id
        )
    if units <= session.claimed_units:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            f"the receipt's {units} units are not above the {session.claimed_units} "
            "already claimed",
            contract_id=session.contract_id,
        )
    owed = price_of_units(
        units,
        unit_price_millicredits=session.unit_price_millicredits,
        units_per_price=session.units_per_price,
    )
    captured_after = max(min(owed, session.ceiling_millicredits), session.captured_millicredits)
    capture = captured_after - session.captured_millicredits
    # The fee is rounded down on what was captured in all, not claim by claim:
    # a provider who claims often must not round the fee away.
    fee_after, _ = fee_split(captured_after, rate_bps=session.fee_rate_bps)
    fee = fee_after - session.fee_millicredits
    assert 0 <= fee <= capture
    return Claim(units, capture, fee, capture - fee)


def claimed(session: MeteredRow, claim: Claim, /, *, now_ms: int) -> MeteredRow:
    """The session after ``claim``: a capture moves the rest to a new hold."""
    return replace(
        session,
        claimed_units=claim.units,
        captured_millicredits=session.captured_millicredits + claim.capture_millicredits,
        fee_millicredits=session.fee_millicredits + claim.fee_millicredits,
        net_millicredits=session.net_millicredits + claim.net_millicredits,
        hold_sequence=session.hold_sequence + (1 if claim.capture_millicredits else 0),
        updated_at_ms=now_ms,
    )


def state_after_buyer_close(session: MeteredRow, /, *, now_ms: int, window_ms: int) -> MeteredRow:
    """The buyer's close starts the claim window (a second close changes nothing);
    after the session's expiry, the window is the one expiry started."""
    if session.state is not MeteredState.OPEN:
        return session
    window_from_ms = min(now_ms, session.expires_at_ms)
    return _closing(session, closes_at_ms=window_from_ms + window_ms, now_ms=now_ms)


def timer_due(session: MeteredRow, /, *, now_ms: int, window_ms: int) -> MeteredRow | None:
    """The session after its due timer (expiry starts the window; the window's
    end closes it, which the caller applies with the release), or None."""
    if session.state is MeteredState.OPEN and now_ms >= session.expires_at_ms:
        return _closing(session, closes_at_ms=session.expires_at_ms + window_ms, now_ms=now_ms)
    if session.state is MeteredState.CLOSING:
        assert session.closes_at_ms is not None
        if now_ms >= session.closes_at_ms:
            return closed(session, now_ms=now_ms)
    return None


def closed(session: MeteredRow, /, *, now_ms: int) -> MeteredRow:
    """The session with its hold released to the buyer."""
    return replace(
        session,
        state=MeteredState.CLOSED,
        released_millicredits=session.held_millicredits,
        closes_at_ms=session.closes_at_ms or now_ms,
        updated_at_ms=now_ms,
    )


def _closing(session: MeteredRow, *, closes_at_ms: int, now_ms: int) -> MeteredRow:
    return replace(
        session, state=MeteredState.CLOSING, closes_at_ms=closes_at_ms, updated_at_ms=now_ms
    )
