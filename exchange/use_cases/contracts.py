"""Contract use cases: open (with the escrow hold), deliver, accept, reject, cancel,
resolve, timers, evidence.

Every transition goes through :meth:`ContractUseCases._transition`: one
transaction that loads the contract, checks who may cause the event, settles
the escrow if the new state is a settled one, compare-and-sets the state,
records the event in the contract's history and stages a notice to each
party in the outbox. Notices are published after commit. A provider's
deliver that repeats the delivery a contract holds (a client's retry) is
answered with the contract and changes nothing (``decide_transition``).

Opens and transitions go through the worker's group commit first
(:mod:`exchange.use_cases.group_commit`): many contracts' steps in one
transaction, each decided exactly as here. A job the group answers
``ALONE`` runs the path below, one transaction of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    AcceptDelivery,
    CancelContract,
    ContractEventEntry,
    ContractOpenedNotice,
    ContractRecord,
    ContractView,
    Deliver,
    Envelope,
    EvidenceReply,
    OpenContract,
    Quote,
    RejectDelivery,
    Resolve,
    json_encoder,
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
from escrow import InsufficientFunds, provider_share_for_bps, settlement_for
from exchange import catalog_repository, repository
from exchange.catalog import listing_id_for
from exchange.contracts import (
    ContractEvent,
    ContractRow,
    ContractState,
    Role,
    check_party,
    contract_id_for_quote,
    due_event,
)
from exchange.delivery_checks import check_result_against_schema
from exchange.errors import ErrorCode, ExchangeError
from exchange.ledger_accounts import agent_account_id, ensure_agent_accounts
from exchange.limits import CONTRACT_EVENTS_MAX, SWEEP_BATCH_MAX
from exchange.negotiation import check_negotiation
from exchange.negotiation_repository import check_negotiation_open, insert_negotiation
from exchange.use_cases.context import ExchangeContext, OutboxNotice
from exchange.use_cases.contract_groups import (
    Applied,
    ContractJob,
    OpenJob,
    Step,
    TransitionJob,
    already_accepted_error,
    apply_contract_group,
    decide_transition,
    event_values,
    hold_order,
    insufficient_funds_error,
    move_for,
    no_active_listing_error,
    settle_order,
    transition_notices,
    updated_notice,
)
from exchange.use_cases.group_commit import ALONE, Alone, GroupCommitter
from exchange.use_cases.results import read_stored_result
from exchange.views import (
    contract_view,
    envelope_from_text,
    envelope_text,
    raw_json,
)
from human_portal.budgets import (
    SpendingRefused,
    SpendingRequest,
    enforce_spending_controls,
    record_refusal,
)

__all__ = ["ContractUseCases"]


class ContractUseCases:
    """The contract lifecycle, one transaction per step; notices after commit."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context
        # One group committer per worker, shared by every ContractUseCases on the context.
        if context.group_commit and context.contract_groups is None:
            context.contract_groups = GroupCommitter[ContractJob, Any](
                context.run,
                lambda connection, jobs: apply_contract_group(context, connection, jobs),
            )

    async def _in_group(self, job: ContractJob) -> Applied | Alone:
        """Apply ``job`` in the worker's next group; ALONE: apply it unbatched."""
        groups = self._context.contract_groups
        if groups is None:
            return ALONE
        outcome = await groups.submit(job)
        if isinstance(outcome, ExchangeError):
            raise outcome
        assert isinstance(outcome, Applied | Alone)
        return outcome

    # --- open ---------------------------------------------------------------------

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
        # Negotiation rules (exchange/negotiation.py): the history must hold
        # together, and each negotiation opens at most one contract.
        negotiation = check_negotiation(quote, quote_bytes, request.history, buyer_id=buyer_id)
        contract = self._new_contract(buyer_id, quote, quote_bytes, acceptance)
        notices = [
            self._context.notice(
                contract.provider_id,
                lambda header: ContractOpenedNotice(
                    header=header,
                    record=envelope_from_text(contract.record_envelope),
                    task=raw_json(contract.task),
                    seal_result=contract.seal_result,
                ),
            ),
            updated_notice(self._context, contract.buyer_id, contract, ContractEvent.OPEN, ""),
        ]
        applied = await self._in_group(OpenJob(contract, negotiation, notices))
        if isinstance(applied, Applied):
            await self._context.publish_soon(applied.notices)
            return contract_view(applied.contract)

        async def work(connection: AsyncConnection) -> None:
            if await repository.get_contract(connection, contract.contract_id) is not None:
                raise already_accepted_error(contract.contract_id)
            await check_negotiation_open(connection, negotiation)
            output_schema = await self._active_listing_output_schema(connection, quote)
            # The buyer's human may have set limits, a freeze or an approval threshold.
            await enforce_spending_controls(
                connection,
                self._context.ledger,
                SpendingRequest.for_contract(
                    contract,
                    buyer_account_id=agent_account_id(buyer_id),
                    quote_expires_at_ms=quote.header.expires_at_ms,
                ),
            )
            await ensure_agent_accounts(
                self._context.ledger, [buyer_id, contract.provider_id], connection=connection
            )
            await self._hold(connection, contract)
            await repository.insert_contract(
                connection, dataclasses.replace(contract, output_schema=output_schema)
            )
            await insert_negotiation(
                connection,
                negotiation,
                contract_id=contract.contract_id,
                now_ms=contract.created_at_ms,
            )
            await self._record_event(connection, contract, "open", buyer_id)
            await self._context.stage(connection, notices)

        try:
            await self._context.run(work)
        except SpendingRefused as refused:
            # An approval request outlives the rolled-back transaction.
            await record_refusal(self._context.engine, refused)
            raise ExchangeError(
                refused.code, refused.message, contract_id=contract.contract_id
            ) from refused
        await self._context.publish_soon(notices)
        return contract_view(contract)

    async def _hold(self, connection: AsyncConnection, contract: ContractRow) -> None:
        try:
            await self._context.escrow.hold(hold_order(contract), connection=connection)
        except InsufficientFunds as exc:
            raise insufficient_funds_error() from exc

    async def _raise_if_already_accepted(self, envelope: Envelope, buyer_id: str) -> None:
        try:
            contract_id = contract_id_for_quote(b64decode(envelope.doc))
        except ValueError:
            return

        async def work(connection: AsyncConnection) -> ContractRow | None:
            return await repository.get_contract(connection, contract_id)

        contract = await self._context.run(work)
        if contract is not None and contract.buyer_id == buyer_id:
            raise already_accepted_error(contract_id)

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

    async def _active_listing_output_schema(self, connection: AsyncConnection, quote: Quote) -> str:
        """The output schema of the provider's active listing (its deliveries' contract)."""
        listing = await catalog_repository.get_listing(
            connection, listing_id_for(quote.header.issuer, quote.capability)
        )
        if listing is None or listing["status"] != "active":
            raise no_active_listing_error(quote.capability)
        return str(listing["output_schema"])

    def _new_contract(
        self, buyer_id: str, quote: Quote, quote_bytes: bytes, acceptance: VerifiedDocument
    ) -> ContractRow:
        request = acceptance.document
        assert isinstance(request, OpenContract)
        contract_id = contract_id_for_quote(quote_bytes)
        fee_rate_bps = self._context.escrow.fee_rate_bps
        full_release = settlement_for(
            quote.price_millicredits,
            provider_share_millicredits=quote.price_millicredits,
            fee_rate_bps=fee_rate_bps,
        )
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
            fee_millicredits=full_release.fee_millicredits,
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
            fee_millicredits=full_release.fee_millicredits,
            fee_rate_bps=fee_rate_bps,
            net_millicredits=None,
            refunded_millicredits=0,
            delivery_deadline_ms=quote.delivery_deadline_ms,
            review_deadline_ms=None,
            dispute_deadline_ms=None,
            due_at_ms=quote.delivery_deadline_ms,
            quote_envelope=envelope_text(request.quote),
            acceptance_envelope=envelope_text(acceptance.envelope),
            record_envelope=envelope_text(seal(record, self._context.keys)),
            task=bytes(request.task).decode(),
            result=None,
            result_sha256=None,
            result_ref=None,
            output_schema="{}",
            seal_result=request.seal_result,
            dispute_reason=None,
            buyer_cancel_requested=False,
            resolution=None,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )

    # --- transitions caused by the parties ------------------------------------------

    async def deliver(self, provider_id: str, request: Deliver, /) -> ContractView:
        """Check the result (size, hash, schema or sealing) and mark the contract delivered.

        A stored result (up to 16 MiB) is held in memory while it is checked,
        so only a few such deliveries run at once; the others wait.
        """
        if request.result_ref is None:
            return await self._deliver(provider_id, request)
        async with self._context.stored_result_deliveries:
            return await self._deliver(provider_id, request)

    async def _deliver(self, provider_id: str, request: Deliver) -> ContractView:
        result_bytes = await self._result_bytes(request, provider_id)
        if sha256_hex(result_bytes) != request.result_sha256:
            raise ExchangeError(ErrorCode.HASH_MISMATCH, "the result does not match its hash")

        async def read(connection: AsyncConnection) -> ContractRow:
            return await self._load(connection, request.contract_id, provider_id)

        # The schema check takes a thread for up to its time budget, so it runs
        # here rather than in the step (which may run inside a transaction, and
        # twice), against the schema kept when the contract opened: it never
        # changes, and neither does seal_result. A sealed result is ciphertext.
        if not request.sealed:
            contract = await self._context.run(read)
            if not contract.seal_result:
                await check_result_against_schema(
                    msgspec.json.decode(result_bytes),
                    contract.output_schema,
                    contract_id=contract.contract_id,
                )

        def step(contract: ContractRow, now_ms: int) -> Step:
            if request.sealed != contract.seal_result:
                wanted = "sealed" if contract.seal_result else "not sealed"
                raise ExchangeError(
                    ErrorCode.INVALID_REQUEST,
                    f"the buyer asked for a result {wanted}",
                    contract_id=contract.contract_id,
                )
            review_deadline_ms = now_ms + self._context.lifecycle.review_window_s * 1000
            reference = request.result_ref
            return Step(
                {
                    "result": None if reference else result_bytes.decode(),
                    "result_ref": json_encoder.encode(reference).decode() if reference else None,
                    "result_sha256": request.result_sha256,
                    "review_deadline_ms": review_deadline_ms,
                }
            )

        return await self._transition(request.contract_id, provider_id, ContractEvent.DELIVER, step)

    async def _result_bytes(self, request: Deliver, signer_id: str) -> bytes:
        """The exact result bytes (inline, or the chunks the provider uploaded), checked
        to be JSON, and a JSON string when sealed."""
        if request.result_ref is None:
            result_bytes = bytes(request.result)
            if len(result_bytes) > protocol_limits.RESULT_BYTES_MAX:
                raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, "too large inline: use the store")
        elif self._context.results is None:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "this worker takes inline results only")
        else:
            # A stored result is read back for the contract's provider only:
            # nobody else may learn its size or hash by trying, nor make the
            # exchange read up to 16 MiB for nothing.
            async def read(connection: AsyncConnection) -> ContractRow:
                return await self._load(connection, request.contract_id, signer_id)

            contract = await self._context.run(read)
            if check_party(contract, signer_id) is not Role.PROVIDER:
                raise ExchangeError(
                    ErrorCode.FORBIDDEN,
                    "only the provider delivers",
                    contract_id=contract.contract_id,
                )
            result_bytes = await read_stored_result(
                self._context.results, contract.contract_id, request.result_ref
            )
        try:
            msgspec.json.decode(result_bytes, type=str if request.sealed else Any)
        except msgspec.DecodeError as exc:
            expected = "a JSON string (sealed)" if request.sealed else "JSON"
            raise ExchangeError(ErrorCode.INVALID_REQUEST, f"the result is not {expected}") from exc
        return result_bytes

    async def accept_delivery(self, buyer_id: str, request: AcceptDelivery, /) -> ContractView:
        """Release the held price: provider gets price − fee, the platform the fee."""

        def step(contract: ContractRow, now_ms: int) -> Step:
            if contract.result_sha256 != request.result_sha256:
                raise ExchangeError(
                    ErrorCode.HASH_MISMATCH,
                    "the accepted hash is not the delivered result's",
                    contract_id=contract.contract_id,
                )
            return self._settling_step(contract, provider_share_bps=10_000)

        return await self._transition(request.contract_id, buyer_id, ContractEvent.ACCEPT, step)

    async def reject_delivery(self, buyer_id: str, request: RejectDelivery, /) -> ContractView:
        """The buyer disputes the delivery; an operator (or the window) decides."""

        def step(contract: ContractRow, now_ms: int) -> Step:
            dispute_deadline_ms = now_ms + self._context.lifecycle.dispute_window_s * 1000
            return Step(
                {"dispute_reason": request.reason, "dispute_deadline_ms": dispute_deadline_ms},
                detail=request.reason,
            )

        return await self._transition(request.contract_id, buyer_id, ContractEvent.REJECT, step)

    async def cancel(self, agent_id: str, request: CancelContract, /) -> ContractView:
        """Before delivery. The provider's cancel refunds; the buyer's is a request
        that refunds once the provider cancels too (a mutual cancel)."""

        contract_id, reason = request.contract_id, request.reason

        def refund(contract: ContractRow, now_ms: int) -> Step:
            mutual = "mutual: " if contract.buyer_cancel_requested else ""
            return self._settling_step(contract, provider_share_bps=0, detail=mutual + reason)

        async def work(connection: AsyncConnection) -> ContractRow | None:
            contract = await self._load(connection, contract_id, agent_id)
            if check_party(contract, agent_id) is Role.PROVIDER:
                return None
            if contract.state is not ContractState.OPEN:
                raise ExchangeError(
                    ErrorCode.INVALID_STATE,
                    f"only an open contract can be cancelled; this one is {contract.state.value}",
                    contract_id=contract_id,
                )
            if due_event(contract, now_ms=self._context.clock.now_ms()) is not None:
                raise ExchangeError(
                    ErrorCode.INVALID_STATE,
                    "the delivery deadline has passed",
                    contract_id=contract_id,
                )
            if contract.buyer_cancel_requested:
                return contract  # asked already: one request in the history is enough
            await repository.transition_contract(
                connection,
                contract_id,
                from_state=ContractState.OPEN,
                to_state=ContractState.OPEN,
                changes={"buyer_cancel_requested": True},
            )
            await self._record_event(connection, contract, "cancel_request", agent_id, reason)
            return contract

        requested = await self._context.run(work)
        if requested is None:
            return await self._transition(
                contract_id, agent_id, ContractEvent.PROVIDER_CANCEL, refund
            )
        return contract_view(dataclasses.replace(requested, buyer_cancel_requested=True))

    async def resolve(self, operator_id: str, request: Resolve, /) -> ContractView:
        """Operator only: end a dispute with all, nothing or a split for the provider."""
        if operator_id not in self._context.operator_ids:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only an operator resolves disputes")

        def step(contract: ContractRow, now_ms: int) -> Step:
            settling = self._settling_step(
                contract, provider_share_bps=request.provider_share_bps, detail=request.note
            )
            return dataclasses.replace(
                settling, changes={**settling.changes, "resolution": "operator"}
            )

        return await self._transition(
            request.contract_id, operator_id, ContractEvent.RESOLVE, step, role=Role.OPERATOR
        )

    # --- timers ---------------------------------------------------------------------

    async def sweep(self) -> int:
        """Apply every due timer (refund, auto-release, default dispute outcome).

        Safe to run in every worker at once: each contract moves by
        compare-and-set, so a contract another worker (or a party) moved
        first is simply skipped.
        """
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> list[str]:
            return await repository.due_contract_ids(
                connection, now_ms=now_ms, limit=SWEEP_BATCH_MAX
            )

        due = await self._context.run(work)
        # Together, so that the group commit applies them a group at a time.
        outcomes = await asyncio.gather(
            *(self._apply_due_timer(contract_id) for contract_id in due), return_exceptions=True
        )
        for outcome in outcomes:
            # ExchangeError: another worker or a party moved it first.
            if isinstance(outcome, BaseException) and not isinstance(outcome, ExchangeError):
                raise outcome
        return sum(not isinstance(outcome, BaseException) for outcome in outcomes)

    async def _apply_due_timer(self, contract_id: str) -> ContractView:
        def step(contract: ContractRow, now_ms: int) -> Step:
            event = due_event(contract, now_ms=now_ms)
            if event is ContractEvent.DEADLINE_PASSED:
                return self._settling_step(contract, provider_share_bps=0, detail="deadline")
            if event is ContractEvent.REVIEW_WINDOW_PASSED:
                return self._settling_step(contract, provider_share_bps=10_000, detail="review")
            assert event is ContractEvent.DISPUTE_WINDOW_PASSED
            share_bps = self._context.lifecycle.dispute_default_provider_share_bps
            settling = self._settling_step(contract, provider_share_bps=share_bps, detail="default")
            return dataclasses.replace(
                settling, changes={**settling.changes, "resolution": "default"}
            )

        return await self._transition(
            contract_id, self._context.exchange_id, None, step, role=Role.EXCHANGE
        )

    # --- reads ----------------------------------------------------------------------

    async def get_contract(self, agent_id: str, contract_id: str, /) -> ContractView:
        contract = await self._read(agent_id, contract_id)
        return contract_view(contract, with_payloads=True)

    async def evidence(self, agent_id: str, contract_id: str, /) -> EvidenceReply:
        """The evidence bundle, for the parties and for operators."""
        is_operator = agent_id in self._context.operator_ids
        contract = await self._read(agent_id, contract_id, allow_operator=is_operator)

        async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
            return await repository.contract_event_rows(
                connection, contract_id, limit=CONTRACT_EVENTS_MAX
            )

        events = await self._context.run(work)
        return EvidenceReply(
            contract=contract_view(contract, with_payloads=True),
            quote=envelope_from_text(contract.quote_envelope),
            acceptance=envelope_from_text(contract.acceptance_envelope),
            record=envelope_from_text(contract.record_envelope),
            events=[
                ContractEventEntry(
                    event=row["event"],
                    actor_id=row["actor_id"],
                    to_state=row["to_state"],
                    detail=row["detail"],
                    at_ms=row["at_ms"],
                )
                for row in events
            ],
        )

    async def _read(
        self, agent_id: str, contract_id: str, *, allow_operator: bool = False
    ) -> ContractRow:
        """A contract as of now: a timer that is due is applied first."""

        async def work(connection: AsyncConnection) -> ContractRow:
            contract = await repository.get_contract(connection, contract_id)
            if contract is None:
                raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
            if not allow_operator:
                check_party(contract, agent_id)
            return contract

        contract = await self._context.run(work)
        if due_event(contract, now_ms=self._context.clock.now_ms()) is not None:
            # Someone else may have applied it first; either way it is applied.
            with contextlib.suppress(ExchangeError):
                await self._apply_due_timer(contract_id)
            contract = await self._context.run(work)
        return contract

    # --- the one transition mechanism -------------------------------------------------

    async def _transition(
        self,
        contract_id: str,
        actor_id: str,
        event: ContractEvent | None,
        decide: Callable[[ContractRow, int], Step],
        *,
        role: Role | None = None,
    ) -> ContractView:
        """Apply one event to one contract in one transaction (see the module docstring).

        ``event`` None means "the timer that is due" (see ``decide_transition``).
        """
        job = TransitionJob(
            contract_id, actor_id, event, decide, role, self._context.clock.now_ms()
        )
        applied = await self._in_group(job)
        if isinstance(applied, Applied):
            await self._context.publish_soon(applied.notices)
            return contract_view(applied.contract)

        # May run more than once: it returns its outcome and sets nothing outside.
        async def work(connection: AsyncConnection) -> tuple[ContractRow, list[OutboxNotice]]:
            contract = await self._load(connection, contract_id, actor_id, role=role)
            transition = decide_transition(contract, job)
            if transition is None:
                return contract, []  # a repeated delivery: nothing changes
            updated, step, applied_event = transition
            if step.settlement is not None:
                order = settle_order(contract, step.settlement)
                await self._context.escrow.settle(order, connection=connection)
            move = move_for(contract, updated, step)
            await repository.transition_contract(
                connection,
                contract_id,
                from_state=move.from_state,
                to_state=move.to_state,
                changes=move.changes,
            )
            await self._record_event(
                connection, updated, applied_event.value, actor_id, step.detail
            )
            notices = transition_notices(self._context, updated, applied_event, step.detail)
            await self._context.stage(connection, notices)
            return updated, notices

        contract, notices = await self._context.run(work)
        await self._context.publish_soon(notices)
        return contract_view(contract)

    async def _load(
        self,
        connection: AsyncConnection,
        contract_id: str,
        actor_id: str,
        *,
        role: Role | None = None,
    ) -> ContractRow:
        contract = await repository.get_contract(connection, contract_id)
        if contract is None:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
        if role is None:
            check_party(contract, actor_id)
        return contract

    def _settling_step(
        self, contract: ContractRow, *, provider_share_bps: int, detail: str = ""
    ) -> Step:
        settlement = settlement_for(
            contract.price_millicredits,
            provider_share_millicredits=provider_share_for_bps(
                contract.price_millicredits, provider_share_bps=provider_share_bps
            ),
            fee_rate_bps=contract.fee_rate_bps,
        )
        changes = {
            "net_millicredits": settlement.net_millicredits,
            "fee_millicredits": settlement.fee_millicredits,
            "refunded_millicredits": settlement.refunded_millicredits,
        }
        return Step(changes, settlement=settlement, detail=detail)

    async def _record_event(
        self,
        connection: AsyncConnection,
        contract: ContractRow,
        event: str,
        actor_id: str,
        detail: str = "",
    ) -> None:
        await repository.add_contract_event(
            connection,
            event_values(contract, event, actor_id, detail, at_ms=self._context.clock.now_ms()),
        )
