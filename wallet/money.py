"""Money units and the one fee function.

Integers only: a float never comes near money. Fees are in basis points
(1 bps = 0.01 %) and always round down, so the platform never takes more than
the stated rate.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BASIS_POINTS_PER_WHOLE",
    "MILLICREDITS_PER_CREDIT",
    "MILLICREDITS_PER_USD_CENT",
    "USD_CENTS_PER_CREDIT",
    "FeeSchedule",
    "fee_split",
]

MILLICREDITS_PER_CREDIT = 1000
# 1 credit = $0.10.
USD_CENTS_PER_CREDIT = 10
MILLICREDITS_PER_USD_CENT = MILLICREDITS_PER_CREDIT // USD_CENTS_PER_CREDIT
BASIS_POINTS_PER_WHOLE = 10_000

assert MILLICREDITS_PER_USD_CENT * USD_CENTS_PER_CREDIT == MILLICREDITS_PER_CREDIT


def fee_split(amount: int, /, *, rate_bps: int) -> tuple[int, int]:
    """Split ``amount`` into ``(fee, net)`` with ``fee = amount * rate_bps // 10_000``."""
    assert type(amount) is int and amount >= 0
    assert type(rate_bps) is int and 0 <= rate_bps <= BASIS_POINTS_PER_WHOLE
    fee = amount * rate_bps // BASIS_POINTS_PER_WHOLE
    net = amount - fee
    assert 0 <= fee <= amount
    # Rounding down: the fee never exceeds the stated rate.
    assert fee * BASIS_POINTS_PER_WHOLE <= amount * rate_bps
    assert fee + net == amount
    return fee, net


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The platform's fee rates in basis points; defaults from the product plan."""

    purchase_bps: int = 300  # 3 % on buying credits
    escrow_bps: int = 500  # 5 % on a settled contract or a transfer
    cash_out_bps: int = 1000  # 10 % on cashing out

    def __post_init__(self) -> None:
        for rate_bps in (self.purchase_bps, self.escrow_bps, self.cash_out_bps):
            assert type(rate_bps) is int and 0 <= rate_bps <= BASIS_POINTS_PER_WHOLE
