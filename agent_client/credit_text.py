"""Amounts as people read them: millicredits shown as credits.

12,500 millicredits are "12.5" credits; whole credits lose their decimals.
It lives at the bottom layer so that the exchange's command line (which may
not import the portal) and the portal show amounts by one rule.
"""

from __future__ import annotations

__all__ = ["MILLICREDITS_PER_CREDIT", "credits_in_words", "format_millicredits"]

# The wallet's unit (wallet.money), restated: the client does not depend on the wallet.
MILLICREDITS_PER_CREDIT = 1_000


def format_millicredits(amount_millicredits: int, /) -> str:
    """12,500 → '12.5'; 1,000 → '1'; -1,234,500 → '-1,234.5'. Exact: no rounding."""
    assert type(amount_millicredits) is int
    sign = "-" if amount_millicredits < 0 else ""
    whole, fraction = divmod(abs(amount_millicredits), MILLICREDITS_PER_CREDIT)
    if fraction == 0:
        return f"{sign}{whole:,}"
    return f"{sign}{whole:,}.{fraction:03d}".rstrip("0")


def credits_in_words(amount_millicredits: int, /) -> str:
    """'1 credit', '2.5 credits': an amount with its unit."""
    unit = "credit" if amount_millicredits == MILLICREDITS_PER_CREDIT else "credits"
    return f"{format_millicredits(amount_millicredits)} {unit}"
