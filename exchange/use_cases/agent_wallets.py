"""Account use cases: an agent's balance and history, operator mints."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.keys import is_agent_id
from agent_client.protocol import (
    BalanceReply,
    ListTransactions,
    Mint,
    MintReply,
    TransactionEntry,
)
from exchange.adapters import contract_store
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.exchange_accounts import (
    ISSUANCE_ACCOUNT_ID,
    agent_account_id,
    ensure_agent_accounts,
)
from exchange.use_cases.exchange_context import ExchangeContext
from wallet import (
    LedgerId,
    NewTransfer,
    TransferCode,
    TransferFlags,
    TransferResult,
)

__all__ = ["AccountUseCases"]


class AccountUseCases:
    """Wallet reads for agents and the operator's audited mint."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def balance(self, agent_id: str, /) -> BalanceReply:
        account_id = agent_account_id(agent_id)
        balances = await self._context.ledger.lookup_accounts([account_id])
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
        records = await self._context.ledger.account_transfers(
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
        if operator_id not in self._context.operator_ids:
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
            await ensure_agent_accounts(
                self._context.ledger, [request.recipient_id], connection=connection
            )
            [outcome] = await self._context.ledger.create_transfers(
                [transfer], connection=connection
            )
            if outcome.result is not TransferResult.OK:
                raise ExchangeError(ErrorCode.INVALID_REQUEST, f"mint refused: {outcome.result}")
            if not outcome.replayed:
                await contract_store.add_audit_record(
                    connection,
                    {
                        "operator_id": operator_id,
                        "action": "mint",
                        "subject_id": request.recipient_id,
                        "amount_millicredits": request.amount_millicredits,
                        "reason": request.reason,
                        "transfer_id": transfer_id,
                        "at_ms": self._context.clock.now_ms(),
                    },
                )

        await self._context.run(work)
        return MintReply(
            transfer_id=transfer_id,
            recipient_id=request.recipient_id,
            amount_millicredits=request.amount_millicredits,
        )

    # --- plumbing --------------------------------------------------------------
