"""Every error code raises exactly one actionable error class, decided by one table.

Pure tests: they walk every member of ``ErrorCode`` through
``agent_client.errors.ERROR_CLASS_BY_CODE`` and ``exchange_error`` to prove
the table is complete and says what each class promises (transient codes
retry, refusals of a valid request refuse, broken requests are rejected),
that the error keeps the reply's code, message and contract id, that a code
this client does not know still raises the base class, and that
``except ExchangeError`` keeps catching all of them. The errors the client
raises from real replies are checked over a real exchange in
test_contract_handle.py and test_operator_client.py.
"""

from __future__ import annotations

import pytest

from agent_client import (
    AgentClientError,
    ErrorCode,
    ExchangeError,
    RefusedError,
    RejectedError,
    RequestTimeout,
    RetryableError,
)
from agent_client.errors import ERROR_CLASS_BY_CODE, exchange_error

ACTIONABLE_CLASSES = (RetryableError, RefusedError, RejectedError)


def test_every_error_code_maps_to_exactly_one_actionable_class():
    assert set(ERROR_CLASS_BY_CODE) == set(ErrorCode)
    for code, error_class in ERROR_CLASS_BY_CODE.items():
        matching = [cls for cls in ACTIONABLE_CLASSES if issubclass(error_class, cls)]
        assert matching == [error_class], code


@pytest.mark.parametrize("code", list(ErrorCode))
def test_an_error_reply_raises_the_class_of_its_code_with_its_fields(code):
    error = exchange_error(code.value, "what went wrong", contract_id="c_1")
    assert type(error) is ERROR_CLASS_BY_CODE[code]
    assert isinstance(error, ExchangeError)
    assert isinstance(error, AgentClientError)
    assert (error.code, error.message, error.contract_id) == (code, "what went wrong", "c_1")
    assert str(error) == f"{code.value}: what went wrong"
    assert error.should_retry is (type(error) is RetryableError)


def test_only_transient_codes_are_retryable():
    retryable = {code for code, cls in ERROR_CLASS_BY_CODE.items() if cls is RetryableError}
    assert retryable == {ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL}


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.INSUFFICIENT_FUNDS,
        ErrorCode.BUDGET_EXCEEDED,
        ErrorCode.AGENT_FROZEN,
        ErrorCode.PENDING_APPROVAL,
        ErrorCode.APPROVAL_REJECTED,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.INVALID_STATE,
        ErrorCode.QUOTE_EXPIRED,
        ErrorCode.ALREADY_RATED,
    ],
)
def test_a_valid_request_the_exchange_will_not_carry_out_is_refused(code):
    assert ERROR_CLASS_BY_CODE[code] is RefusedError


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.MALFORMED,
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.EXPIRED,
        ErrorCode.REPLAYED,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.SCHEMA_MISMATCH,
        ErrorCode.HASH_MISMATCH,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ],
)
def test_a_request_that_is_itself_wrong_is_rejected(code):
    assert ERROR_CLASS_BY_CODE[code] is RejectedError


def test_a_code_from_a_newer_exchange_raises_the_base_class():
    error = exchange_error("some_future_code", "new")
    assert type(error) is ExchangeError
    assert error.code == "some_future_code"
    assert error.should_retry is False


def test_except_exchange_error_still_catches_every_subclass():
    for code in ErrorCode:
        with pytest.raises(ExchangeError):
            raise exchange_error(code, "caught by the base class")


def test_a_request_timeout_is_retryable():
    timeout = RequestTimeout("agentx.v2.x.U.contract.get", 5.0)
    assert timeout.should_retry is True
    assert not isinstance(timeout, ExchangeError)
