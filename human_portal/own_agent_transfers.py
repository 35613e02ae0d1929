"""Moving credits between two agents of the same human (the API's ``credits/transfer``).

The platform's transfer fee (the escrow rate, 5 % by default) goes to the
platform's revenue account; the rest arrives. The caller's idempotency key
names the ledger transfers, so a retry returns the first outcome and never
moves money twice; the same key with other fields is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.use_cases.exchange_accounts import ensure_agent_accounts
from human_portal import limits
from human_portal.accounts import User
from human_portal.budgets import locked_controls
from human_portal.errors import AgentFrozen, Conflict, InsufficientFunds, InvalidInput
from human_portal.ledger_accounts import REVENUE_ACCOUNT_ID, agent_account_id
from human_portal.linking import owner_of
from human_portal.portal_context import PortalContext
from wallet import (
    FeeKind,
    LedgerId,
    NewTransfer,
    TransferCode,
    TransferFlags,
    TransferResult,
    fee_split,
)

__all__ = ["OwnTransfer", "transfer_between_own_agents"]

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class OwnTransfer:
    transfer_id: str
    from_agent_id: str
    to_agent_id: str
    amount_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    replayed: bool


async def transfer_between_own_agents(
    context: PortalContext,
    user: User,
    /,
    *,
    from_agent_id: str,
    to_agent_id: str,
    amount_millicredits: int,
    idempotency_key: str,
) -> OwnTransfer:
    if not 1 <= amount_millicredits <= limits.BUDGET_MILLICREDITS_MAX:
        raise InvalidInput("amount_millicredits", "must be positive and at most a billion credits")
    if from_agent_id == to_agent_id:
        raise InvalidInput("to_agent_id", "must differ from from_agent_id")
    if not _KEY_PATTERN.match(idempotency_key):
        raise InvalidInput("idempotency_key", "1 to 64 letters, digits or _ . : -")
    digest = hashlib.sha256(f"{user.user_id}:{idempotency_key}".encode()).hexdigest()[:40]
    transfer_id = f"own-transfer:{digest}"
    fees = await context.fee_schedule()
    fee, net = fee_split(amount_millicredits, rate_bps=fees.rate_bps(FeeKind.TRANSFER))
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> bool:
        await owner_of(connection, user, from_agent_id)
        await owner_of(connection, user, to_agent_id)
        if (await locked_controls(connection, from_agent_id, now_ms)).frozen:
            raise AgentFrozen(from_agent_id)
        await ensure_agent_accounts(
            context.ledger, [from_agent_id, to_agent_id], connection=connection
        )
        steps = [
            (":net", agent_account_id(to_agent_id), net, TransferCode.TRANSFER),
            (":fee", REVENUE_ACCOUNT_ID, fee, TransferCode.FEE),
        ]
        kept = [step for step in steps if step[2] > 0]
        transfers = [
            NewTransfer(
                id=transfer_id + suffix,
                debit_account_id=agent_account_id(from_agent_id),
                credit_account_id=credit_account_id,
                amount=amount,
                ledger=LedgerId.CREDITS,
                code=code,
                flags=TransferFlags.LINKED if index < len(kept) - 1 else TransferFlags.NONE,
                user_data=f"own-transfer:{user.user_id}"[:128],
            )
            for index, (suffix, credit_account_id, amount, code) in enumerate(kept)
        ]
        outcomes = await context.ledger.create_transfers(transfers, connection=connection)
        results = {outcome.result for outcome in outcomes}
        if TransferResult.EXCEEDS_CREDITS in results:
            balances = await context.ledger.lookup_accounts(
                [agent_account_id(from_agent_id)], connection=connection
            )
            wallet = balances.get(agent_account_id(from_agent_id))
            raise InsufficientFunds(
                available_millicredits=wallet.available if wallet is not None else 0,
                requested_millicredits=amount_millicredits,
            )
        if TransferResult.EXISTS_WITH_DIFFERENT_FIELDS in results:
            raise Conflict("this idempotency key was used for another transfer")
        assert results == {TransferResult.OK}, outcomes
        return all(outcome.replayed for outcome in outcomes)

    replayed = await context.write(work)
    return OwnTransfer(
        transfer_id, from_agent_id, to_agent_id, amount_millicredits, fee, net, replayed
    )
