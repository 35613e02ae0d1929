"""Checks a delivery must pass before the exchange accepts it.

A result is checked against the output JSON Schema the provider advertised
when the contract opened (Draft 2020-12). A sealed result is ciphertext the
exchange cannot read, so only its hash is checked.

Both the schema and the result come from the provider, so a check must not
let them freeze the exchange. agent_client/schema_checks.py bounds one check
(RE2 for every pattern, a linear ``uniqueItems``, a deadline every keyword
looks at; a pattern RE2 cannot compile is refused when the schema is
advertised, by ``schema_refusal``). Here, a check runs in a worker
thread, at most SCHEMA_CHECKS_RUNNING_MAX at once, and stops with
``schema_too_complex`` once SCHEMA_CHECK_TIME_BUDGET_S has passed.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from agent_client.schema_checks import SchemaTooComplex, SchemaUnusable, failing_reasons
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SCHEMA_CHECK_TIME_BUDGET_S, SCHEMA_CHECKS_RUNNING_MAX

__all__ = ["check_result_against_schema"]

_SCHEMAS_ACCEPTING_ANYTHING = ("", "{}")


async def check_result_against_schema(
    result: Any,
    schema_text: str,
    /,
    *,
    contract_id: str,
    time_budget_s: float = SCHEMA_CHECK_TIME_BUDGET_S,
) -> None:
    """Refuse a result that does not match the schema (``schema_mismatch``), or
    whose check does not finish within ``time_budget_s`` (``schema_too_complex``).

    The check runs off the event loop, in a worker thread.
    """
    if schema_text in _SCHEMAS_ACCEPTING_ANYTHING:
        return
    try:
        async with _checks_running():
            reasons = await asyncio.to_thread(_failing_reasons, result, schema_text, time_budget_s)
    except ExchangeError as exc:
        raise ExchangeError(exc.code, exc.message, contract_id=contract_id) from exc
    if reasons:
        raise ExchangeError(
            ErrorCode.SCHEMA_MISMATCH,
            f"the result does not match the advertised output schema: {'; '.join(reasons)}",
            contract_id=contract_id,
        )


_running_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _checks_running() -> asyncio.Semaphore:
    # One per event loop: an asyncio.Semaphore belongs to the loop it first waits on.
    loop = asyncio.get_running_loop()
    semaphore = _running_by_loop.get(loop)
    if semaphore is None:
        semaphore = _running_by_loop[loop] = asyncio.Semaphore(SCHEMA_CHECKS_RUNNING_MAX)
    return semaphore


def _failing_reasons(result: Any, schema_text: str, time_budget_s: float) -> list[str]:
    """The reasons the result fails, or ``schema_too_complex``."""
    try:
        return failing_reasons(result, schema_text, time_budget_s=time_budget_s)
    except SchemaUnusable as exc:
        # Contracts opened before advertising refused these keep their schema.
        message = f"the output schema cannot be checked: {exc.reason}"
    except SchemaTooComplex as exc:
        message = f"checking the result against the output schema {exc.reason}"
    raise ExchangeError(ErrorCode.SCHEMA_TOO_COMPLEX, message)
