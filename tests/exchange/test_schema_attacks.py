"""A provider's own output schema and result cannot freeze the exchange.

The schema and the result both come from the provider, and jsonschema on
Python's ``re`` backtracks without bound (``^(a+)+$`` against ``"aa…ab"``
doubles its time per character). These tests prove each defence without
timing anything:

- patterns run on RE2: jsonschema's own regular-expression calls are
  replaced by a stub that fails the test if reached, and a 5,000-character
  adversarial string still gets its answer;
- ``uniqueItems`` is linear: jsonschema's quadratic ``uniq`` is replaced
  the same way, and JSON Schema's equality (1 equals 1.0, true is not 1)
  is kept;
- a schema certainly exponential in the result's depth (2^18 evaluations,
  about ten seconds undefended) is stopped by a small injected budget with
  ``schema_too_complex``;
- checks run in worker threads, never more at once than the named limit;
- patterns RE2 cannot honour, and schemas nested too deeply, are refused
  with ``invalid_schema`` when advertised;
- over real NATS, a delivery of the measured attack is refused with
  ``schema_mismatch`` while an honest deal between two other agents
  completes, and the ledger invariants hold.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import jsonschema._keywords
import jsonschema._utils
import pytest

from agent_client import ExchangeError as ClientExchangeError
from agent_client import QuoteRequest
from exchange.domain import delivery_checks
from exchange.domain.delivery_checks import check_result_against_schema
from exchange.domain.listings import checked_schema
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SCHEMA_CHECKS_RUNNING_MAX, SCHEMA_DEPTH_MAX

CATASTROPHIC = "^(a+)+$"
ADVERSARIAL = "a" * 5_000 + "b"
# Valid under the schema at any depth, and twice as costly per level: both
# branches of anyOf evaluate the whole rest of the result.
EXPONENTIAL_SCHEMA = {"anyOf": [{"not": {"items": {"$ref": "#"}}}, {"items": {"$ref": "#"}}]}


class _Forbidden:
    """Stands in for what jsonschema would use undefended; reaching it fails the test."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the check reached {self.what}.{name}")

    def __call__(self, *args: Any) -> Any:
        raise AssertionError(f"the check reached {self.what}")


@pytest.fixture
def no_backtracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonschema._keywords, "re", _Forbidden("re"))
    monkeypatch.setattr(jsonschema._utils, "re", _Forbidden("re"))


async def outcome(result: Any, schema: dict[str, Any], **options: Any) -> str:
    """The check's answer: "ok", or the refusal's code."""
    try:
        await check_result_against_schema(result, json.dumps(schema), contract_id="c_1", **options)
    except ExchangeError as exc:
        assert exc.contract_id == "c_1"
        return exc.code.value
    return "ok"


def nested_arrays(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# --- regular expressions ---------------------------------------------------------


@pytest.mark.usefixtures("no_backtracking")
async def test_a_catastrophic_pattern_gets_its_answer_from_re2():
    schema = {"type": "string", "pattern": CATASTROPHIC}
    assert await outcome(ADVERSARIAL, schema) == "schema_mismatch"
    assert await outcome("a" * 5_000, schema) == "ok"


@pytest.mark.usefixtures("no_backtracking")
async def test_property_name_patterns_get_their_answers_from_re2():
    schema = {
        "type": "object",
        "patternProperties": {CATASTROPHIC: {"type": "integer"}},
        "additionalProperties": False,
    }
    assert await outcome({ADVERSARIAL: 1}, schema) == "schema_mismatch"
    assert await outcome({"a" * 5_000: "not an integer"}, schema) == "schema_mismatch"
    assert await outcome({"a" * 5_000: 1}, schema) == "ok"
    names = {"type": "object", "propertyNames": {"pattern": CATASTROPHIC}}
    assert await outcome({ADVERSARIAL: 1}, names) == "schema_mismatch"
    assert await outcome({"aaa": 1}, names) == "ok"


async def test_a_mismatch_message_quotes_a_long_string_briefly():
    with pytest.raises(ExchangeError) as caught:
        await check_result_against_schema(
            "a" * 5_000, json.dumps({"pattern": "^b"}), contract_id="c_1"
        )
    assert "'^b'" in caught.value.message
    assert len(caught.value.message) < 400


# --- uniqueItems -----------------------------------------------------------------


async def test_unique_items_over_many_objects_is_decided_without_comparing_pairs(monkeypatch):
    monkeypatch.setattr(jsonschema._keywords, "uniq", _Forbidden("uniq"))
    schema = {"type": "array", "uniqueItems": True}
    distinct = [{"n": n, "tags": [n, str(n)]} for n in range(20_000)]
    assert await outcome(distinct, schema) == "ok"
    assert await outcome([*distinct, {"tags": [7, "7"], "n": 7}], schema) == "schema_mismatch"


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([1, 1.0], "schema_mismatch"),
        ([1, True], "ok"),
        ([0, False], "ok"),
        ([None, False], "ok"),
        (["1", 1], "ok"),
        ([{"a": 1, "b": [2]}, {"b": [2.0], "a": 1.0}], "schema_mismatch"),
        ([{"a": 1}, {"a": True}], "ok"),
        ([[1, 2], [2, 1]], "ok"),
        ([[True], [1]], "ok"),
    ],
)
async def test_unique_items_follows_json_schema_equality(items, expected):
    assert await outcome(items, {"uniqueItems": True}) == expected


