"""Money units and the one fee function.

Integers only: a float never comes near money. Fees are in basis points
(1 bps = 0.01 %) and always round down, so the platform never takes more than
the stated rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BASIS_POINTS_PER_WHOLE",
    "FEE_CATEGORIES_MAX",
    "MILLICREDITS_PER_CREDIT",
    "MILLICREDITS_PER_USD_CENT",
    "SALE_FEE_KINDS",
    "USD_CENTS_PER_CREDIT",
    "FeeKind",
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


class FeeKind(StrEnum):
    """What a fee is charged on."""

    PURCHASE = "purchase"  # buying credits (on the dollars paid)
    ESCROW = "escrow"  # a settled contract (on the provider's share)
    TRANSFER = "transfer"  # a direct transfer between agents
    METERED = "metered"  # each capture of a metered session
    SUBSCRIPTION = "subscription"  # each period of a subscription
    GOODS = "goods"  # a digital good's sale
    CASH_OUT = "cash_out"  # cashing credits out (on the dollars paid out)


# The fees on what providers sell: a category's commission replaces them.
SALE_FEE_KINDS: frozenset[FeeKind] = frozenset(
    {FeeKind.ESCROW, FeeKind.METERED, FeeKind.SUBSCRIPTION, FeeKind.GOODS}
)
FEE_CATEGORIES_MAX = 100


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The platform's one fee table, in basis points; defaults from the product plan.

    ``category_bps`` sets a category's commission on sales: a capability
    prefix (``hosted_app`` covers ``hosted_app`` and ``hosted_app.*``) and the
    rate that replaces the sale fees for it; the longest matching prefix wins.
    """

    purchase_bps: int = 300  # 3 % on buying credits
    escrow_bps: int = 500  # 5 % on a settled contract
    transfer_bps: int = 500  # 5 % on a direct transfer
    metered_bps: int = 500
    subscription_bps: int = 500
    goods_bps: int = 500
    cash_out_bps: int = 1000  # 10 % on cashing out
    category_bps: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        assert len(self.category_bps) <= FEE_CATEGORIES_MAX
        for rate_bps in (*self.rates().values(), *(bps for _, bps in self.category_bps)):
            assert type(rate_bps) is int and 0 <= rate_bps <= BASIS_POINTS_PER_WHOLE
        prefixes = [prefix for prefix, _ in self.category_bps]
        assert len(set(prefixes)) == len(prefixes) and all(prefixes)

    def rates(self) -> dict[FeeKind, int]:
        """Each kind's rate, without categories."""
        return {kind: getattr(self, f"{kind.value}_bps") for kind in FeeKind}

    def rate_bps(self, kind: FeeKind, /, *, capability: str | None = None) -> int:
        """The rate of ``kind``; for a sale, its category's commission if one matches."""
        if capability is not None and kind in SALE_FEE_KINDS:
            matching = [
                (len(prefix), bps)
                for prefix, bps in self.category_bps
                if capability == prefix or capability.startswith(prefix + ".")
            ]
            if matching:
                return max(matching)[1]
        return self.rates()[kind]
