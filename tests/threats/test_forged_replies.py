"""Threat model, the exchange's voice: a reply that does not verify is an error, never a result.

Connection permissions already keep strangers off the exchange's subjects
and out of agents' inboxes (test_permissions.py). These tests assume an
attacker got a message to the client anyway (a rogue NATS server, a relay
that lies) and check that the client believes nothing it cannot verify:
a reply signed by another key, a genuine reply replayed for another
request, a tampered or expired one, one addressed to another agent. Over
NATS, an agent that pins the exchange id refuses an impostor exchange on a
rogue server at connect time.
"""

from __future__ import annotations

import msgspec
import pytest

from agent_client import Agent, AgentKeys, AgentOptions, SignatureRejected, subjects
from agent_client.protocol import (
    BalanceReply,
    Envelope,
    ErrorReply,
    InfoReply,
    SignedReply,
    json_encoder,
)
from agent_client.replies import ANY_AUDIENCE, open_reply, sign_reply
from agent_client.signing import SystemClock, b64decode, b64encode
from broker import EmbeddedNatsServer, NatsServerConfig

CLOCK = SystemClock()


class ShiftedClock:
    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def now_ms(self) -> int:
        return CLOCK.now_ms() + self.shift_ms


def balance(agent_id: str, amount: int) -> BalanceReply:
    return BalanceReply(
        agent_id=agent_id,
        available_millicredits=amount,
        held_millicredits=0,
        credits_posted_millicredits=amount,
        debits_posted_millicredits=0,
    )


@pytest.fixture
def parties() -> tuple[AgentKeys, AgentKeys, AgentKeys]:
    return AgentKeys.generate(), AgentKeys.generate(), AgentKeys.generate()


def reply_to(keys, agent, request, *, body=None, clock=CLOCK, audience=None):
    subject = subjects.exchange_request(agent.agent_id, "wallet.balance")
    return subject, sign_reply(
        body or balance(agent.agent_id, 1_000_000),
        keys=keys,
        audience=audience or agent.agent_id,
        request_subject=subject,
        request_payload=request,
        clock=clock,
    )


def rejection(data, *, exchange, agent, subject, request, clock=CLOCK) -> str:
    with pytest.raises(SignatureRejected) as caught:
        open_reply(
            data,
            signer_id=exchange.agent_id,
            audience=agent.agent_id,
            request_subject=subject,
            request_payload=request,
            clock=clock,
        )
    return caught.value.code


def test_a_genuine_reply_verifies(parties):
    exchange, agent, _ = parties
    subject, data = reply_to(exchange, agent, b"request")
    signer, body = open_reply(
        data,
        signer_id=exchange.agent_id,
        audience=agent.agent_id,
        request_subject=subject,
        request_payload=b"request",
        clock=CLOCK,
    )
    assert signer == exchange.agent_id and body == balance(agent.agent_id, 1_000_000)


def test_a_reply_signed_by_another_key_is_refused_whatever_it_says(parties):
    exchange, agent, impostor = parties
    forged_error = ErrorReply(code="insufficient_funds", message="you are broke")
    for body in (balance(agent.agent_id, 10**9), forged_error):
        subject, data = reply_to(impostor, agent, b"request", body=body)
        code = rejection(data, exchange=exchange, agent=agent, subject=subject, request=b"request")
        assert code == "signer_mismatch"


def test_a_genuine_reply_replayed_for_another_request_is_refused(parties):
    exchange, agent, _ = parties
    subject, data = reply_to(exchange, agent, b"the first request")
    code = rejection(data, exchange=exchange, agent=agent, subject=subject, request=b"a new one")
    assert code == "reply_mismatch"


def test_a_reply_for_another_agent_or_subject_is_refused(parties):
    exchange, agent, other = parties
    subject, data = reply_to(exchange, agent, b"r", audience=other.agent_id)
    assert rejection(data, exchange=exchange, agent=agent, subject=subject, request=b"r") == (
        "wrong_audience"
    )
    _, data = reply_to(exchange, agent, b"r")
    elsewhere = subjects.exchange_request(agent.agent_id, "wallet.transactions")
    assert rejection(data, exchange=exchange, agent=agent, subject=elsewhere, request=b"r") == (
        "subject_mismatch"
    )


