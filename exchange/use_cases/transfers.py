"""Direct transfers: an agent pays another agent, the platform keeps the transfer fee."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.keys import is_agent_id
from agent_client.protocol import Transfer, TransferReply
from exchange.adapters import transfer_store
from exchange.domain.spending_rules import frozen_refusal
from exchange.domain.transfer_chains import transfer_chain, transfer_reference, transfer_split
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.exchange_accounts import agent_account_id
from exchange.use_cases.exchange_context import ExchangeContext
from wallet import FeeKind, TransferOutcome, TransferResult

__all__ = ["TransferUseCases"]

# What each ledger refusal means to the payer. A payer without a wallet has
# nothing to spend; a payee without one is refused rather than created: an id
# nobody holds the key of would swallow the credits for good.
_REFUSALS = {
    TransferResult.EXCEEDS_CREDITS: (
        ErrorCode.INSUFFICIENT_FUNDS,
        "the available balance is below the amount",
    ),
    TransferResult.DEBIT_ACCOUNT_NOT_FOUND: (
        ErrorCode.INSUFFICIENT_FUNDS,
        "the available balance is below the amount",
    ),
    TransferResult.CREDIT_ACCOUNT_NOT_FOUND: (
        ErrorCode.NOT_FOUND,
        "the payee has no wallet at this exchange",
    ),
    TransferResult.EXISTS_WITH_DIFFERENT_FIELDS: (
        ErrorCode.IDEMPOTENCY_CONFLICT,
        "this transfer_id was already used for a different transfer",
    ),
}


class TransferUseCases:
    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def transfer(self, payer_id: str, request: Transfer, /) -> TransferReply:
        """Pay ``amount`` to the payee (net of the fee), exactly once per transfer_id.

        A refusal changes nothing and is not remembered, so the same
        transfer_id can be used again once its cause is fixed (a top-up); a
        success is remembered, and a retry returns it without paying again.
        """
        if request.payee_id == payer_id:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "an agent cannot pay itself")
        if not is_agent_id(request.payee_id):
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "payee_id is not a valid agent id")
        reference = transfer_reference(payer_id, request.transfer_id)
        fee_rate_bps = self._context.fees.rate_bps(FeeKind.TRANSFER)
        split = transfer_split(request.amount_millicredits, fee_rate_bps=fee_rate_bps)
        chain = transfer_chain(
            reference,
            payer_account_id=agent_account_id(payer_id),
            payee_account_id=agent_account_id(request.payee_id),
            split=split,
        )
        record = {
            "reference": reference,
            "payer_id": payer_id,
            "transfer_id": request.transfer_id,
            "payee_id": request.payee_id,
            "amount_millicredits": split.amount_millicredits,
            "fee_millicredits": split.fee_millicredits,
            "net_millicredits": split.net_millicredits,
            "memo": request.memo,
            "created_at_ms": self._context.clock.now_ms(),
        }

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], bool]:
            stored = await transfer_store.get_transfer(connection, reference)
            if stored is not None:
                return _replay(stored, request), True
            # A human's (or an operator's) freeze stops direct payments too.
            controls = await self._context.spending.locked_controls(connection, [payer_id])
            frozen = frozen_refusal(controls[payer_id]) if payer_id in controls else None
            if frozen is not None:
                raise frozen.error()
            outcomes = await self._context.ledger.create_transfers(chain, connection=connection)
            _raise_if_refused(outcomes)
            if all(outcome.replayed for outcome in outcomes):
                # A concurrent request with this transfer_id committed first
                # (PostgreSQL: the ledger waited on its locks); answer with it.
                stored = await transfer_store.get_transfer(connection, reference)
                assert stored is not None, reference
                return _replay(stored, request), True
            assert not any(outcome.replayed for outcome in outcomes), "a half-applied chain"
            await transfer_store.insert_transfer(connection, record)
            return record, False

        stored, replayed = await self._context.run(work)
        return TransferReply(
            transfer_id=stored["transfer_id"],
            reference=stored["reference"],
            payer_id=stored["payer_id"],
            payee_id=stored["payee_id"],
            amount_millicredits=stored["amount_millicredits"],
            fee_millicredits=stored["fee_millicredits"],
            net_millicredits=stored["net_millicredits"],
            memo=stored["memo"],
            created_at_ms=stored["created_at_ms"],
            replayed=replayed,
        )


def _replay(stored: dict[str, Any], request: Transfer) -> dict[str, Any]:
    """The first outcome, if the retry asks for the same transfer."""
    same = (
        stored["payee_id"] == request.payee_id
        and stored["amount_millicredits"] == request.amount_millicredits
        and stored["memo"] == request.memo
    )
    if not same:
        raise ExchangeError(*_REFUSALS[TransferResult.EXISTS_WITH_DIFFERENT_FIELDS])
    return stored


def _raise_if_refused(outcomes: Sequence[TransferOutcome]) -> None:
    # In a refused chain the failing leg has the cause and the others say
    # only that a linked leg failed.
    for outcome in outcomes:
        if outcome.result in (TransferResult.OK, TransferResult.LINKED_EVENT_FAILED):
            continue
        code, message = _REFUSALS.get(
            outcome.result, (ErrorCode.INVALID_REQUEST, f"the ledger refused: {outcome.result}")
        )
        raise ExchangeError(code, message)
    assert all(outcome.result is TransferResult.OK for outcome in outcomes)
