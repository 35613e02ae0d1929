"""The humans' spending controls as rules (pure): what a controlled buyer may open.

A human sets, per linked agent, a daily limit and a per-contract limit (in
millicredits), an approval threshold and a freeze switch; an operator can
freeze an agent too. The portal stores them; the exchange enforces them when
a contract opens (through the port in :mod:`exchange.use_cases.spending`),
and this module decides, on plain values, whether they refuse a contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import APPROVAL_LIFETIME_MAX_S

__all__ = [
    "ApprovalStatus",
    "Controls",
    "SpendingRefusal",
    "SpendingRequest",
    "approval_expires_at_ms",
    "frozen_refusal",
    "spending_refusal",
    "start_of_day_ms",
]

_MILLISECONDS_PER_DAY = 24 * 3600 * 1000


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Controls:
    agent_id: str
    daily_limit_millicredits: int | None
    contract_limit_millicredits: int | None
    approval_threshold_millicredits: int | None
    frozen_by_owner: bool
    frozen_by_operator: bool
    operator_freeze_reason: str

    @property
    def frozen(self) -> bool:
        return self.frozen_by_owner or self.frozen_by_operator


@dataclass(frozen=True, slots=True)
class SpendingRequest:
    """A contract about to open, as the controls see it."""

    contract_id: str
    buyer_id: str
    buyer_account_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    now_ms: int
    # An approval is asked for until the quote itself expires (or a day at most).
    expires_at_ms: int
    # The buyer's task (JSON text) when the purchase is a contract: the human
    # asked to approve it reads what the agent wants done. Empty otherwise.
    task: str = ""

    def __post_init__(self) -> None:
        assert self.price_millicredits > 0
        assert self.now_ms <= self.expires_at_ms <= self.now_ms + APPROVAL_LIFETIME_MAX_S * 1000


@dataclass(frozen=True, slots=True)
class SpendingRefusal:
    """Why the controls refuse; ``approval`` set: the human is asked to approve it.

    ``message`` is for the agent; ``cause`` is the rule that refused, for the
    human's portal to say in its own words.
    """

    code: ErrorCode
    message: str
    cause: RefusalCause
    approval: SpendingRequest | None = None

    def error(self, *, contract_id: str | None = None) -> ExchangeError:
        return ExchangeError(self.code, self.message, contract_id=contract_id)


class RefusalCause(enum.StrEnum):
    """Which of the human's rules refused a purchase."""

    FROZEN_BY_OWNER = "frozen_by_owner"
    FROZEN_BY_OPERATOR = "frozen_by_operator"
    CONTRACT_LIMIT = "contract_limit"
    DAILY_LIMIT = "daily_limit"
    DAILY_LIMIT_UNCHECKABLE = "daily_limit_uncheckable"
    APPROVAL_NEEDED = "approval_needed"
    APPROVAL_REJECTED = "approval_rejected"


def approval_expires_at_ms(now_ms: int, quote_expires_at_ms: int, /) -> int:
    """An approval is asked for until the quote expires, and for a day at most."""
    return max(now_ms, min(quote_expires_at_ms, now_ms + APPROVAL_LIFETIME_MAX_S * 1000))


def start_of_day_ms(now_ms: int, /) -> int:
    """Midnight UTC of the day ``now_ms`` falls in."""
    return now_ms - now_ms % _MILLISECONDS_PER_DAY


def frozen_refusal(controls: Controls, /) -> SpendingRefusal | None:
    """The refusal of any new spending while the agent is frozen, or None."""
    if not controls.frozen:
        return None
    who = "its owner" if controls.frozen_by_owner else "an operator"
    cause = (
        RefusalCause.FROZEN_BY_OWNER
        if controls.frozen_by_owner
        else RefusalCause.FROZEN_BY_OPERATOR
    )
    return SpendingRefusal(
        ErrorCode.AGENT_FROZEN, f"the agent's spending is frozen by {who}", cause
    )


def spending_refusal(
    controls: Controls,
    request: SpendingRequest,
    /,
    *,
    spent_today_millicredits: int,
    approval_status: ApprovalStatus | None,
) -> SpendingRefusal | None:
    """Why the controls refuse this contract, or None."""
    price = request.price_millicredits
    frozen = frozen_refusal(controls)
    if frozen is not None:
        return frozen
    contract_limit = controls.contract_limit_millicredits
    if contract_limit is not None and price > contract_limit:
        return SpendingRefusal(
            ErrorCode.BUDGET_EXCEEDED,
            f"the price {price} is over the per-contract limit of {contract_limit} millicredits",
            RefusalCause.CONTRACT_LIMIT,
        )
    daily_limit = controls.daily_limit_millicredits
    if daily_limit is not None and spent_today_millicredits + price > daily_limit:
        return SpendingRefusal(
            ErrorCode.BUDGET_EXCEEDED,
            f"over the daily limit: {spent_today_millicredits} of {daily_limit} millicredits "
            f"spent today, the price is {price}",
            RefusalCause.DAILY_LIMIT,
        )
    threshold = controls.approval_threshold_millicredits
    if threshold is None or price <= threshold or approval_status is ApprovalStatus.APPROVED:
        return None
    if approval_status is ApprovalStatus.REJECTED:
        return SpendingRefusal(
            ErrorCode.APPROVAL_REJECTED,
            "the agent's owner rejected this contract",
            RefusalCause.APPROVAL_REJECTED,
        )
    return SpendingRefusal(
        ErrorCode.PENDING_APPROVAL,
        f"the price is over the approval threshold of {threshold} millicredits; the agent's "
        "owner must approve it in the portal, then retry the same acceptance",
        RefusalCause.APPROVAL_NEEDED,
        approval=request,
    )
