"""The exchange's use cases, one method each, over a unit of work.

Entry points (the NATS endpoints) decode and verify a request, then call one
method here with the verified document and the signer's id; each method
checks the business rules, runs its writes in one database transaction, and
only after that commits sends the notices it owes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.protocol import (
    JSON_NULL,
    AcceptDelivery,
    Advertise,
    BalanceReply,
    ContractOpenedNotice,
    ContractRecord,
    ContractView,
    Deliver,
    DeliveredNotice,
    Document,
    Envelope,
    Header,
    Listing,
    ListTransactions,
    Mint,
    MintReply,
    OpenContract,
    Quote,
    ReleasedNotice,
    SearchCatalog,
    SearchReply,
    TransactionEntry,
    json_encoder,
)
from agent_client.signing import (
    Clock,
    VerifiedDocument,
    b64decode,
    make_header,
    open_envelope_struct,
    seal,
    sha256_hex,
    verify_evidence,
)
from escrow import (
    Escrow,
    EscrowError,
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
    ISSUANCE_ACCOUNT_ID,
    agent_account_id,
    ensure_agent_accounts,
)
from exchange.limits import NOTICE_LIFETIME_S, SCHEMA_BYTES_MAX
from wallet import (
    LedgerId,
    NewTransfer,
    SqlLedger,
    TransferCode,
    TransferFlags,
    TransferResult,
    run_transaction,
)

__all__ = ["ExchangeService", "NoticePublisher"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class NoticePublisher(Protocol):
    """Where the exchange sends signed notices to an agent (NATS in production)."""

    async def publish_notice(self, subject: str, envelope: Envelope, /) -> None: ...


class ExchangeService:
    def __init__(
        self,
        engine: AsyncEngine,
        ledger: SqlLedger,
        escrow: Escrow,
        publisher: NoticePublisher,
        /,
        *,
        keys: AgentKeys,
        clock: Clock,
        operator_ids: frozenset[str],
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._escrow = escrow
        self._publisher = publisher
        self._keys = keys
        self._clock = clock
        self._operator_ids = operator_ids
        self.exchange_id = keys.agent_id

    # --- catalog ---------------------------------------------------------------

    async def advertise(self, provider_id: str, request: Advertise, /) -> Listing:
        input_schema = _encoded_schema(request.input_schema, "input_schema")
        output_schema = _encoded_schema(request.output_schema, "output_schema")
        now_ms = self._clock.now_ms()
        values = {
            "listing_id": f"{provider_id}/{request.capability}",
            "provider_id": provider_id,
            "capability": request.capability,
            "description": request.description,
            "price_millicredits": request.price_millicredits,
            "input_schema": input_schema,
            "output_schema": output_schema,
            "version": request.version,
            "status": request.status,
            "created_at_ms": now_ms,
            "updated_at_ms": now_ms,
        }

        async def work(connection: AsyncConnection) -> dict[str, Any] | None:
            await ensure_agent_accounts(self._ledger, [provider_id], connection=connection)
            await repository.upsert_listing(connection, values)
            return await repository.get_listing(connection, str(values["listing_id"]))

        row = await self._run(work)
        assert row is not None
        return _listing_from_row(row)

    async def search(self, request: SearchCatalog, /) -> SearchReply:
        query = repository.SearchQuery(
            capability=request.capability,
            text=request.text,
            price_max_millicredits=request.price_max_millicredits,
            limit=request.limit,
            offset=request.offset,
        )

        async def work(connection: AsyncConnection) -> tuple[list[dict[str, Any]], bool]:
            return await repository.search_listings(connection, query)

        rows, has_more = await self._run(work)
        listings = [_listing_from_row(row) for row in rows]
        return SearchReply(listings=listings, offset=request.offset, has_more=has_more)

    # --- contracts -------------------------------------------------------------

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
                self._ledger, [buyer_id, contract.provider_id], connection=connection
            )
            try:
                await self._escrow.hold(
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

        await self._run(work)
        notice = ContractOpenedNotice(
            header=self._notice_header(contract.provider_id),
            record=_envelope_from_text(contract.record_envelope),
            task=_raw(contract.task),
        )
        await self._notify(contract.provider_id, notice)
        return _view(contract)

    async def _raise_if_already_accepted(self, envelope: Envelope, buyer_id: str) -> None:
        try:
            contract_id = contract_id_for_quote(b64decode(envelope.doc))
        except ValueError:
            return

        async def work(connection: AsyncConnection) -> ContractRow | None:
            return await repository.get_contract(connection, contract_id)

        contract = await self._run(work)
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
                clock=self._clock,
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
        now_ms = self._clock.now_ms()
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
        settlement = self._escrow.settlement(quote.price_millicredits)
        record = ContractRecord(
            header=make_header(
                self._keys,
                audience="*",
                subject=f"{subjects.ROOT}.contract.{contract_id}",
                lifetime_s=protocol_limits.CONTRACT_RECORD_LIFETIME_S,
                clock=self._clock,
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
            quote_envelope=_envelope_text(request.quote),
            acceptance_envelope=_envelope_text(acceptance.envelope),
            record_envelope=_envelope_text(seal(record, self._keys)),
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
        now_ms = self._clock.now_ms()

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

        contract = await self._run(work)
        notice = DeliveredNotice(
            header=self._notice_header(contract.buyer_id),
            contract_id=contract.contract_id,
            result=request.result,
            result_sha256=request.result_sha256,
        )
        await self._notify(contract.buyer_id, notice)
        return _view(contract)

    async def accept_delivery(self, buyer_id: str, request: AcceptDelivery, /) -> ContractView:
        """Release the held price: provider gets price − fee, the platform the fee."""
        now_ms = self._clock.now_ms()

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
            settlement = await self._escrow.release(
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

        contract = await self._run(work)
        assert contract.net_millicredits is not None
        notice = ReleasedNotice(
            header=self._notice_header(contract.provider_id),
            contract_id=contract.contract_id,
            price_millicredits=contract.price_millicredits,
            fee_millicredits=contract.fee_millicredits,
            net_millicredits=contract.net_millicredits,
        )
        await self._notify(contract.provider_id, notice)
        return _view(contract)

    async def get_contract(self, agent_id: str, contract_id: str, /) -> ContractView:
        async def work(connection: AsyncConnection) -> ContractRow:
            return await self._contract_for_party(connection, contract_id, agent_id)

        return _view(await self._run(work), with_payloads=True)

    async def _contract_for_party(
        self, connection: AsyncConnection, contract_id: str, agent_id: str
    ) -> ContractRow:
        contract = await repository.get_contract(connection, contract_id)
        if contract is None:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
        check_party(contract, agent_id)
        return contract

    # --- wallet ----------------------------------------------------------------

    async def balance(self, agent_id: str, /) -> BalanceReply:
        account_id = agent_account_id(agent_id)
        balances = await self._ledger.lookup_accounts([account_id])
        account = balances.get(account_id)
        if account is None:
            return BalanceReply(
                agent_id=agent_id,
                available_millicredits=0,
                held_millicredits=0,
                credits_posted_millicredits=0,
                debits_posted_millicredits=0,
            )
        return BalanceReply(
            agent_id=agent_id,
            available_millicredits=account.available,
            held_millicredits=account.held,
            credits_posted_millicredits=account.credits_posted,
            debits_posted_millicredits=account.debits_posted,
        )

    async def transactions(
        self, agent_id: str, request: ListTransactions, /
    ) -> list[TransactionEntry]:
        account_id = agent_account_id(agent_id)
        records = await self._ledger.account_transfers(
            account_id, limit=request.limit, before_timestamp_us=request.before_timestamp_us
        )
        return [
            TransactionEntry(
                transfer_id=record.id,
                code=TransferCode(record.code).name.lower(),
                direction="out" if record.debit_account_id == account_id else "in",
                amount_millicredits=record.amount,
                counterparty_account_id=(
                    record.credit_account_id
                    if record.debit_account_id == account_id
                    else record.debit_account_id
                ),
                is_hold=bool(record.flags & TransferFlags.PENDING),
                reference=record.user_data,
                timestamp_us=record.timestamp_us,
            )
            for record in records
        ]

    async def mint(self, operator_id: str, request: Mint, /) -> MintReply:
        """Operator-only grant of credits from the issuance account, audited."""
        if operator_id not in self._operator_ids:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only an operator can mint credits")
        if not is_agent_id(request.recipient_id):
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "the recipient is not a valid agent id")
        # The operator's mint_id names the transfer, so a retry (even freshly
        # signed) returns the first outcome and never mints twice.
        transfer_id = f"mint:{operator_id[:12]}:{request.mint_id}"
        transfer = NewTransfer(
            id=transfer_id,
            debit_account_id=ISSUANCE_ACCOUNT_ID,
            credit_account_id=agent_account_id(request.recipient_id),
            amount=request.amount_millicredits,
            ledger=LedgerId.CREDITS,
            code=TransferCode.MINT,
            user_data=f"operator:{operator_id[:16]}",
        )

        async def work(connection: AsyncConnection) -> None:
            await ensure_agent_accounts(self._ledger, [request.recipient_id], connection=connection)
            [outcome] = await self._ledger.create_transfers([transfer], connection=connection)
            if outcome.result is not TransferResult.OK:
                raise ExchangeError(ErrorCode.INVALID_REQUEST, f"mint refused: {outcome.result}")
            if not outcome.replayed:
                await repository.add_audit_record(
                    connection,
                    {
                        "operator_id": operator_id,
                        "action": "mint",
                        "subject_id": request.recipient_id,
                        "amount_millicredits": request.amount_millicredits,
                        "reason": request.reason,
                        "transfer_id": transfer_id,
                        "at_ms": self._clock.now_ms(),
                    },
                )

        await self._run(work)
        return MintReply(
            transfer_id=transfer_id,
            recipient_id=request.recipient_id,
            amount_millicredits=request.amount_millicredits,
        )

    # --- plumbing --------------------------------------------------------------

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        try:
            return await run_transaction(self._engine, work)
        except EscrowError as exc:
            # Insufficient funds is handled where it can happen; any other
            # ledger refusal of an escrow step means the contract moved on.
            raise ExchangeError(
                ErrorCode.INVALID_STATE, str(exc), contract_id=exc.contract_id
            ) from exc

    def _notice_header(self, agent_id: str) -> Header:
        return make_header(
            self._keys,
            audience=agent_id,
            subject=subjects.notifications(agent_id),
            lifetime_s=NOTICE_LIFETIME_S,
            clock=self._clock,
        )

    async def _notify(self, agent_id: str, notice: Document) -> None:
        envelope = seal(notice, self._keys)
        try:
            await self._publisher.publish_notice(subjects.notifications(agent_id), envelope)
        except Exception:
            # The state change is committed; a lost notice is recoverable
            # through contract.get, so the request still succeeds.
            log.exception("could not notify %s", agent_id)


def _encoded_schema(schema: dict[str, Any], name: str) -> str:
    encoded = json_encoder.encode(schema)
    if len(encoded) > SCHEMA_BYTES_MAX:
        raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, f"{name} is over {SCHEMA_BYTES_MAX} B")
    return encoded.decode()


def _listing_from_row(row: dict[str, Any]) -> Listing:
    return Listing(
        listing_id=row["listing_id"],
        provider_id=row["provider_id"],
        capability=row["capability"],
        description=row["description"],
        price_millicredits=row["price_millicredits"],
        input_schema=json.loads(row["input_schema"]),
        output_schema=json.loads(row["output_schema"]),
        version=row["version"],
        status=row["status"],
        updated_at_ms=row["updated_at_ms"],
    )


def _view(contract: ContractRow, *, with_payloads: bool = False) -> ContractView:
    delivered = with_payloads and contract.result is not None
    return ContractView(
        contract_id=contract.contract_id,
        state=contract.state.value,
        buyer_id=contract.buyer_id,
        provider_id=contract.provider_id,
        capability=contract.capability,
        price_millicredits=contract.price_millicredits,
        fee_millicredits=contract.fee_millicredits,
        delivery_deadline_ms=contract.delivery_deadline_ms,
        result_sha256=contract.result_sha256,
        record=_envelope_from_text(contract.record_envelope),
        created_at_ms=contract.created_at_ms,
        updated_at_ms=contract.updated_at_ms,
        net_millicredits=contract.net_millicredits,
        task=_raw(contract.task) if with_payloads else JSON_NULL,
        result=_raw(contract.result) if delivered and contract.result else JSON_NULL,
    )


def _envelope_text(envelope: Envelope) -> str:
    return json_encoder.encode(envelope).decode()


def _envelope_from_text(text: str) -> Envelope:
    return msgspec.json.decode(text, type=Envelope)


def _raw(json_text: str) -> msgspec.Raw:
    return msgspec.Raw(json_text.encode())


def _replace(contract: ContractRow, /, **changes: Any) -> ContractRow:
    return dataclasses.replace(contract, **changes)
