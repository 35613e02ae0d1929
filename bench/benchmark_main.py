"""What every benchmark's ``main`` does: check the arguments, run, print, and say whether it held.

A benchmark gives its argument parser (a namespace, or the usage error as a
string), its run (a coroutine giving the summary), how to print the summary
as text, and what must hold for the run to count (its ledger checks): exit
2 on a usage error, 1 when a check failed, else 0. ``--json`` prints the
summary as one JSON object instead of text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["run_benchmark"]

Summary = dict[str, Any]


async def _run(
    main_async: Callable[[argparse.Namespace], Awaitable[Summary]], arguments: argparse.Namespace
) -> Summary:
    return await main_async(arguments)


def run_benchmark(
    parse_arguments: Callable[[], argparse.Namespace | str],
    main_async: Callable[[argparse.Namespace], Awaitable[Summary]],
    print_text: Callable[[Summary], None],
    /,
    *,
    passed: Callable[[Summary], bool] = lambda summary: True,
) -> int:
    arguments = parse_arguments()
    if isinstance(arguments, str):
        print(arguments, file=sys.stderr)
        return 2
    summary: Summary = asyncio.run(_run(main_async, arguments))
    if arguments.json:
        print(json.dumps(summary))
    else:
        print_text(summary)
    return 0 if passed(summary) else 1
