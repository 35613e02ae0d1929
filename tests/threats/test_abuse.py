"""Threat model, abuse with a valid key: no agent can stall or starve the others.

An agent with a key of its own floods the exchange with junk, nests JSON
deeper than any document needs, or asks for more than its share. Each test
checks the typed answers the abuser gets (``malformed``, then
``rate_limited``, then silence), that an honest deal settles alongside, that
the worker logged at most one line per request and never a traceback, and
that the ledger invariants hold. The flood test runs the worker with small
admission limits so that its bounds are exact; how far a flood at the
default limits moves honest latency is a benchmark (bench/flood.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from agent_client import AgentKeys, subjects
from agent_client.protocol import ErrorReply, GetBalance, json_encoder
from agent_client.replies import open_reply
from agent_client.signing import SystemClock, b64encode, make_header, seal
from exchange.admission import AdmissionLimits
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop

FLOOD_REQUESTS = 400
REPLY_WAIT_S = 3.0
TIGHT = AdmissionLimits(
    requests_per_s=50.0,
    request_burst=50,
    in_flight_max=8,
    protocol_errors_per_s=2.0,
    protocol_error_burst=5,
    refusal_answers_per_s=2.0,
    refusal_answer_burst=3,
    agents_tracked_max=1_000,
)
WATCHED_LOGGERS = ("exchange", "agent_client", "wallet", "broker", "escrow", "human_portal")


class LogLines(logging.Handler):
    """Counts the records the server side writes while a test floods it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def watch_logs() -> LogLines:
    handler = LogLines()
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    return handler


def unwatch_logs(handler: LogLines) -> None:
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


async def flood(exchange, keys, payloads: list[bytes]) -> list[str]:
    """Publish every payload as a request of ``keys`` at once; the verified answers' codes
    (``ok`` for a result) in arrival order, collected for REPLY_WAIT_S."""
    client = await exchange.raw_connection(keys)
    subject = subjects.exchange_request(keys.agent_id, "wallet.balance")
    inbox_prefix = f"{subjects.inbox_prefix(keys.agent_id)}.flood"
    codes: list[str] = []

    async def collect(message) -> None:
        index = int(message.subject.rsplit(".", 1)[1])
        _, reply = open_reply(
            message.data,
            signer_id=exchange.worker.exchange_id,
            audience=keys.agent_id,
            request_subject=subject,
            request_payload=payloads[index],
            clock=SystemClock(),
        )
        codes.append(reply.code if isinstance(reply, ErrorReply) else "ok")

    await client.subscribe(f"{inbox_prefix}.*", cb=collect)
    await client.flush()
    for index, payload in enumerate(payloads):
        await client.publish(subject, payload, reply=f"{inbox_prefix}.{index}")
    await client.flush()
    await asyncio.sleep(REPLY_WAIT_S)
    return codes


def balance_request(keys) -> bytes:
    subject = subjects.exchange_request(keys.agent_id, "wallet.balance")
    header = make_header(
        keys, audience="exchange", subject=subject, lifetime_s=10, clock=SystemClock()
    )
    return json_encoder.encode(seal(GetBalance(header=header), keys))


async def test_a_flood_of_junk_is_cut_off_after_a_few_answers_and_honest_deals_settle(exchange):
    await exchange.restart(admission=TIGHT)
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(PRICE)
    flooder = AgentKeys.generate()
    logs = watch_logs()
    try:
        started_s = time.monotonic()
        junk = [b'{"doc": "not base64!", "sig": ""}'] * FLOOD_REQUESTS
        flooding = asyncio.create_task(flood(exchange, flooder, junk))
        contract = await buyer.hire(await echo_quote(buyer), {"n": 1})
        await contract.accept_delivery(await contract.wait_delivery(timeout_s=15))
        codes = await flooding
        elapsed_s = time.monotonic() - started_s
    finally:
        unwatch_logs(logs)
    # Verified only while the error budget lasts; then refused, a few answered.
    budget = TIGHT.protocol_error_burst + TIGHT.protocol_errors_per_s * elapsed_s
    answers = TIGHT.refusal_answer_burst + TIGHT.refusal_answers_per_s * elapsed_s
    assert 0 < codes.count("malformed") <= budget
    assert 0 < codes.count("rate_limited") <= answers
    assert set(codes) == {"malformed", "rate_limited"}
    assert len(codes) < FLOOD_REQUESTS / 4  # the rest were dropped unanswered
    assert len(logs.records) <= FLOOD_REQUESTS
    assert not [record for record in logs.records if record.exc_info]
    # The flooder recovers once it stops: its error budget refills.
    await asyncio.sleep(1.0 / TIGHT.protocol_errors_per_s)
    answer = await exchange.raw_request(
        flooder,
        subjects.exchange_request(flooder.agent_id, "wallet.balance"),
        balance_request(flooder),
    )
    assert not isinstance(answer, ErrorReply), answer
    await exchange.check_invariants()


async def test_valid_requests_over_the_rate_are_refused_with_rate_limited(exchange):
    await exchange.restart(admission=TIGHT)
    greedy = AgentKeys.generate()
    requests = [balance_request(greedy) for _ in range(3 * TIGHT.request_burst)]
    codes = await flood(exchange, greedy, requests)
    assert codes.count("ok") <= TIGHT.request_burst + TIGHT.requests_per_s * (REPLY_WAIT_S + 1)
    assert "rate_limited" in codes
    honest = await exchange.agent()
    assert (await honest.balance()).available_millicredits == 0


async def test_json_nested_deeper_than_any_document_is_malformed_before_any_work(exchange):
    keys = AgentKeys.generate()
    subject = subjects.exchange_request(keys.agent_id, "wallet.balance")
    nested = b'{"kind": "wallet.balance", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    deep_document = json_encoder.encode({"doc": b64encode(nested), "sig": ""})
    deep_envelope = b'{"doc": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    logs = watch_logs()
    try:
        for payload in (deep_document, deep_envelope):
            reply = await exchange.raw_request(keys, subject, payload)
            assert isinstance(reply, ErrorReply) and reply.code == "malformed", reply
    finally:
        unwatch_logs(logs)
    assert not [record for record in logs.records if record.exc_info]
    assert len(logs.records) <= 2
    assert msgspec.json.decode(b"[1]") == [1]  # the decoder is fine afterwards
