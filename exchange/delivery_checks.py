"""Checks a delivery must pass before the exchange accepts it (pure).

A result is checked against the output JSON Schema the provider advertised
when the contract opened (Draft 2020-12). A sealed result is ciphertext the
exchange cannot read, so only its hash is checked.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from exchange.errors import ErrorCode, ExchangeError

__all__ = ["check_result_against_schema"]

SCHEMA_VALIDATORS_CACHED_MAX = 256
SCHEMA_ERRORS_REPORTED_MAX = 3


@lru_cache(maxsize=SCHEMA_VALIDATORS_CACHED_MAX)
def _validator_for(schema_text: str) -> Draft202012Validator:
    # Compiling a validator costs far more than validating; listings are few.
    return Draft202012Validator(json.loads(schema_text))


def check_result_against_schema(result: Any, schema_text: str, /, *, contract_id: str) -> None:
    """Refuse (``schema_mismatch``) a result that does not match the schema."""
    if schema_text in ("", "{}"):
        return
    errors = sorted(_validator_for(schema_text).iter_errors(result), key=lambda e: list(e.path))
    if errors:
        reasons = "; ".join(
            f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"
            for error in errors[:SCHEMA_ERRORS_REPORTED_MAX]
        )
        raise ExchangeError(
            ErrorCode.SCHEMA_MISMATCH,
            f"the result does not match the advertised output schema: {reasons}",
            contract_id=contract_id,
        )
