"""The fee table as stored rows, and an operator's change to it (pure).

Rows name a fee kind (``escrow``, ``cash_out``, ...) or a category
(``category:<capability prefix>``); a kind without a row keeps the product
plan's default (wallet's :class:`~wallet.FeeSchedule`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from exchange.errors import ErrorCode, ExchangeError
from wallet import FEE_CATEGORIES_MAX, FeeKind, FeeSchedule

__all__ = ["CATEGORY_PREFIX", "fee_changes", "fee_schedule_from_rows"]

CATEGORY_PREFIX = "category:"


def fee_schedule_from_rows(rows: Mapping[str, int], /, *, default: FeeSchedule) -> FeeSchedule:
    """The schedule the rows set, over ``default`` (unknown names are ignored)."""
    kinds = {kind.value for kind in FeeKind}
    rates = {f"{name}_bps": rate for name, rate in rows.items() if name in kinds}
    categories = tuple(
        sorted(
            (name.removeprefix(CATEGORY_PREFIX), rate)
            for name, rate in rows.items()
            if name.startswith(CATEGORY_PREFIX)
        )
    )
    return dataclasses.replace(default, **rates, category_bps=categories)


def fee_changes(
    current: FeeSchedule,
    /,
    *,
    rates: Mapping[str, int],
    categories: Mapping[str, int | None],
) -> dict[str, int | None]:
    """The rows an operator's change writes (None removes), checked against the table."""
    kinds = {kind.value for kind in FeeKind}
    unknown = sorted(set(rates) - kinds)
    if unknown:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"unknown fee kinds {unknown}; the kinds are {sorted(kinds)}",
        )
    kept = {prefix for prefix, _ in current.category_bps}
    kept |= {prefix for prefix, rate in categories.items() if rate is not None}
    kept -= {prefix for prefix, rate in categories.items() if rate is None}
    if len(kept) > FEE_CATEGORIES_MAX:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST, f"at most {FEE_CATEGORIES_MAX} categories have a commission"
        )
    changes: dict[str, int | None] = dict(rates)
    changes.update({CATEGORY_PREFIX + prefix: rate for prefix, rate in categories.items()})
    return changes
