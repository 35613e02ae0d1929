"""A task checked against a listing's input schema, before any money moves.

The exchange checks results against output schemas but leaves tasks to the
buyer; the MCP bridge checks each task here so that an LLM's malformed task
gets a plain list of what is wrong instead of a paid contract the provider
cannot do.

Sizes are bounded first: the task (TASK_BYTES_MAX, as for a hire) and the
schema (SCHEMA_BYTES_MAX). The check itself is agent_client/schema_checks.py
(RE2 patterns, a deadline of TASK_CHECK_TIME_BUDGET_S), run in a worker
thread by :func:`check_task`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec

from agent_client import limits
from agent_client.schema_checks import SchemaTooComplex, SchemaUnusable, failing_reasons

__all__ = [
    "TASK_CHECK_TIME_BUDGET_S",
    "TASK_PROBLEMS_REPORTED_MAX",
    "check_task",
    "task_problems",
]

TASK_CHECK_TIME_BUDGET_S = 2.0
# An LLM fixes a few problems at a time; the rest show on the next try.
TASK_PROBLEMS_REPORTED_MAX = 5


def task_problems(
    task: Any, schema: Mapping[str, Any], /, *, time_budget_s: float = TASK_CHECK_TIME_BUDGET_S
) -> list[str]:
    """What is wrong with ``task`` under ``schema``, in plain words; empty when it fits.

    Each problem starts with the path of the part it is about (``(root)`` for
    the whole task). Synchronous (it may take up to ``time_budget_s``): call
    :func:`check_task` from the event loop.
    """
    task_bytes = msgspec.json.encode(task)
    if len(task_bytes) > limits.TASK_BYTES_MAX:
        return [f"the task is {len(task_bytes):,} bytes; at most {limits.TASK_BYTES_MAX:,}"]
    if not schema:
        return []
    schema_text = msgspec.json.encode(schema).decode()
    if len(schema_text) > limits.SCHEMA_BYTES_MAX:
        return [f"the listing's input schema is over {limits.SCHEMA_BYTES_MAX:,} bytes"]
    try:
        return failing_reasons(
            task,
            schema_text,
            time_budget_s=time_budget_s,
            reasons_max=TASK_PROBLEMS_REPORTED_MAX,
        )
    except SchemaUnusable as exc:
        return [f"the listing's input schema cannot be used: {exc.reason}"]
    except SchemaTooComplex as exc:
        return [
            "the task could not be checked against the listing's input schema: "
            f"the check {exc.reason}"
        ]


async def check_task(task: Any, schema: Mapping[str, Any], /) -> list[str]:
    """:func:`task_problems`, off the event loop (in a worker thread)."""
    return await asyncio.to_thread(task_problems, task, schema)
