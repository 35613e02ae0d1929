"""JSON checked against a JSON Schema someone else wrote, in bounded work.

The exchange checks a provider's result against the provider's output schema
(exchange/domain/delivery_checks.py); the MCP and A2A bridges check a task
against a listing's input schema before hiring. In each case the schema, and
often the instance, come from another party, so a check must not let them
freeze the process that runs it:

- every regular expression (``pattern``, ``patternProperties`` and the
  patterns ``additionalProperties`` consults) runs on RE2, in linear time; a
  pattern RE2 cannot compile (backreferences, lookaround) is refused, when a
  listing is advertised (:func:`schema_refusal`) and again when checked;
- ``uniqueItems`` is decided in linear time, not by comparing every pair;
- nothing else bounds jsonschema's own work (a recursive ``$ref`` under
  ``anyOf`` is exponential whatever the regex engine), so every keyword the
  validator evaluates first looks at the check's deadline, and
  :func:`failing_reasons` raises :class:`SchemaTooComplex` once it passes.

``format`` stays an annotation (no format checker), so ``format: regex``
compiles nothing here. Checks are synchronous and may take their whole time
budget: async callers run them in a worker thread.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec
import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import UnknownType, ValidationError
from jsonschema.protocols import Validator
from referencing.exceptions import Unresolvable

from agent_client.limits import (
    SCHEMA_DEPTH_MAX,
    SCHEMA_ERROR_REASON_CHARS_MAX,
    SCHEMA_ERRORS_REPORTED_MAX,
    SCHEMA_PATTERN_MEMORY_BYTES_MAX,
    SCHEMA_PATTERN_QUOTED_CHARS_MAX,
    SCHEMA_PATTERNS_CACHED_MAX,
    SCHEMA_VALIDATORS_CACHED_MAX,
)

__all__ = ["SchemaTooComplex", "SchemaUnusable", "failing_reasons", "schema_refusal"]

_Keyword = Callable[[Any, Any, Any, Any], Any]


class SchemaTooComplex(Exception):
    """A check could not finish in bounded work.

    ``reason`` completes the sentence "checking against the schema ...":
    ``took over 2 s`` or ``recursed too deeply``.
    """

    def __init__(self, reason: str, /) -> None:
        super().__init__(reason)
        self.reason = reason


class SchemaUnusable(SchemaTooComplex):
    """The schema itself cannot be used; ``reason`` says why (for example a
    pattern RE2 cannot compile, or a ``$ref`` that leads nowhere)."""


class _Pattern(Protocol):
    def search(self, text: str, /) -> object: ...


class _BudgetExhausted(Exception):
    """The deadline of one check passed (becomes :class:`SchemaTooComplex`)."""


# The deadline of the check running in this thread; set only by failing_reasons,
# so a validator used without one fails loudly (LookupError) instead of unbounded.
_deadline_s: ContextVar[float] = ContextVar("schema_check_deadline_s")


def _re2_options() -> Any:
    options = re2.Options()
    # A refused pattern is an expected operating error, reported to its author;
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


# --- the schema, before any check --------------------------------------------------


def schema_refusal(schema: object, /) -> str | None:
    """Why instances could not be checked against ``schema`` in bounded work, or None.

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
def _validator_for(schema_text: str, /) -> Validator:
    # Compiling a validator costs far more than validating; schemas are few.
    try:
        schema = msgspec.json.decode(schema_text)
    except msgspec.DecodeError as exc:
        raise SchemaUnusable(f"it is not JSON: {exc}") from None
    refusal = schema_refusal(schema)
    if refusal is not None:
        raise SchemaUnusable(refusal)
    # Not check_schema: its format checker compiles patterns with Python's re, and
    # a listing's schema was checked against the metaschema when advertised.
    return _BoundedValidator(schema)


# --- the check -------------------------------------------------------------------


def failing_reasons(
    instance: Any,
    schema: Mapping[str, Any] | str,
    /,
    *,
    time_budget_s: float,
    reasons_max: int = SCHEMA_ERRORS_REPORTED_MAX,
    reason_chars_max: int = SCHEMA_ERROR_REASON_CHARS_MAX,
) -> list[str]:
    """Up to ``reasons_max`` reasons ``instance`` fails ``schema`` (decoded, or its
    JSON text), each ``path: why`` cut to ``reason_chars_max``; empty when it fits.

    Raises :class:`SchemaUnusable` for a schema that cannot be used, and
    :class:`SchemaTooComplex` when the check takes over ``time_budget_s`` or
    recurses too deeply. Synchronous: async callers run it in a worker thread.
    """
    assert reasons_max >= 1 and reason_chars_max >= 1 and time_budget_s > 0
    schema_text = schema if isinstance(schema, str) else msgspec.json.encode(schema).decode()
    token = _deadline_s.set(time.monotonic() + time_budget_s)
    try:
        errors = sorted(
            _validator_for(schema_text).iter_errors(instance), key=lambda error: list(error.path)
        )
    except _BudgetExhausted:
        raise SchemaTooComplex(f"took over {time_budget_s} s") from None
    except RecursionError:
        raise SchemaTooComplex("recursed too deeply") from None
    except Unresolvable as exc:
        raise SchemaUnusable(f"its $ref {_quoted(exc.ref)} leads nowhere") from None
    except UnknownType as exc:
        raise SchemaUnusable(f"it names an unknown type {_quoted(str(exc.type))}") from None
    finally:
        _deadline_s.reset(token)
    return [
        f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"[:reason_chars_max]
        for error in errors[:reasons_max]
    ]
