"""Metered sessions: open (hold a ceiling), claim usage (partial captures), close.

The rules are pure (:mod:`exchange.domain.metered_rules`); each step here is
one transaction that locks the session, checks the signed evidence, moves
the money through escrow and stages the parties' notices (published after
commit). A receipt is verified only when it is claimed, so a buyer signs one
per call and the exchange sees one per claim.

A repeated claim of the receipt already claimed, or a second close, answers
the session as it is: clients retry after timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    ClaimUsage,
    CloseMetered,
    Envelope,
    GetMeteredEvidence,
    Header,
    MeteredClaimEntry,
    MeteredEvent,
    MeteredEvidenceReply,
    MeteredNotice,
    MeteredOffer,
    MeteredState,
    MeteredView,
    OpenMetered,
    UsageReceipt,
)
from agent_client.signing import VerifiedDocument, open_envelope_struct, verify_evidence
from escrow import InsufficientFunds, MeteredCapture
from exchange.adapters import metered_store
from exchange.domain.metered_rules import (
    MeteredRow,
    claim_window_passed,
    claimed,
    closed,
    decide_claim,
    metered_id_for_offer,
    state_after_buyer_close,
    timer_due,
)
from exchange.domain.spending_rules import (
    SpendingRefusal,
    SpendingRequest,
)
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SWEEP_BATCH_MAX
from exchange.use_cases.contract_views import envelope_from_text, envelope_text
from exchange.use_cases.exchange_accounts import agent_account_id, ensure_agent_accounts
from exchange.use_cases.exchange_context import ExchangeContext, OutboxNotice
from exchange.use_cases.offer_checks import verified_offer
from exchange.use_cases.spending import purchase_refusal, purchase_request
from wallet import FeeKind
from wallet.database import read_transaction

__all__ = ["MeteredUseCases", "metered_view"]

_WINDOW_MS = protocol_limits.METERED_CLAIM_WINDOW_S * 1000
_Step = tuple[MeteredRow, list[OutboxNotice]]


def metered_view(session: MeteredRow, /) -> MeteredView:
    return MeteredView(
        contract_id=session.contract_id,
        buyer_id=session.buyer_id,
        provider_id=session.provider_id,
        capability=session.capability,
        unit_price_millicredits=session.unit_price_millicredits,
        units_per_price=session.units_per_price,
        ceiling_millicredits=session.ceiling_millicredits,
        state=session.state,
        claimed_units=session.claimed_units,
        captured_millicredits=session.captured_millicredits,
        fee_millicredits=session.fee_millicredits,
        net_millicredits=session.net_millicredits,
        released_millicredits=session.released_millicredits,
        expires_at_ms=session.expires_at_ms,
        closes_at_ms=session.closes_at_ms,
        created_at_ms=session.created_at_ms,
        updated_at_ms=session.updated_at_ms,
    )


class MeteredUseCases:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    # --- open -------------------------------------------------------------------------

    async def open(
        self, buyer_id: str, acceptance: VerifiedDocument[OpenMetered], /
    ) -> MeteredView:
        """Verify the provider's offer, hold the ceiling and open the session, atomically."""
        request = acceptance.document
        offer, offer_bytes = self._verified_offer(request.offer, buyer_id)
        now_ms = self._context.clock.now_ms()
        session = MeteredRow(
            contract_id=metered_id_for_offer(offer_bytes),
            buyer_id=buyer_id,
            provider_id=offer.header.issuer,
            capability=offer.capability,
            unit_price_millicredits=offer.unit_price_millicredits,
            units_per_price=offer.units_per_price,
            ceiling_millicredits=request.ceiling_millicredits,
            fee_rate_bps=self._context.fees.rate_bps(FeeKind.METERED, capability=offer.capability),
            state=MeteredState.OPEN,
            claimed_units=0,
            captured_millicredits=0,
            fee_millicredits=0,
            net_millicredits=0,
            released_millicredits=0,
            hold_sequence=0,
            expires_at_ms=now_ms + request.session_s * 1000,
            closes_at_ms=None,
            offer_envelope=envelope_text(request.offer),
            acceptance_envelope=envelope_text(acceptance.envelope),
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        spending = purchase_request(
            session.contract_id,
            buyer_id=buyer_id,
            provider_id=session.provider_id,
            capability=session.capability,
            price_millicredits=session.ceiling_millicredits,
            now_ms=now_ms,
            offer_expires_at_ms=offer.header.expires_at_ms,
        )

        async def work(connection: AsyncConnection) -> SpendingRefusal | _Step:
            return await self._open_in(connection, session, spending)

        outcome = await self._context.run(work)
        if isinstance(outcome, SpendingRefusal):
            # Committed: an approval the refusal asks for is recorded.
            raise outcome.error(contract_id=session.contract_id)
        return await self._answer(outcome)

    async def _open_in(
        self, connection: AsyncConnection, session: MeteredRow, spending: SpendingRequest
    ) -> SpendingRefusal | _Step:
        existing = await metered_store.get_session(connection, session.contract_id)
        if existing is not None:
            raise ExchangeError(
                ErrorCode.QUOTE_ALREADY_ACCEPTED,
                "this metered offer was already accepted",
                contract_id=session.contract_id,
            )
        context = self._context
        refusal = await purchase_refusal(
            spending, store=context.spending, ledger=context.ledger, connection=connection
        )
        if refusal is not None:
            return refusal
        parties = [session.buyer_id, session.provider_id]
        await ensure_agent_accounts(context.ledger, parties, connection=connection)
        try:
            await context.escrow.metered_hold(
                session.contract_id,
                agent_account_id(session.buyer_id),
                session.ceiling_millicredits,
                connection=connection,
            )
        except InsufficientFunds as exc:
            raise ExchangeError(
                ErrorCode.INSUFFICIENT_FUNDS, "the available balance is below the ceiling"
            ) from exc
        await metered_store.insert_session(connection, session)
        return await self._staged(connection, session, "opened")

    def _verified_offer(self, envelope: Envelope, buyer_id: str) -> tuple[MeteredOffer, bytes]:
        return verified_offer(
            envelope,
            MeteredOffer,
            buyer_id=buyer_id,
            clock=self._context.clock,
            subject_for=subjects.metered_offers,
            name="metered offer",
        )

    # --- claims and closes ----------------------------------------------------------

    async def claim(self, provider_id: str, request: ClaimUsage, /) -> MeteredView:
        """Capture what the buyer's latest receipt owes beyond earlier claims."""
        receipt = _receipt_document(request.receipt)

        async def work(connection: AsyncConnection) -> _Step:
            session = await self._locked(connection, receipt.contract_id, provider_id)
            if session.provider_id != provider_id:
                raise ExchangeError(ErrorCode.FORBIDDEN, "only the provider claims usage")
            return await self._claim_in(connection, session, request.receipt)

        return await self._answer(await self._context.run(work))

    async def close(self, agent_id: str, request: CloseMetered, /) -> MeteredView:
        """The provider's close ends the session now (after an optional final claim);
        the buyer's starts the provider's claim window."""
        contract_id, final_receipt = request.contract_id, request.final_receipt

        async def work(connection: AsyncConnection) -> _Step:
            session = await self._locked(connection, contract_id, agent_id)
            if agent_id == session.buyer_id:
                if final_receipt is not None:
                    raise ExchangeError(
                        ErrorCode.INVALID_REQUEST, "only the provider claims a final receipt"
                    )
                after = state_after_buyer_close(
                    session, now_ms=self._context.clock.now_ms(), window_ms=_WINDOW_MS
                )
                return await self._moved(connection, session, after, "closing")
            notices: list[OutboxNotice] = []
            if final_receipt is not None and session.state is not MeteredState.CLOSED:
                session, notices = await self._claim_in(connection, session, final_receipt)
            after, closing = await self._release(connection, session)
            return after, notices + closing

        return await self._answer(await self._context.run(work))

    async def evidence(self, agent_id: str, request: GetMeteredEvidence, /) -> MeteredEvidenceReply:
        """What a usage dispute rests on, for the parties and operators."""
        is_operator = agent_id in self._context.operator_ids
        async with read_transaction(self._context.engine) as connection:
            session = await self._party_session(
                connection, request.contract_id, agent_id, allow_operator=is_operator
            )
            rows, has_more = await metered_store.claim_rows(
                connection,
                session.contract_id,
                limit=request.limit,
                before_units=request.before_units,
            )
        return MeteredEvidenceReply(
            metered=metered_view(session),
            offer=envelope_from_text(session.offer_envelope),
            acceptance=envelope_from_text(session.acceptance_envelope),
            claims=[_claim_entry(row) for row in rows],
            has_more=has_more,
        )

    async def get(self, agent_id: str, contract_id: str, /) -> MeteredView:
        async def work(connection: AsyncConnection) -> MeteredRow:
            return await self._party_session(connection, contract_id, agent_id)

        return metered_view(await self._context.run(work))

    async def sweep(self) -> int:
        """Start the claim window of expired sessions, close those whose window passed."""
        now_ms = self._context.clock.now_ms()

        async def due(connection: AsyncConnection) -> list[str]:
            return await metered_store.due_session_ids(
                connection, now_ms=now_ms, limit=SWEEP_BATCH_MAX
            )

        return await self._context.apply_due(due, self._apply_timer)

    async def _apply_timer(self, contract_id: str) -> int:
        async def work(connection: AsyncConnection) -> _Step | None:
            session = await metered_store.get_session(connection, contract_id, for_update=True)
            if session is None:
                return None
            now_ms = self._context.clock.now_ms()
            after = timer_due(session, now_ms=now_ms, window_ms=_WINDOW_MS)
            if after is None:
                return None  # another worker applied it first
            if after.state is MeteredState.CLOSED:
                return await self._release(connection, session)
            return await self._moved(connection, session, after, "closing")

        outcome = await self._context.run(work)
        if outcome is None:
            return 0
        await self._context.publish_soon(outcome[1])
        return 1

    # --- the steps, inside a transaction ---------------------------------------------

    async def _claim_in(
        self, connection: AsyncConnection, session: MeteredRow, receipt_envelope: Envelope
    ) -> _Step:
        now_ms = self._context.clock.now_ms()
        if claim_window_passed(session, now_ms=now_ms, window_ms=_WINDOW_MS):
            raise ExchangeError(
                ErrorCode.INVALID_STATE,
                "the claim window has passed",
                contract_id=session.contract_id,
            )
        receipt = self._verified_receipt(receipt_envelope, session)
        if receipt.units == session.claimed_units:
            return session, []  # this receipt was claimed already (a retry)
        claim = decide_claim(session, receipt.units)
        if claim.capture_millicredits:
            await self._context.escrow.metered_capture(
                MeteredCapture(
                    contract_id=session.contract_id,
                    buyer_account_id=agent_account_id(session.buyer_id),
                    provider_account_id=agent_account_id(session.provider_id),
                    hold_sequence=session.hold_sequence,
                    held_millicredits=session.held_millicredits,
                    capture_millicredits=claim.capture_millicredits,
                    fee_millicredits=claim.fee_millicredits,
                    net_millicredits=claim.net_millicredits,
                ),
                connection=connection,
            )
        await metered_store.add_claim(
            connection,
            {
                "contract_id": session.contract_id,
                "units": claim.units,
                "captured_millicredits": claim.capture_millicredits,
                "fee_millicredits": claim.fee_millicredits,
                "receipt_envelope": envelope_text(receipt_envelope),
                "claimed_at_ms": now_ms,
            },
        )
        return await self._moved(
            connection, session, claimed(session, claim, now_ms=now_ms), "claimed"
        )

    def _verified_receipt(self, envelope: Envelope, session: MeteredRow) -> UsageReceipt:
        try:
            verified = verify_evidence(
                open_envelope_struct(envelope),
                expected_type=UsageReceipt,
                audience=session.provider_id,
                issuer=session.buyer_id,
                expected_subject=subjects.metered(session.contract_id),
                clock=self._context.clock,
                lifetime_max_s=protocol_limits.METERED_RECEIPT_LIFETIME_MAX_S,
            )
        except SignatureRejected as exc:
            raise ExchangeError(ErrorCode(exc.code), f"the receipt: {exc.message}") from exc
        receipt = verified.document
        assert isinstance(receipt, UsageReceipt)
        return receipt

    async def _release(self, connection: AsyncConnection, session: MeteredRow) -> _Step:
        if session.state is MeteredState.CLOSED:
            return session, []
        await self._context.escrow.metered_release(
            session.contract_id,
            agent_account_id(session.buyer_id),
            hold_sequence=session.hold_sequence,
            held_millicredits=session.held_millicredits,
            connection=connection,
        )
        after = closed(session, now_ms=self._context.clock.now_ms())
        return await self._moved(connection, session, after, "closed")

    async def _moved(
        self,
        connection: AsyncConnection,
        before: MeteredRow,
        after: MeteredRow,
        event: MeteredEvent,
    ) -> _Step:
        if after == before:
            return before, []
        await metered_store.update_session(connection, before, after)
        return await self._staged(connection, after, event)

    async def _staged(
        self, connection: AsyncConnection, session: MeteredRow, event: MeteredEvent
    ) -> _Step:
        notices = [
            self._context.notice(agent_id, _notice_builder(session, event))
            for agent_id in (session.buyer_id, session.provider_id)
        ]
        await self._context.stage(connection, notices)
        return session, notices

    async def _locked(
        self, connection: AsyncConnection, contract_id: str, agent_id: str
    ) -> MeteredRow:
        return await self._party_session(connection, contract_id, agent_id, for_update=True)

    async def _party_session(
        self,
        connection: AsyncConnection,
        contract_id: str,
        agent_id: str,
        *,
        for_update: bool = False,
        allow_operator: bool = False,
    ) -> MeteredRow:
        session = await metered_store.get_session(connection, contract_id, for_update=for_update)
        # A stranger gets the answer of a missing session: ids cannot be probed.
        is_party = session is not None and agent_id in (session.buyer_id, session.provider_id)
        if session is None or not (is_party or allow_operator):
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such metered session")
        return session

    async def _answer(self, step: _Step) -> MeteredView:
        session, notices = step
        await self._context.publish_soon(notices)
        return metered_view(session)


def _claim_entry(row: dict[str, Any]) -> MeteredClaimEntry:
    return MeteredClaimEntry(
        units=row["units"],
        captured_millicredits=row["captured_millicredits"],
        fee_millicredits=row["fee_millicredits"],
        claimed_at_ms=row["claimed_at_ms"],
        receipt=envelope_from_text(row["receipt_envelope"]),
    )


def _receipt_document(envelope: Envelope) -> UsageReceipt:
    """The receipt's claims, not yet trusted: the contract id says whose it must be."""
    try:
        document = open_envelope_struct(envelope).document
    except SignatureRejected as exc:
        raise ExchangeError(ErrorCode(exc.code), f"the receipt: {exc.message}") from exc
    if not isinstance(document, UsageReceipt):
        raise ExchangeError(ErrorCode.WRONG_KIND, "expected a metered.receipt")
    return document


def _notice_builder(session: MeteredRow, event: MeteredEvent) -> Callable[[Header], MeteredNotice]:
    view = metered_view(session)

    def build(header: Header) -> MeteredNotice:
        return MeteredNotice(header=header, event=event, metered=view)

    return build
