"""Checks a delivery must pass before the exchange accepts it.

A result is checked against the output JSON Schema the provider advertised
when the contract opened (Draft 2020-12). A sealed result is ciphertext the
exchange cannot read, so only its hash is checked.

Both the schema and the result come from the provider, so a check must not
let them freeze the exchange:

- every regular expression (``pattern``, ``patternProperties`` and the
  patterns ``additionalProperties`` consults) runs on RE2, in linear time; a
  pattern RE2 cannot compile (backreferences, lookaround) is refused when the
  schema is advertised (:func:`schema_refusal`);
- ``uniqueItems`` is decided in linear time, not by comparing every pair;
- nothing else bounds jsonschema's own work (a recursive ``$ref`` under
  ``anyOf`` is exponential whatever the regex engine), so one check runs in
  a worker thread, at most SCHEMA_CHECKS_RUNNING_MAX at once, and stops with
  ``schema_too_complex`` once SCHEMA_CHECK_TIME_BUDGET_S has passed: every
  keyword the validator evaluates first looks at the deadline.

``format`` stays an annotation (no format checker), so ``format: regex``
compiles nothing here.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec
import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import (
    SCHEMA_CHECK_TIME_BUDGET_S,
    SCHEMA_CHECKS_RUNNING_MAX,
    SCHEMA_DEPTH_MAX,
    SCHEMA_ERROR_REASON_CHARS_MAX,
    SCHEMA_ERRORS_REPORTED_MAX,
    SCHEMA_PATTERN_MEMORY_BYTES_MAX,
    SCHEMA_PATTERN_QUOTED_CHARS_MAX,
    SCHEMA_PATTERNS_CACHED_MAX,
    SCHEMA_VALIDATORS_CACHED_MAX,
)

__all__ = ["check_result_against_schema", "schema_refusal"]

_SCHEMAS_ACCEPTING_ANYTHING = ("", "{}")

_Keyword = Callable[[Any, Any, Any, Any], Any]


class _Pattern(Protocol):
    def search(self, text: str, /) -> object: ...


class _BudgetExhausted(Exception):
    """The deadline of one check passed (becomes ``schema_too_complex``)."""


# The deadline of the check running in this thread; set only by _failing_reasons,
# so a validator used without one fails loudly (LookupError) instead of unbounded.
_deadline_s: ContextVar[float] = ContextVar("schema_check_deadline_s")


def _re2_options() -> Any:
    options = re2.Options()
    # A refused pattern is an expected operating error, reported to the provider;
    # RE2 would also print it to stderr.
    options.log_errors = False
    options.max_mem = SCHEMA_PATTERN_MEMORY_BYTES_MAX
    return options


_RE2_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=SCHEMA_PATTERNS_CACHED_MAX)
def _compiled(pattern: str, /) -> _Pattern:
    """The pattern compiled by RE2, once (raises ``re2.error`` if it cannot be)."""
    compiled: _Pattern = re2.compile(pattern, _RE2_OPTIONS)
    return compiled


# --- the schema, when advertised ---------------------------------------------------


def schema_refusal(schema: object, /) -> str | None:
    """Why results could not be checked against ``schema`` in bounded work, or None.

    Every ``pattern`` string and ``patternProperties`` key anywhere in the
    document is tried, not only those in schema positions: a ``$ref`` may
    point anywhere, so a pattern under an unknown keyword may still be used.
    """
    patterns: list[str] = []
    keywords: set[str] = set()
    stack: list[tuple[object, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > SCHEMA_DEPTH_MAX:
            return f"it nests deeper than {SCHEMA_DEPTH_MAX} levels"
        children: list[object] = []
        if isinstance(node, dict):
            patterns.extend(_patterns_of(node))
            keywords.update(node.keys() & {"patternProperties", "unevaluatedProperties"})
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    if keywords == {"patternProperties", "unevaluatedProperties"}:
        # jsonschema matches patternProperties for unevaluatedProperties with
        # Python's backtracking engine, out of this module's reach.
        return "unevaluatedProperties with patternProperties is not supported"
    return next(filter(None, map(_pattern_refusal, patterns)), None)


def _patterns_of(node: dict[str, Any]) -> list[str]:
    found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    pattern_properties = node.get("patternProperties")
    if isinstance(pattern_properties, dict):
        found.extend(pattern_properties)
    return found


def _pattern_refusal(pattern: str) -> str | None:
    try:
        _compiled(pattern)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args else "refused"
        return (
            "RE2, the linear-time engine results are matched with (no backreferences or "
            f"lookaround), cannot use the pattern {_quoted(pattern)}: {_quoted(detail)}"
        )
    return None


def _quoted(text: str) -> str:
    more = "…" if len(text) > SCHEMA_PATTERN_QUOTED_CHARS_MAX else ""
    return f"{text[:SCHEMA_PATTERN_QUOTED_CHARS_MAX]!r}{more}"


# --- the validator: RE2, linear uniqueItems, a deadline per keyword ----------------


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{_quoted(instance)} does not match {_quoted(pattern)}")


def _pattern_properties(
    validator: Any, pattern_properties: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        compiled = _compiled(pattern)
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = [_compiled(pattern) for pattern in schema.get("patternProperties", {})]
    extras = [
        key
        for key in instance
        if key not in properties and not any(pattern.search(key) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        unexpected = ", ".join(map(repr, sorted(extras)))
        yield ValidationError(f"Additional properties are not allowed ({unexpected} unexpected)")


def _unique_items(
    validator: Validator, unique: bool, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not (unique and validator.is_type(instance, "array")):
        return
    seen: set[Hashable] = set()
    for index, item in enumerate(instance):
        identity = _json_identity(item)
        if identity in seen:
            yield ValidationError(f"has non-unique elements: item {index} repeats an earlier one")
            return
        seen.add(identity)


def _json_identity(value: Any) -> Hashable:
    """A key equal for JSON values JSON Schema calls equal: 1 and 1.0 are, and
    objects with the same members in any order; true and 1 are not."""
    if value is None or isinstance(value, bool):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(map(_json_identity, value)))
    assert isinstance(value, dict), f"not a decoded JSON value: {type(value).__name__}"
    return ("object", frozenset((key, _json_identity(item)) for key, item in value.items()))


def _within_budget(keyword: _Keyword) -> _Keyword:
    @functools.wraps(keyword)
    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if time.monotonic() >= _deadline_s.get():
            raise _BudgetExhausted
        return keyword(validator, value, instance, schema)

    return checked


def _bounded_keywords() -> dict[str, _Keyword]:
    keywords: dict[str, _Keyword] = dict(Draft202012Validator.VALIDATORS)
    keywords.update(
        pattern=_pattern,
        patternProperties=_pattern_properties,
        additionalProperties=_additional_properties,
        uniqueItems=_unique_items,
    )
    return {name: _within_budget(keyword) for name, keyword in keywords.items()}


# No version: the class is not registered, so jsonschema never picks it for others.
# (The stubs leave ``extend`` untyped; it returns a Draft 2020-12 validator class.)
_BoundedValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, validators=_bounded_keywords()
)


@functools.lru_cache(maxsize=SCHEMA_VALIDATORS_CACHED_MAX)
def _validator_for(schema_text: str) -> Validator:
    # Compiling a validator costs far more than validating; listings are few.
    schema = msgspec.json.decode(schema_text)
    # Contracts opened before advertising refused these keep their schema.
    refusal = schema_refusal(schema)
    if refusal is not None:
        raise ExchangeError(
            ErrorCode.SCHEMA_TOO_COMPLEX, f"the output schema cannot be checked: {refusal}"
        )
    return _BoundedValidator(schema)


# --- the check -------------------------------------------------------------------


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
    """Up to SCHEMA_ERRORS_REPORTED_MAX reasons the result fails, each cut short."""
    token = _deadline_s.set(time.monotonic() + time_budget_s)
    try:
        errors = sorted(
            _validator_for(schema_text).iter_errors(result), key=lambda error: list(error.path)
        )
    except _BudgetExhausted:
        raise ExchangeError(
            ErrorCode.SCHEMA_TOO_COMPLEX,
            f"checking the result against the output schema took over {time_budget_s} s",
        ) from None
    except RecursionError:
        raise ExchangeError(
            ErrorCode.SCHEMA_TOO_COMPLEX,
            "checking the result against the output schema recursed too deeply",
        ) from None
    finally:
        _deadline_s.reset(token)
    return [
        f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"[
            :SCHEMA_ERROR_REASON_CHARS_MAX
        ]
        for error in errors[:SCHEMA_ERRORS_REPORTED_MAX]
    ]
