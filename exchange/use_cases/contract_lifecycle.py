"""Contract use cases: open (with the escrow hold), deliver, accept, reject, cancel,
resolve, timers, evidence.

Each use case checks what it can without the database (signatures, the
quote, the result's bytes), then hands one job to the worker's group commit
(:mod:`exchange.use_cases.group_commit`), which decides it in
:func:`~exchange.use_cases.contract_groups.apply_contract_group` with the
other steps of its group, in one transaction: the contract is loaded, who
may cause the event is checked, the escrow is held or settled, the state is
compare-and-set, the event is recorded in the contract's history and the
notices are staged in the outbox (to each party its reply has not told,
``transition_notices``). Notices are published after commit. A lone step
is a group of one: there is no other path.
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
from agent_client.protocol import (
    AcceptDelivery,
    CancelContract,
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
    seal,
    sha256_hex,
)
from escrow import provider_share_for_bps, settlement_for
from exchange.adapters import contract_store
from exchange.domain.contract_states import (
    ContractEvent,
    ContractRow,
    ContractState,
    Role,
    check_party,
    contract_id_for_quote,
    due_event,
    provider_share_bps,
)
from exchange.domain.delivery_checks import check_result_against_schema
from exchange.domain.negotiation_rules import check_negotiation
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import CONTRACT_EVENTS_MAX, SWEEP_BATCH_MAX
from exchange.use_cases.contract_groups import (
    ContractJob,
    ContractOutcome,
    OpenJob,
    Step,
    TransitionJob,
    already_accepted_error,
    apply_contract_group,
)
from exchange.use_cases.contract_reports import contract_event_entry
from exchange.use_cases.contract_views import (
    contract_view,
    envelope_from_text,
    envelope_text,
    raw_json,
)
from exchange.use_cases.exchange_context import ExchangeContext, OutboxNotice
from exchange.use_cases.group_commit import GroupCommitter
from exchange.use_cases.offer_checks import verified_offer
from exchange.use_cases.opened_contracts import DeliveryTerms
from exchange.use_cases.results import read_stored_result
from exchange.use_cases.spending import purchase_request
from wallet import FeeKind

__all__ = ["ContractUseCases"]

# The history's detail of each timer's event.
_TIMER_DETAILS = {
    ContractEvent.DEADLINE_PASSED: "deadline",
    ContractEvent.REVIEW_WINDOW_PASSED: "review",
    ContractEvent.DISPUTE_WINDOW_PASSED: "default",
}


class ContractUseCases:
    """The contract lifecycle; every step goes through the worker's group commit."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context
        # One group committer per worker, shared by every ContractUseCases on the context.
        if context.contract_groups is None:
            context.contract_groups = GroupCommitter[ContractJob, ContractOutcome](
                context.run,
                lambda connection, jobs: apply_contract_group(context, connection, jobs),
                jobs_max=context.group_size_max,
            )
        self._groups: GroupCommitter[ContractJob, ContractOutcome] = context.contract_groups

    async def _apply(self, job: ContractJob) -> ContractView:
        """Apply ``job`` in the worker's next group; publish its notices after commit."""
        outcome = await self._groups.submit(job)
        if isinstance(outcome, ExchangeError):
            raise outcome
        if isinstance(job, OpenJob):
            # As opened: with the output schema the listing had then.
            self._context.opened_contracts.remember(outcome.contract)
        await self._context.publish_soon(outcome.notices)
        return contract_view(outcome.contract)

    # --- open ---------------------------------------------------------------------

    async def open_contract(
        self, buyer_id: str, acceptance: VerifiedDocument[OpenContract], /
    ) -> ContractView:
        """Verify the quote, hold the price in escrow and open the contract, atomically."""
        request = acceptance.document
        assert acceptance.verified
        try:
            quote, quote_bytes = self._verified_quote(request.quote, buyer_id)
        except ExchangeError:
            # A retry after the quote expired must still learn its contract.
            await self._raise_if_already_accepted(request.quote, buyer_id)
            raise
        if len(request.task) > protocol_limits.TASK_BYTES_MAX:
            raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, "the task is too large")
        # Negotiation rules (exchange/domain/negotiation_rules.py): the history
        # must hold together, and each negotiation opens at most one contract.
        negotiation = check_negotiation(quote, quote_bytes, request.history, buyer_id=buyer_id)
        contract = self._new_contract(buyer_id, quote, quote_bytes, acceptance)
        spending = purchase_request(
            contract.contract_id,
            buyer_id=buyer_id,
            provider_id=contract.provider_id,
            capability=contract.capability,
            price_millicredits=contract.price_millicredits,
            now_ms=contract.created_at_ms,
            offer_expires_at_ms=quote.header.expires_at_ms,
            task=contract.task,
        )
        return await self._apply(
            OpenJob(contract, negotiation, self._opening_notices(contract), spending)
        )

    def _opening_notices(self, contract: ContractRow) -> list[OutboxNotice]:
        """The task to the provider; the buyer learns of the opening from its reply."""
        return [
            self._context.notice(
                contract.provider_id,
                lambda header: ContractOpenedNotice(
                    header=header,
                    record=envelope_from_text(contract.record_envelope),
                    task=raw_json(contract.task),
                    seal_result=contract.seal_result,
                ),
            ),
        ]

    async def _raise_if_already_accepted(self, envelope: Envelope, buyer_id: str) -> None:
        try:
            contract_id = contract_id_for_quote(b64decode(envelope.doc))
        except ValueError:
            return

        async def work(connection: AsyncConnection) -> ContractRow | None:
            return await contract_store.get_contract(connection, contract_id)

        contract = await self._context.run(work)
        if contract is not None and contract.buyer_id == buyer_id:
            raise already_accepted_error(contract_id)

    def _verified_quote(self, envelope: Envelope, buyer_id: str) -> tuple[Quote, bytes]:
        quote, quote_bytes = verified_offer(
            envelope,
            Quote,
            buyer_id=buyer_id,
            clock=self._context.clock,
            subject_for=subjects.rfq,
            name="quote",
        )
        now_ms = self._context.clock.now_ms()
        if quote.delivery_deadline_ms <= now_ms:
            raise ExchangeError(ErrorCode.QUOTE_EXPIRED, "the delivery deadline has passed")
        if quote.delivery_deadline_ms > now_ms + protocol_limits.DELIVERY_DEADLINE_MAX_S * 1000:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "the delivery deadline is too far away")
        return quote, quote_bytes

    def _new_contract(
        self,
        buyer_id: str,
        quote: Quote,
        quote_bytes: bytes,
        acceptance: VerifiedDocument[OpenContract],
    ) -> ContractRow:
        request = acceptance.document
        contract_id = contract_id_for_quote(quote_bytes)
        fee_rate_bps = self._context.fees.rate_bps(FeeKind.ESCROW, capability=quote.capability)
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
            opened = self._context.opened_contracts
            terms = opened.terms_for(request.contract_id, provider_id)
            if terms is None:
                contract = await self._context.run(read)
                opened.remember(contract)
                terms = DeliveryTerms.of(contract)
            if not terms.seal_result:
                await check_result_against_schema(
                    msgspec.json.decode(result_bytes),
                    terms.output_schema,
                    contract_id=request.contract_id,
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
            return self._settling_step(contract, ContractEvent.ACCEPT)

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
        reason = request.reason

        def step(contract: ContractRow, now_ms: int) -> Step:
            if check_party(contract, agent_id) is Role.PROVIDER:
                mutual = "mutual: " if contract.buyer_cancel_requested else ""
                return self._settling_step(
                    contract, ContractEvent.PROVIDER_CANCEL, detail=mutual + reason
                )
            # Asked already: one request in the history is enough.
            return Step(
                {"buyer_cancel_requested": True},
                detail=reason,
                notify=False,
                repeat=contract.buyer_cancel_requested,
            )

        return await self._transition(request.contract_id, agent_id, ContractEvent.CANCEL, step)

    async def resolve(self, operator_id: str, request: Resolve, /) -> ContractView:
        """Operator only: end a dispute with all, nothing or a split for the provider."""
        if operator_id not in self._context.operator_ids:
            raise ExchangeError(ErrorCode.FORBIDDEN, "only an operator resolves disputes")

        def step(contract: ContractRow, now_ms: int) -> Step:
            settling = self._settling_step(
                contract,
                ContractEvent.RESOLVE,
                resolved_bps=request.provider_share_bps,
                detail=request.note,
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
            return await contract_store.due_contract_ids(
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
            assert event is not None
            settling = self._settling_step(contract, event, detail=_TIMER_DETAILS[event])
            if event is not ContractEvent.DISPUTE_WINDOW_PASSED:
                return settling
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
            return await contract_store.contract_event_rows(
                connection, contract_id, limit=CONTRACT_EVENTS_MAX
            )

        events = await self._context.run(work)
        return EvidenceReply(
            contract=contract_view(contract, with_payloads=True),
            quote=envelope_from_text(contract.quote_envelope),
            acceptance=envelope_from_text(contract.acceptance_envelope),
            record=envelope_from_text(contract.record_envelope),
            events=[contract_event_entry(row) for row in events],
        )

    async def _read(
        self, agent_id: str, contract_id: str, *, allow_operator: bool = False
    ) -> ContractRow:
        """A contract as of now: a timer that is due is applied first."""

        async def work(connection: AsyncConnection) -> ContractRow:
            contract = await contract_store.get_contract(connection, contract_id)
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
        """Apply one event to one contract (see the module docstring).

        ``event`` None means "the timer that is due" (see ``decide_transition``).
        """
        job = TransitionJob(
            contract_id, actor_id, event, decide, role, self._context.clock.now_ms()
        )
        return await self._apply(job)

    async def _load(
        self,
        connection: AsyncConnection,
        contract_id: str,
        actor_id: str,
        *,
        role: Role | None = None,
    ) -> ContractRow:
        contract = await contract_store.get_contract(connection, contract_id)
        if contract is None:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
        if role is None:
            check_party(contract, actor_id)
        return contract

    def _settling_step(
        self,
        contract: ContractRow,
        event: ContractEvent,
        *,
        resolved_bps: int | None = None,
        detail: str = "",
    ) -> Step:
        share_bps = provider_share_bps(
            event,
            resolved_bps=resolved_bps,
            dispute_default_bps=self._context.lifecycle.dispute_default_provider_share_bps,
        )
        settlement = settlement_for(
            contract.price_millicredits,
            provider_share_millicredits=provider_share_for_bps(
                contract.price_millicredits, provider_share_bps=share_bps
            ),
            fee_rate_bps=contract.fee_rate_bps,
        )
        changes = {
            "net_millicredits": settlement.net_millicredits,
            "fee_millicredits": settlement.fee_millicredits,
            "refunded_millicredits": settlement.refunded_millicredits,
        }
        return Step(changes, settlement=settlement, detail=detail)
