"""Threat model, abuse with a valid key: no agent can stall or starve the others.

An agent with a key of its own floods the exchange with junk, nests JSON
deeper than any document needs, or asks for more than its share. Each test
checks the typed answers the abuser gets (``malformed``, then
``rate_limited``, then silence, then its connection closed by the server
and its key refused for a while), that an honest deal settles alongside,
that the worker logged at most one line per request and never a traceback,
and that the ledger invariants hold. The flood test runs the worker with small
admission limits so that its bounds are exact; how far a flood at the
default limits moves honest latency is a benchmark (bench/flood.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import msgspec
import pytest

from agent_client import Agent, AgentClientError, AgentKeys, AgentOptions, subjects
from agent_client.protocol import ErrorReply, GetBalance, json_encoder
from agent_client.replies import open_reply
from agent_client.signing import SystemClock, b64encode, make_header, seal
from agent_client.transport import connect_nats
from broker.admission import AdmissionLimits
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
    evict_after_drops=50,
)
QUICK = AgentOptions(connect_timeout_s=3.0, request_timeout_s=2.0)
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
    # (How many of these answers reach the flooder races with its eviction.)
    assert codes.count("malformed") <= budget
    assert codes.count("rate_limited") <= answers
    assert set(codes) <= {"malformed", "rate_limited"}
    assert len(codes) < FLOOD_REQUESTS / 4  # the rest were dropped unanswered
    assert len(logs.records) <= FLOOD_REQUESTS
    assert not [record for record in logs.records if record.exc_info]
    # It flooded on past its refusals: the server closed its connection, and
    # its key is refused for a while.
    assert not (await exchange.raw_connection(flooder)).is_connected
    with pytest.raises(AgentClientError, match="Authorization Violation"):
        await connect_nats(exchange.nats_url, flooder, name="back again", connect_timeout_s=3)
    await exchange.check_invariants()


async def test_an_evicted_agent_is_disconnected_and_refused_while_others_trade(
    exchange, nats_server
):
    victim_of_its_own_flood = await exchange.agent()
    bystander = await exchange.funded_agent(PRICE)
    assert nats_server.callout is not None
    await nats_server.callout.evict(victim_of_its_own_flood.agent_id)
    with pytest.raises(AgentClientError):
        await victim_of_its_own_flood.balance()
    with pytest.raises(AgentClientError, match="Authorization Violation"):
        await Agent.connect(
            exchange.nats_url, exchange.keys_of(victim_of_its_own_flood), options=QUICK
        )
    assert (await bystander.balance()).available_millicredits == PRICE
    # The exchange's own key is never evicted.
    await nats_server.callout.evict(exchange.worker.exchange_id)
    assert (await bystander.balance()).available_millicredits == PRICE
    await exchange.check_invariants()


async def test_valid_requests_over_the_rate_are_refused_with_rate_limited(exchange):
    # Never evicted here: this test is about the answers before that.
    await exchange.restart(admission=dataclasses.replace(TIGHT, evict_after_drops=100_000))
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


async def test_a_task_as_deep_as_a_request_allows_is_read_back_in_replies(exchange):
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(PRICE)
    # The acceptance holds the task at level 2: 30 more levels make 32, the most a
    # request may nest. Replies carry it deeper (contract.get, the delivery).
    deep_task: object = "core"
    for _ in range(30):
        deep_task = [deep_task]
    contract = await buyer.hire(await echo_quote(buyer), deep_task)
    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == deep_task
    view = await buyer.contract(contract.contract_id)  # the task, back in a reply
    assert msgspec.json.decode(bytes(view.task)) == deep_task
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()
