"""The shared JSON Schema checker answers in bounded work, in one format.

Pure tests of ``failing_reasons`` (the exchange's delivery checks and both
bridges call it; tests/exchange/test_schema_attacks.py proves its defences
against hostile schemas through the exchange): reasons name their path and
are cut to the asked count and length, a schema given as text or decoded
answers alike, and every way a check cannot finish is one typed exception,
``SchemaTooComplex``, whose subclass ``SchemaUnusable`` means the schema
itself is at fault.
"""

from typing import Any

import pytest

from agent_client import limits
from agent_client.schema_checks import (
    SchemaTooComplex,
    SchemaUnusable,
    failing_reasons,
    schema_refusal,
)

OBJECT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "tags": {"items": {"type": "string"}}},
    "required": ["name"],
    "additionalProperties": False,
}


def test_reasons_name_their_path_and_come_sorted_by_it():
    reasons = failing_reasons({"tags": ["a", 2], "x": 1}, OBJECT_SCHEMA, time_budget_s=2.0)
    assert reasons == [
        "(root): 'name' is a required property",
        "(root): Additional properties are not allowed ('x' unexpected)",
        "tags/1: 2 is not of type 'string'",
    ]
    assert failing_reasons({"name": "n"}, OBJECT_SCHEMA, time_budget_s=2.0) == []


def test_a_schema_as_text_or_decoded_gives_the_same_answer():
    text = '{"type": "integer", "minimum": 3}'
    decoded = {"type": "integer", "minimum": 3}
    assert failing_reasons(2, text, time_budget_s=2.0) == [
        "(root): 2 is less than the minimum of 3"
    ]
    assert failing_reasons(2, decoded, time_budget_s=2.0) == failing_reasons(
        2, text, time_budget_s=2.0
    )


def test_reasons_are_cut_to_the_asked_count_and_length():
    schema = {"items": {"type": "string", "pattern": "^b"}}
    instance = ["a" * 1_000] * 10
    reasons = failing_reasons(instance, schema, time_budget_s=2.0)
    assert len(reasons) == limits.SCHEMA_ERRORS_REPORTED_MAX
    assert all(len(reason) <= limits.SCHEMA_ERROR_REASON_CHARS_MAX for reason in reasons)
    [reason] = failing_reasons(
        instance, schema, time_budget_s=2.0, reasons_max=1, reason_chars_max=20
    )
    assert reason == "0: 'aaaaaaaaaaaaaaaa"


def test_an_exponential_schema_stops_at_its_deadline():
    schema = {"anyOf": [{"not": {"items": {"$ref": "#"}}}, {"items": {"$ref": "#"}}]}
    deep: list[Any] = []
    for _ in range(18):
        deep = [deep]
    with pytest.raises(SchemaTooComplex) as caught:
        failing_reasons(deep, schema, time_budget_s=0.05)
    assert type(caught.value) is SchemaTooComplex
    assert caught.value.reason == "took over 0.05 s"


def test_endless_recursion_is_too_complex_not_a_crash():
    schema = {"$defs": {"node": {"anyOf": [{"$ref": "#/$defs/node"}]}}, "$ref": "#/$defs/node"}
    with pytest.raises(SchemaTooComplex) as caught:
        failing_reasons({"x": 1}, schema, time_budget_s=5.0)
    assert caught.value.reason in {"recursed too deeply", "took over 5.0 s"}


@pytest.mark.parametrize(
    ("schema", "reason_starts"),
    [
        ("{not json", "it is not JSON"),
        ({"pattern": r"(a)\1"}, "RE2, the linear-time engine"),
        ({"$ref": "#/$defs/missing"}, "its $ref '/$defs/missing' leads nowhere"),
        ({"type": "no-such-type"}, "it names an unknown type 'no-such-type'"),
    ],
    ids=["not-json", "backreference", "dangling-ref", "unknown-type"],
)
def test_a_schema_that_cannot_be_used_is_refused_by_type(schema, reason_starts):
    with pytest.raises(SchemaUnusable) as caught:
        failing_reasons("aa", schema, time_budget_s=2.0)
    assert caught.value.reason.startswith(reason_starts)


def test_schema_refusal_names_nesting_past_the_limit():
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(limits.SCHEMA_DEPTH_MAX):
        schema = {"items": schema}
    assert schema_refusal(schema) == f"it nests deeper than {limits.SCHEMA_DEPTH_MAX} levels"
    assert schema_refusal(OBJECT_SCHEMA) is None
