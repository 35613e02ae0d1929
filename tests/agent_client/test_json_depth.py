"""Decoding untrusted JSON is depth-bounded and answers ``malformed`` first.

Pure tests (no NATS). Deeply nested envelopes and documents are refused as
``malformed`` by ``open_envelope`` before msgspec recurses; with the depth
check switched off, the decoders' RecursionError still maps to ``malformed``,
so each defence is proven on its own. The check is exact for valid JSON: a
document exactly ``JSON_DEPTH_MAX`` deep opens and verifies, one level more
is refused, and brackets inside strings are not counted. A property test
compares the check with the depth of random JSON values around the limit.
"""

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client import AgentKeys, SignatureRejected, limits, signing
from agent_client.protocol import Envelope, OpenContract, json_encoder
from agent_client.signing import (
    ReplayGuard,
    b64encode,
    check_json_depth,
    make_header,
    open_envelope,
    seal,
    verify_request,
)

SUBJECT = "agentx.v2.contract.open"
NOW_MS = 1_800_000_000_000
DEEP_LEVELS = 100_000


class FixedClock:
    def now_ms(self) -> int:
        return NOW_MS


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value ``depth`` levels deep, lists and objects taking turns."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 == 0 else {"k": value}
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def open_contract_bytes(keys: AgentKeys, task_json: bytes) -> bytes:
    """A sealed contract.open whose task is ``task_json``: the document is one level deeper."""
    header = make_header(
        keys, audience="exchange", subject=SUBJECT, lifetime_s=10.0, clock=FixedClock()
    )
    document = OpenContract(
        header=header, quote=Envelope(doc="", sig=""), task=msgspec.Raw(task_json)
    )
    return json_encoder.encode(seal(document, keys))


def envelope_around(document_bytes: bytes) -> bytes:
    return json_encoder.encode(Envelope(doc=b64encode(document_bytes), sig=""))


def rejected_code(data: bytes) -> str:
    with pytest.raises(SignatureRejected) as caught:
        open_envelope(data)
    return caught.value.code


DEEP_ARRAY = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
DEEP_DOCUMENT = b'{"kind": "contract.open", "task": ' + DEEP_ARRAY + b"}"
DEEP_ENVELOPE = b'{"doc": "", "sig": "", "padding": ' + DEEP_ARRAY + b"}"


def test_a_document_nested_100000_deep_inside_an_envelope_is_malformed():
    data = envelope_around(DEEP_DOCUMENT)
    assert len(data) <= limits.MESSAGE_BYTES_MAX
    assert rejected_code(data) == "malformed"


def test_an_envelope_nested_100000_deep_is_malformed():
    assert rejected_code(DEEP_ENVELOPE) == "malformed"


@pytest.mark.parametrize("data", [envelope_around(DEEP_DOCUMENT), DEEP_ENVELOPE])
def test_without_the_depth_check_a_recursion_error_still_answers_malformed(data, monkeypatch):
    monkeypatch.setattr(signing, "check_json_depth", lambda data, depth_max=0: None)
    assert rejected_code(data) == "malformed"


def test_a_document_exactly_at_the_depth_limit_opens_and_verifies():
    keys = AgentKeys.generate()
    task = json_encoder.encode(nested(limits.JSON_DEPTH_MAX - 1))
    opened = open_envelope(open_contract_bytes(keys, task))
    assert depth_of(msgspec.json.decode(opened.document_bytes)) == limits.JSON_DEPTH_MAX
    verified = verify_request(
        opened,
        subject=SUBJECT,
        subject_agent_id=None,
        clock=FixedClock(),
        replay_guard=ReplayGuard(),
    )
    assert verified.verified


def test_a_document_one_level_deeper_than_the_limit_is_malformed():
    task = json_encoder.encode(nested(limits.JSON_DEPTH_MAX))
    assert rejected_code(open_contract_bytes(AgentKeys.generate(), task)) == "malformed"


@pytest.mark.parametrize(
    "text",
    ['[[[[ \\" {{{{ \\\\" [[[[' * 1_000, "ends in a backslash \\", "three \\\\\\", '"', ""],
    ids=["brackets-quotes-backslashes", "ending-backslash", "odd-backslashes", "quote", "empty"],
)
def test_brackets_inside_json_strings_are_not_counted(text):
    # Quotes and backslashes inside a string must not end it early or late:
    # if they did, the brackets in the string after it would count.
    leaf = [text, "[[[[{{{{" * 1_000, text]
    task = json_encoder.encode(nested(limits.JSON_DEPTH_MAX - 2, leaf=leaf))
    opened = open_envelope(open_contract_bytes(AgentKeys.generate(), task))
    assert isinstance(opened.document, OpenContract)


@pytest.mark.parametrize(
    "data",
    [b"]", b"[", b"[]]", b'["]', b"[" * (limits.JSON_DEPTH_MAX + 1) + b"1"],
    ids=["close-only", "open-only", "one-close-too-many", "unterminated-string", "unclosed"],
)
def test_unbalanced_brackets_are_malformed(data):
    with pytest.raises(SignatureRejected) as caught:
        check_json_depth(data)
    assert caught.value.code == "malformed"


json_text = st.text(alphabet=st.sampled_from('[]{}"\\/ aé\n\t\u2028'), max_size=12)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3)
    ),
    max_leaves=12,
)


@given(
    value=json_values,
    wrapping=st.integers(min_value=limits.JSON_DEPTH_MAX - 6, max_value=limits.JSON_DEPTH_MAX + 2),
    indent=st.sampled_from([None, 0, 2]),
    ensure_ascii=st.booleans(),
)
def test_the_check_is_exact_for_valid_json(value, wrapping, indent, ensure_ascii):
    wrapped = nested(wrapping, leaf=value)
    data = json.dumps(wrapped, indent=indent, ensure_ascii=ensure_ascii).encode()
    if depth_of(wrapped) <= limits.JSON_DEPTH_MAX:
        check_json_depth(data)
    else:
        with pytest.raises(SignatureRejected):
            check_json_depth(data)
