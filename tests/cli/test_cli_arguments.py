"""The one rule every ``agentx`` command reads credits and ports with (cli_arguments.py).

Pure: each typed text becomes exact millicredits or a port, or a usage
error in words; nothing connects anywhere.
"""

from __future__ import annotations

import argparse

import pytest

from exchange.entrypoints.cli_arguments import (
    credits_argument,
    credits_to_millicredits,
    port_argument,
)


@pytest.mark.parametrize(
    ("text", "millicredits"), [("2", 2_000), ("2.5", 2_500), (" 0.001 ", 1), ("0", 0)]
)
def test_credits_become_exact_millicredits(text: str, millicredits: int):
    assert credits_to_millicredits(text, maximum=10_000) == millicredits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("two", "'two' is not a number of credits"),
        ("nan", "'nan' is not a number of credits"),
        ("inf", "'inf' is not a number of credits"),
        ("0.0005", "'0.0005': credits have at most 3 decimals (0.001)"),
        ("-1", "'-1' is out of range (0 to 10 credits)"),
        ("10.001", "'10.001' is out of range (0 to 10 credits)"),
    ],
)
def test_other_texts_say_what_is_wrong(text: str, message: str):
    with pytest.raises(ValueError) as refused:
        credits_to_millicredits(text, maximum=10_000)
    assert str(refused.value) == message
    with pytest.raises(argparse.ArgumentTypeError) as usage:
        credits_argument(10_000)(text)
    assert str(usage.value) == message


def test_a_minimum_above_zero_refuses_zero():
    with pytest.raises(ValueError, match=r"out of range \(0.001 to 10 credits\)"):
        credits_to_millicredits("0", minimum=1, maximum=10_000)


@pytest.mark.parametrize("text", ["-1", "65536", "http", ""])
def test_a_port_is_0_to_65535(text: str):
    assert [port_argument(port) for port in ("0", "8080", "65535")] == [0, 8080, 65_535]
    with pytest.raises(argparse.ArgumentTypeError, match="is not a port"):
        port_argument(text)
