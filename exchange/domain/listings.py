"""Listings (pure): what a provider may publish, and what counts as a change.

A listing is one provider's offer of one capability. Every change to its
published fields (an edit, a deactivation, a reactivation) makes a new
revision, numbered from 1, and the old revisions stay readable; advertising
the same fields again changes nothing, so a provider can re-advertise on
every start without growing its history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agent_client.protocol import json_encoder
from agent_client.schema_checks import schema_refusal
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SCHEMA_BYTES_MAX

__all__ = [
    "REVISED_FIELDS",
    "changed_fields",
    "checked_schema",
    "listing_id_for",
    "tags_from_text",
    "tags_text",
]

# The fields a revision records; reputation counters are not the provider's
# to publish and are not part of a revision.
REVISED_FIELDS = (
    "description",
    "price_millicredits",
    "input_schema",
    "output_schema",
    "version",
    "tags",
    "status",
)


def listing_id_for(provider_id: str, capability: str, /) -> str:
    return f"{provider_id}/{capability}"


def checked_schema(schema: dict[str, Any], name: str, /) -> str:
    """The schema's JSON text, if it is a valid JSON Schema (Draft 2020-12).

    Buyers validate their tasks and the exchange validates deliveries against
    these, so a schema that cannot be used is refused when it is published
    rather than when the first contract needs it: that includes a schema the
    exchange could not check in bounded work (a pattern RE2 cannot match,
    nesting deeper than SCHEMA_DEPTH_MAX; see agent_client.schema_checks).
    """
    encoded = json_encoder.encode(schema)
    if len(encoded) > SCHEMA_BYTES_MAX:
        raise ExchangeError(ErrorCode.PAYLOAD_TOO_LARGE, f"{name} is over {SCHEMA_BYTES_MAX} B")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ExchangeError(
            ErrorCode.INVALID_SCHEMA,
            f"{name} is not a valid JSON Schema (Draft 2020-12): {exc.message}",
        ) from exc
    except RecursionError as exc:
        raise ExchangeError(ErrorCode.INVALID_SCHEMA, f"{name} is nested too deeply") from exc
    refusal = schema_refusal(schema)
    if refusal is not None:
        raise ExchangeError(ErrorCode.INVALID_SCHEMA, f"{name} cannot be used: {refusal}")
    return encoded.decode()


def tags_text(tags: Iterable[str], /) -> str:
    """Tags as stored: distinct, sorted, separated by spaces (tags have none)."""
    return " ".join(sorted(set(tags)))


def tags_from_text(text: str, /) -> list[str]:
    return text.split()


def changed_fields(current: Mapping[str, Any], proposed: Mapping[str, Any], /) -> list[str]:
    """The revised fields whose proposed value differs from the current one."""
    return [name for name in REVISED_FIELDS if current[name] != proposed[name]]
