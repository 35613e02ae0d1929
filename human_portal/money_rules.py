"""The portal's money rules, pure: packages, fees, reversals, cash-outs, parsing.

Integers only. Credits are counted in millicredits (1 credit = 1,000), dollars
in cents; 1 credit = $0.10, so 1 cent = 100 millicredits. Every fee comes
from ``wallet.fee_split`` (rounding down, never above the stated rate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent_client.credit_text import format_millicredits
from human_portal import limits
from human_portal.errors import InsufficientFunds, InvalidInput, LimitExceeded
from wallet import (
    MILLICREDITS_PER_CREDIT,
    MILLICREDITS_PER_USD_CENT,
    USD_CENTS_PER_CREDIT,
    FeeSchedule,
    fee_split,
)

__all__ = [
    "PACKAGES",
    "CashOutQuote",
    "Package",
    "Reversal",
    "TopUpQuote",
    "cash_out_quote",
    "format_cents",
    "format_millicredits",
    "package_by_code",
    "parse_credits",
    "parse_dollars",
    "reversal_plan",
    "top_up_quote",
]

_CREDITS_PATTERN = re.compile(r"^(\d{1,12})(?:\.(\d{1,3}))?\Z")
_DOLLARS_PATTERN = re.compile(r"^\$?(\d{1,9})(?:\.(\d{1,2}))?\Z")


@dataclass(frozen=True, slots=True)
class Package:
    code: str
    price_cents: int
    credits: int

    @property
    def bonus_credits(self) -> int:
        return self.credits - self.price_cents // USD_CENTS_PER_CREDIT


# The product plan: $10 → 100 credits, $50 → 550, $100 → 1,200.
PACKAGES = (
    Package("starter", 1_000, 100),
    Package("builder", 5_000, 550),
    Package("fleet", 10_000, 1_200),
)
CUSTOM_PACKAGE_CODE = "custom"

assert all(package.bonus_credits >= 0 for package in PACKAGES)
assert CUSTOM_PACKAGE_CODE not in {package.code for package in PACKAGES}


def package_by_code(code: str, /) -> Package | None:
    return next((package for package in PACKAGES if package.code == code), None)


@dataclass(frozen=True, slots=True)
class TopUpQuote:
    """What the human pays and what the agent gets, shown before paying."""

    package_code: str
    price_cents: int
    fee_cents: int
    credits_millicredits: int

    @property
    def total_cents(self) -> int:
        return self.price_cents + self.fee_cents


def top_up_quote(
    package_code: str, /, *, custom_cents: int | None, fees: FeeSchedule
) -> TopUpQuote:
    """A package's quote, or a custom amount's at the base rate (no bonus).

    The purchase fee is added on top of the price, so the agent receives the
    whole package.
    """
    package = package_by_code(package_code)
    if package is not None:
        price_cents = package.price_cents
        credits_millicredits = package.credits * MILLICREDITS_PER_CREDIT
    elif package_code == CUSTOM_PACKAGE_CODE:
        if custom_cents is None:
            raise InvalidInput("amount", "enter an amount in dollars, like 25")
        if not limits.CUSTOM_TOPUP_CENTS_MIN <= custom_cents <= limits.CUSTOM_TOPUP_CENTS_MAX:
            raise LimitExceeded(
                f"a custom top-up is between {format_cents(limits.CUSTOM_TOPUP_CENTS_MIN)} "
                f"and {format_cents(limits.CUSTOM_TOPUP_CENTS_MAX)}",
                limit=limits.CUSTOM_TOPUP_CENTS_MAX,
                requested=custom_cents,
            )
        price_cents = custom_cents
        credits_millicredits = custom_cents * MILLICREDITS_PER_USD_CENT
    else:
        raise InvalidInput("package", "choose one of the packages or a custom amount")
    fee_cents, _ = fee_split(price_cents, rate_bps=fees.purchase_bps)
    quote = TopUpQuote(package_code, price_cents, fee_cents, credits_millicredits)
    assert quote.total_cents == price_cents + fee_cents and quote.credits_millicredits > 0
    return quote


@dataclass(frozen=True, slots=True)
class Reversal:
    """One step of taking a payment back: what to claw back now, and how.

    ``reversed_cents`` and ``reversed_fee_cents`` are the new running totals
    of the payment's reversed money; the deltas are this step's share.
    """

    reversed_cents: int
    reversed_fee_cents: int
    delta_price_cents: int
    delta_fee_cents: int
    clawback_millicredits: int
    receivable_millicredits: int


def reversal_plan(
    *,
    price_cents: int,
    fee_cents: int,
    credits_millicredits: int,
    refunded_cents: int,
    disputed_cents: int,
    reversed_cents: int,
    reversed_fee_cents: int,
    clawed_back_millicredits: int,
    receivable_millicredits: int,
    available_millicredits: int,
) -> Reversal | None:
    """The next clawback for a payment whose refunds and disputes now total what is given.

    Refunds and disputes count together, up to the amount paid. Everything
    is cumulative: the target clawback is the credits' share of the reversed
    money, and only the part not yet clawed back (or recorded as owed) is
    taken now. So a duplicate, late or out-of-order event finds nothing left
    to do. What the agent has already spent becomes a receivable.
    """
    total_cents = price_cents + fee_cents
    target_reversed_cents = min(total_cents, refunded_cents + disputed_cents)
    if target_reversed_cents <= reversed_cents:
        return None
    # The fee's share, rounded down, so the price's share never falls short.
    target_fee_cents = fee_cents * target_reversed_cents // total_cents
    target_price_cents = target_reversed_cents - target_fee_cents
    target_clawback = credits_millicredits * target_price_cents // price_cents
    settled = clawed_back_millicredits + receivable_millicredits
    owed = max(0, target_clawback - settled)
    clawback = min(owed, max(0, available_millicredits))
    reversal = Reversal(
        reversed_cents=target_reversed_cents,
        reversed_fee_cents=target_fee_cents,
        delta_price_cents=target_price_cents - (reversed_cents - reversed_fee_cents),
        delta_fee_cents=target_fee_cents - reversed_fee_cents,
        clawback_millicredits=clawback,
        receivable_millicredits=owed - clawback,
    )
    assert reversal.delta_price_cents >= 0 and reversal.delta_fee_cents >= 0
    assert settled + owed <= credits_millicredits
    return reversal


@dataclass(frozen=True, slots=True)
class CashOutQuote:
    credits: int
    gross_cents: int
    fee_cents: int
    net_cents: int

    @property
    def millicredits(self) -> int:
        return self.credits * MILLICREDITS_PER_CREDIT


def cash_out_quote(
    credits: int,
    /,
    *,
    fees: FeeSchedule,
    cashed_out_this_month: int,
    available_millicredits: int | None = None,
) -> CashOutQuote:
    """Whole credits to dollars at $0.10 each, less the cash-out fee, within the limits.

    The rules are checked in the order a person can act on them: the minimum,
    then the agent's balance (when given), then the month's maximum, so that
    asking for more than the agent has says so rather than citing the month.
    """
    if credits < limits.CASH_OUT_CREDITS_MIN:
        raise LimitExceeded(
            f"a cash-out is at least {_credits_text(limits.CASH_OUT_CREDITS_MIN)}",
            limit=limits.CASH_OUT_CREDITS_MIN,
            requested=credits,
        )
    requested_millicredits = credits * MILLICREDITS_PER_CREDIT
    if available_millicredits is not None and requested_millicredits > available_millicredits:
        raise InsufficientFunds(
            available_millicredits=available_millicredits,
            requested_millicredits=requested_millicredits,
        )
    room = limits.CASH_OUT_CREDITS_PER_MONTH_MAX - cashed_out_this_month
    if credits > room:
        raise LimitExceeded(
            "an agent cashes out at most "
            f"{_credits_text(limits.CASH_OUT_CREDITS_PER_MONTH_MAX)} a month; "
            f"{_credits_text(max(0, room))} remain this month",
            limit=limits.CASH_OUT_CREDITS_PER_MONTH_MAX,
            requested=cashed_out_this_month + credits,
        )
    gross_cents = credits * USD_CENTS_PER_CREDIT
    fee_cents, net_cents = fee_split(gross_cents, rate_bps=fees.cash_out_bps)
    return CashOutQuote(credits, gross_cents, fee_cents, net_cents)


def _credits_text(credits: int, /) -> str:
    """'100 credits ($10.00)': whole credits with what they are worth."""
    return f"{credits:,} credits ({format_cents(credits * USD_CENTS_PER_CREDIT)})"


def parse_credits(text: str, /, *, field: str) -> int:
    """'12.5' credits → 12,500 millicredits; at most three decimals, no sign, no floats."""
    match = _CREDITS_PATTERN.match(text.strip().replace(",", ""))
    if match is None:
        raise InvalidInput(field, "enter a number of credits like 12 or 12.5")
    whole, fraction = match.group(1), (match.group(2) or "")
    return int(whole) * MILLICREDITS_PER_CREDIT + int(fraction.ljust(3, "0") or "0")


def parse_dollars(text: str, /, *, field: str) -> int:
    """'12.50' or '$12.5' → 1,250 cents; at most two decimals."""
    match = _DOLLARS_PATTERN.match(text.strip().replace(",", ""))
    if match is None:
        raise InvalidInput(field, "enter dollars like 25 or 25.50")
    whole, fraction = match.group(1), (match.group(2) or "")
    return int(whole) * 100 + int(fraction.ljust(2, "0") or "0")


def format_cents(amount_cents: int, /) -> str:
    sign = "-" if amount_cents < 0 else ""
    whole, fraction = divmod(abs(amount_cents), 100)
    return f"{sign}${whole:,}.{fraction:02d}"