# --- the time budget, off the event loop -----------------------------------------


async def test_an_exponential_recursive_schema_runs_out_of_its_budget():
    refused = await outcome(nested_arrays(18), EXPONENTIAL_SCHEMA, time_budget_s=0.05)
    assert refused == ErrorCode.SCHEMA_TOO_COMPLEX.value


async def test_the_same_schema_on_a_shallow_result_is_checked_within_the_default_budget():
    assert await outcome(nested_arrays(3), EXPONENTIAL_SCHEMA) == "ok"
    assert await outcome([[], "not an array"], {"items": {"type": "array"}}) == "schema_mismatch"


async def test_checks_run_off_the_event_loop_a_bounded_number_at_once(monkeypatch):
    running = 0
    running_max = 0
    threads: set[int] = set()
    lock = threading.Lock()
    check = delivery_checks._failing_reasons

    def observed(*args: Any) -> list[str]:
        nonlocal running, running_max
        with lock:
            running += 1
            running_max = max(running_max, running)
            threads.add(threading.get_ident())
        time.sleep(0.05)  # gives the other checks time to start, if they may
        with lock:
            running -= 1
        return check(*args)

    monkeypatch.setattr(delivery_checks, "_failing_reasons", observed)
    schema = {"type": "string"}
    await asyncio.gather(*(outcome(f"s{n}", schema) for n in range(4 * SCHEMA_CHECKS_RUNNING_MAX)))
    assert threading.get_ident() not in threads
    assert 1 <= running_max <= SCHEMA_CHECKS_RUNNING_MAX


# --- refused when advertised -----------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "pattern": r"(a)\1"}, r"(a)\\1"),
        ({"type": "string", "pattern": "(?=a)a"}, "(?=a)a"),
        ({"patternProperties": {"(?<=x)y": {}}}, "(?<=x)y"),
        ({"properties": {"p": {"propertyNames": {"pattern": "(?!a)"}}}}, "(?!a)"),
    ],
    ids=["backreference", "lookahead", "lookbehind-in-pattern-properties", "nested"],
)
def test_a_pattern_re2_cannot_honour_is_refused_when_advertised(schema, named):
    with pytest.raises(ExchangeError) as caught:
        checked_schema(schema, "output_schema")
    assert caught.value.code == ErrorCode.INVALID_SCHEMA
    assert named in caught.value.message


def test_a_schema_nested_too_deeply_is_refused_when_advertised():
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(SCHEMA_DEPTH_MAX):
        schema = {"items": schema}
    with pytest.raises(ExchangeError) as caught:
        checked_schema(schema, "output_schema")
    assert caught.value.code == ErrorCode.INVALID_SCHEMA


def test_unevaluated_properties_beside_pattern_properties_is_refused_when_advertised():
    # jsonschema matches those patterns with Python's re, out of RE2's reach.
    schema = {"patternProperties": {"^a": {}}, "unevaluatedProperties": False}
    with pytest.raises(ExchangeError) as caught:
        checked_schema(schema, "output_schema")
    assert caught.value.code == ErrorCode.INVALID_SCHEMA


def test_an_ordinary_schema_with_patterns_is_kept():
    schema = {
        "type": "object",
        "properties": {"email": {"type": "string", "pattern": r"^[^@\s]+@[\w.-]+$"}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": False,
    }
    assert json.loads(checked_schema(schema, "output_schema")) == schema


async def test_a_stored_schema_re2_cannot_honour_is_not_checked_by_backtracking():
    # A contract opened before advertising refused such patterns keeps its schema.
    schema = {"type": "string", "pattern": r"^(a+)+\1$"}
    assert await outcome(ADVERSARIAL, schema) == ErrorCode.SCHEMA_TOO_COMPLEX.value


# --- over real NATS --------------------------------------------------------------

PRICE = 5_000
GRANT = 50_000


async def test_the_measured_attack_is_refused_promptly_while_an_honest_deal_completes(exchange):
    gate = asyncio.Event()

    async def stalled(task):
        await gate.wait()
        return "a"

    attacker = await exchange.agent()
    await attacker.advertise(
        "text.attack",
        description="a",
        price_millicredits=PRICE,
        output_schema={"type": "string", "pattern": CATASTROPHIC},
    )
    await attacker.serve("text.attack", stalled, pricing=PRICE)
    victim = await exchange.funded_agent(GRANT)
    quotes = await victim.request_quotes(
        QuoteRequest("text.attack", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    attacked = await victim.hire(quotes[0], "x")

    async def attack() -> str:
        try:
            await attacker.deliver(attacked.contract_id, "a" * 39 + "b")
        except ClientExchangeError as exc:
            return exc.code
        return "delivered"

    attack_code, honest_view = await asyncio.gather(attack(), honest_deal(exchange))
    assert attack_code == "schema_mismatch"
    assert (await victim.contract(attacked.contract_id)).state == "open"
    assert honest_view.state == "released"
    gate.set()
    await exchange.check_invariants()


async def honest_deal(exchange):
    async def upper(task):
        return task.upper()

    provider = await exchange.agent()
    await provider.advertise(
        "text.upper",
        description="u",
        price_millicredits=PRICE,
        output_schema={"type": "string", "pattern": "^[A-Z]+$"},
    )
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], "hi")
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == "HI"
    return await contract.accept_delivery(delivery)