def test_a_tampered_reply_is_refused(parties):
    exchange, agent, _ = parties
    subject, data = reply_to(exchange, agent, b"r")
    envelope = msgspec.json.decode(data, type=Envelope)
    document = b64decode(envelope.doc).replace(b"1000000", b"9000000")
    tampered = json_encoder.encode(Envelope(doc=b64encode(document), sig=envelope.sig))
    code = rejection(tampered, exchange=exchange, agent=agent, subject=subject, request=b"r")
    assert code == "bad_signature"


def test_an_expired_reply_is_refused(parties):
    exchange, agent, _ = parties
    subject, data = reply_to(exchange, agent, b"r", clock=ShiftedClock(-120_000))
    assert rejection(data, exchange=exchange, agent=agent, subject=subject, request=b"r") == (
        "expired"
    )


def test_a_reply_that_is_not_a_signed_reply_is_refused(parties):
    exchange, agent, _ = parties
    subject = subjects.exchange_request(agent.agent_id, "wallet.balance")
    unsigned = json_encoder.encode(balance(agent.agent_id, 5))
    code = rejection(unsigned, exchange=exchange, agent=agent, subject=subject, request=b"r")
    assert code == "malformed"


async def test_an_agent_pinning_the_exchange_refuses_an_impostor_on_a_rogue_server(tmp_path):
    genuine, impostor, agent = (AgentKeys.generate() for _ in range(3))
    # A server an attacker runs (no auth), where the impostor answers info.
    config = NatsServerConfig(data_dir=tmp_path / "rogue")
    async with EmbeddedNatsServer(config) as rogue:
        import nats

        client = await nats.connect(rogue.url)

        async def answer_info(message) -> None:
            info = InfoReply(
                exchange_id=impostor.agent_id, protocol_version=1, escrow_fee_bps=0, endpoints=[]
            )
            await message.respond(
                sign_reply(
                    info,
                    keys=impostor,
                    audience=ANY_AUDIENCE,
                    request_subject=message.subject,
                    request_payload=message.data,
                    clock=CLOCK,
                )
            )

        await client.subscribe(subjects.EXCHANGE_INFO, cb=answer_info)
        await client.flush()
        options = AgentOptions(exchange_id=genuine.agent_id, connect_timeout_s=3.0)
        with pytest.raises(SignatureRejected) as caught:
            await Agent.connect(rogue.url, agent, options=options)
        assert caught.value.code == "signer_mismatch"
        await client.close()


def test_a_signed_reply_carries_the_hash_of_its_request(parties):
    exchange, agent, _ = parties
    _, data = reply_to(exchange, agent, b"exactly these bytes")
    document = msgspec.json.decode(
        b64decode(msgspec.json.decode(data, type=Envelope).doc), type=SignedReply
    )
    import hashlib

    assert document.request_sha256 == hashlib.sha256(b"exactly these bytes").hexdigest()


async def test_info_answers_only_a_fresh_nonce(exchange, exchange_keys):
    import nats.errors

    keys = AgentKeys.generate()
    client = await exchange.raw_connection(keys)
    for too_short_or_long in (b"", b"x" * 8, b"x" * 1_000):
        with pytest.raises(nats.errors.TimeoutError):
            await client.request(subjects.EXCHANGE_INFO, too_short_or_long, timeout=1)
    answer = await client.request(subjects.EXCHANGE_INFO, b"a-fresh-nonce-1234567", timeout=5)
    signer, info = open_reply(
        answer.data,
        signer_id=exchange_keys.agent_id,
        audience=ANY_AUDIENCE,
        request_subject=subjects.EXCHANGE_INFO,
        request_payload=b"a-fresh-nonce-1234567",
        clock=CLOCK,
    )
    assert isinstance(info, InfoReply) and info.exchange_id == signer
