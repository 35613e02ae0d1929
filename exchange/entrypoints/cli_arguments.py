"""Amounts and ports as the ``agentx`` commands read them from the command line.

Credits are typed as people count them (``2``, ``2.5``, ``0.001``) and become
exact millicredits, never a float; a port is 0 to 65535 (0: a free one).
One rule for every command: ``credits_argument`` and ``port_argument`` are
argparse ``type=`` functions (a bad value is a usage error), and
``credits_to_millicredits`` is the same rule for flags checked after parsing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from agent_client.credit_text import MILLICREDITS_PER_CREDIT, format_millicredits

__all__ = ["PORT_MAX", "credits_argument", "credits_to_millicredits", "port_argument"]

PORT_MAX = 65_535


def credits_to_millicredits(text: str, /, *, maximum: int, minimum: int = 0) -> int:
    """Credits as typed to exact millicredits in ``minimum..maximum``, else ValueError in words."""
    assert 0 <= minimum <= maximum
    try:
        amount = Decimal(text.strip()) * MILLICREDITS_PER_CREDIT
    except InvalidOperation:  # not a number at all, or a signalling NaN
        raise ValueError(f"{text!r} is not a number of credits") from None
    if not amount.is_finite():
        raise ValueError(f"{text!r} is not a number of credits")
    if amount != amount.to_integral_value():
        raise ValueError(f"{text!r}: credits have at most 3 decimals (0.001)")
    if not minimum <= amount <= maximum:
        raise ValueError(
            f"{text!r} is out of range ({format_millicredits(minimum)} to "
            f"{format_millicredits(maximum)} credits)"
        )
    return int(amount)


def credits_argument(maximum: int, /) -> Callable[[str], int]:
    """An argparse ``type=``: credits to millicredits, 0 to ``maximum`` millicredits."""

    def parse(text: str) -> int:
        try:
            return credits_to_millicredits(text, maximum=maximum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def port_argument(text: str, /) -> int:
    """An argparse ``type=``: a TCP port, 0 (a free one) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to {PORT_MAX})")
    return int(text)
