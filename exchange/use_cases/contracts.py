"""Contract use cases: open (with the escrow hold), deliver, accept (release), look up."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    AcceptDelivery,
    ContractOpenedNotice,
    ContractRecord,
    ContractView,
    Deliver,
    DeliveredNotice,
    Envelope,
    OpenContract,
    Quote,
    ReleasedNotice,
)
from agent_client.signing import (
    VerifiedDocument,
    b64decode,
    make_header,
    open_envelope_struct,
    seal,
    sha256_hex,
    verify_evidence,
)
from escrow import (
    EscrowEvent,
    EscrowTransitionError,
    InsufficientFunds,
    Settlement,
    transition,
)
from exchange import repository
from exchange.contracts import (
    ContractRow,
    ContractState,
    check_can_accept,
    check_can_deliver,
    check_party,
    contract_id_for_quote,
    escrow_state_of,
)
from exchange.errors import ErrorCode, ExchangeError
from exchange.ledger_accounts import (
    agent_account_id,
    ensure_agent_accounts,
)
from exchange.use_cases.context import ExchangeContext
from exchange.views import (
    contract_view,
    envelope_from_text,
    envelope_text,
    raw_json,
)

__all__ = ["ContractUseCases"]


class ContractUseCases:
    """The contract lifecycle, one transaction per step; notices after commit."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def open_contract(self, buyer_id: str, acceptance: VerifiedDocument, /) -> ContractView:
        """Verify the quote, hold the price in escrow and open the contract, atomically."""
        request = acceptance.document
        assert isinstance(request, OpenContract) and acceptance.verified
        try:
            quote, quote_bytes = self._verified_quote(request.quote, buyer_id)
        except ExchangeError:
            # A retry after the quote expired must still learn its contract.
            await self._raise_if_already_accepted(request.quote, buyer_id)
            raise
        if len(request.task) > protocol_limits.TASK_BYTES_MAX:
            raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, "the task is too large")
        contract = self._new_contract(buyer_id, quote, quote_bytes, acceptance)

        async def work(connection: AsyncConnection) -> None:
            if await repository.get_contract(connection, contract.contract_id) is not None:
                raise ExchangeError(
                    ErrorCode.QUOTE_ALREADY_ACCEPTED,
                    "this quote was already accepted",
                    contract_id=contract.contract_id,
                )
            await self._check_listing_active(connection, quote)
            await ensure_agent_accounts(
                self._context.ledger, [buyer_id, contract.provider_id], connection=connection
            )
            try:
                await self._context.escrow.hold(
                    contract.contract_id,
                    buyer_account_id=agent_account_id(buyer_id),
                    price_millicredits=contract.price_millicredits,
                    connection=connection,
                )
            except InsufficientFunds as exc:
                raise ExchangeError(
                    ErrorCode.INSUFFICIENT_FUNDS, "the available balance is below the price"
                ) from exc
            await repository.insert_contract(connection, contract)

        await self._context.run(work)
        notice = ContractOpenedNotice(
            header=self._context.notice_header(contract.provider_id),
            record=envelope_from_text(contract.record_envelope),
            task=raw_json(contract.task),
        )
        await self._context.notify(contract.provider_id, notice)
        return contract_view(contract)

    async def _raise_if_already_accepted(self, envelope: Envelope, buyer_id: str) -> None:
        try:
            contract_id = contract_id_for_quote(b64decode(envelope.doc))
        except ValueError:
            return

        async def work(connection: AsyncConnection) -> ContractRow | None:
            return await repository.get_contract(connection, contract_id)

        contract = await self._context.run(work)
        if contract is not None and contract.buyer_id == buyer_id:
            raise ExchangeError(
                ErrorCode.QUOTE_ALREADY_ACCEPTED,
                "this quote was already accepted",
                contract_id=contract_id,
            )

    def _verified_quote(self, envelope: Envelope, buyer_id: str) -> tuple[Quote, bytes]:
        try:
            verified = verify_evidence(
                open_envelope_struct(envelope),
                expected_type=Quote,
                audience=buyer_id,
                clock=self._context.clock,
                lifetime_max_s=protocol_limits.QUOTE_VALIDITY_MAX_S,
            )
        except SignatureRejected as exc:
            code = ErrorCode.QUOTE_EXPIRED if exc.code == ErrorCode.EXPIRED else ErrorCode(exc.code)
            raise ExchangeError(code, f"the quote: {exc.message}") from exc
        quote = verified.document
        assert isinstance(quote, Quote)
        if quote.header.subject != subjects.rfq(quote.capability):
            raise ExchangeError(ErrorCode.SUBJECT_MISMATCH, "the quote names another capability")
        if quote.header.issuer == buyer_id:
            raise ExchangeError(ErrorCode.FORBIDDEN, "an agent cannot hire itself")
        now_ms = self._context.clock.now_ms()
        if quote.delivery_deadline_ms <= now_ms:
            raise ExchangeError(ErrorCode.QUOTE_EXPIRED, "the delivery deadline has passed")
        if quote.delivery_deadline_ms > now_ms + protocol_limits.DELIVERY_DEADLINE_MAX_S * 1000:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "the delivery deadline is too far away")
        return quote, verified.document_bytes

    async def _check_listing_active(self, connection: AsyncConnection, quote: Quote) -> None:
        listing = await repository.get_listing(
            connection, f"{quote.header.issuer}/{quote.capability}"
        )
        if listing is None or listing["status"] != "active":
            raise ExchangeError(
                ErrorCode.NOT_FOUND, f"the provider has no active listing for {quote.capability}"
            )

    def _new_contract(
        self,
        buyer_id: str,
        quote: Quote,
        quote_bytes: bytes,
        acceptance: VerifiedDocument,
    ) -> ContractRow:
        request = acceptance.document
        assert isinstance(request, OpenContract)
        contract_id = contract_id_for_quote(quote_bytes)
        settlement = self._context.escrow.settlement(quote.price_millicredits)
        record = ContractRecord(
            header=make_header(
                self._context.keys,
                audience="*",
                subject=f"{subjects.ROOT}.contract.{contract_id}",
                lifetime_s=protocol_limits.CONTRACT_RECORD_LIFETIME_S,
                clock=self._context.clock,
            ),
            contract_id=contract_id,
            buyer_id=buyer_id,
            provider_id=quote.header.issuer,
            capability=quote.capability,
            price_millicredits=quote.price_millicredits,
            fee_millicredits=settlement.fee_millicredits,
            delivery_deadline_ms=quote.delivery_deadline_ms,
            quote_sha256=sha256_hex(quote_bytes),
            acceptance_sha256=sha256_hex(acceptance.document_bytes),
        )
        now_ms = record.header.issued_at_ms
        return ContractRow(
            contract_id=contract_id,
            buyer_id=buyer_id,
            provider_id=quote.header.issuer,
            capability=quote.capability,
            state=ContractState.OPEN,
            price_millicredits=quote.price_millicredits,
            fee_millicredits=settlement.fee_millicredits,
            net_millicredits=None,
            delivery_deadline_ms=quote.delivery_deadline_ms,
            quote_envelope=envelope_text(request.quote),
            acceptance_envelope=envelope_text(acceptance.envelope),
            record_envelope=envelope_text(seal(record, self._context.keys)),
            task=bytes(request.task).decode(),
            result=None,
            result_sha256=None,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )

    async def deliver(self, provider_id: str, request: Deliver, /) -> ContractView:
        result_bytes = bytes(request.result)
        if len(result_bytes) > protocol_limits.RESULT_BYTES_MAX:
            raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, "the result is too large")
        if sha256_hex(result_bytes) != request.result_sha256:
            raise ExchangeError(ErrorCode.HASH_MISMATCH, "the result does not match its hash")
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> ContractRow:
            contract = await self._contract_for_party(connection, request.contract_id, provider_id)
            check_can_deliver(contract, provider_id, now_ms=now_ms)
            changes = {
                "result": result_bytes.decode(),
                "result_sha256": request.result_sha256,
                "updated_at_ms": now_ms,
            }
            await repository.transition_contract(
                connection,
                contract.contract_id,
                from_state=ContractState.OPEN,
                to_state=ContractState.DELIVERED,
                changes=changes,
            )
            return _replace(contract, state=ContractState.DELIVERED, **changes)

        contract = await self._context.run(work)
        notice = DeliveredNotice(
            header=self._context.notice_header(contract.buyer_id),
            contract_id=contract.contract_id,
            result=request.result,
            result_sha256=request.result_sha256,
        )
        await self._context.notify(contract.buyer_id, notice)
        return contract_view(contract)

    async def accept_delivery(self, buyer_id: str, request: AcceptDelivery, /) -> ContractView:
        """Release the held price: provider gets price − fee, the platform the fee."""
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> ContractRow:
            contract = await self._contract_for_party(connection, request.contract_id, buyer_id)
            check_can_accept(contract, buyer_id, request.result_sha256)
            try:
                transition(
                    escrow_state_of(contract.state),
                    EscrowEvent.RELEASE,
                    contract_id=contract.contract_id,
                )
            except EscrowTransitionError as exc:
                raise ExchangeError(ErrorCode.INVALID_STATE, str(exc)) from exc
            settlement = await self._context.escrow.release(
                contract.contract_id,
                buyer_account_id=agent_account_id(contract.buyer_id),
                provider_account_id=agent_account_id(contract.provider_id),
                settlement=Settlement(
                    contract.price_millicredits,
                    contract.fee_millicredits,
                    contract.price_millicredits - contract.fee_millicredits,
                ),
                connection=connection,
            )
            changes = {"net_millicredits": settlement.net_millicredits, "updated_at_ms": now_ms}
            await repository.transition_contract(
                connection,
                contract.contract_id,
                from_state=ContractState.DELIVERED,
                to_state=ContractState.RELEASED,
                changes=changes,
            )
            return _replace(contract, state=ContractState.RELEASED, **changes)

        contract = await self._context.run(work)
        assert contract.net_millicredits is not None
        notice = ReleasedNotice(
            header=self._context.notice_header(contract.provider_id),
            contract_id=contract.contract_id,
            price_millicredits=contract.price_millicredits,
            fee_millicredits=contract.fee_millicredits,
            net_millicredits=contract.net_millicredits,
        )
        await self._context.notify(contract.provider_id, notice)
        return contract_view(contract)

    async def get_contract(self, agent_id: str, contract_id: str, /) -> ContractView:
        async def work(connection: AsyncConnection) -> ContractRow:
            return await self._contract_for_party(connection, contract_id, agent_id)

        return contract_view(await self._context.run(work), with_payloads=True)

    async def _contract_for_party(
        self, connection: AsyncConnection, contract_id: str, agent_id: str
    ) -> ContractRow:
        contract = await repository.get_contract(connection, contract_id)
        if contract is None:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
        check_party(contract, agent_id)
        return contract

    # --- wallet ----------------------------------------------------------------


def _replace(contract: ContractRow, /, **changes: Any) -> ContractRow:
    return dataclasses.replace(contract, **changes)
