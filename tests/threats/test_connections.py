"""Threat model, connections: only the holder of a key connects as that key.

A stranger with no key, or with somebody else's public id, tries to
connect to the session's nats-server (auth on, as ``agentx up`` runs it):
anonymously, with a user and password or a token, claiming the exchange's
or an agent's id with a signature by another key, or replaying a genuine
agent's signature of an earlier nonce. Each is refused by the auth callout
with ``Authorization Violation``, the callout counts the refusal, and an
honest agent connecting right after is let in. The forged connections are
made over a bare socket (tests/threats/wire.py), so nothing in nats-py
stands between the attacker and the server.
"""

from __future__ import annotations

import nats
import nats.errors
import pytest

from agent_client import Agent, AgentClientError, AgentKeys, AgentOptions
from agent_client.transport import connect_nats
from broker import EmbeddedNatsServer
from tests.threats.wire import forged_connect, signature_text

REFUSED = "-ERR 'Authorization Violation'"
ACCEPTED = "PONG"


def refusals(server: EmbeddedNatsServer) -> int:
    assert server.callout is not None, "the session's server runs the auth callout"
    return server.callout.refused_count


async def test_a_client_without_credentials_is_refused(nats_server, nats_url):
    before = refusals(nats_server)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_url, allow_reconnect=False, connect_timeout=5)
    assert refusals(nats_server) == before + 1


@pytest.mark.parametrize(
    "credentials",
    [{}, {"user": "admin", "pass": "admin"}, {"auth_token": "s3cret"}],
    ids=["anonymous", "user-and-password", "token"],
)
async def test_credentials_other_than_a_signed_nonce_are_refused(
    nats_server, nats_url, credentials
):
    before = refusals(nats_server)
    _, answer = await forged_connect(nats_url, credentials)
    assert answer == REFUSED
    assert refusals(nats_server) == before + 1


async def test_claiming_the_exchange_key_without_its_seed_is_refused(
    nats_server, nats_url, exchange_keys
):
    impostor = AgentKeys.generate()
    before = refusals(nats_server)
    _, answer = await forged_connect(
        nats_url,
        {
            "nkey": exchange_keys.agent_id,
            "sig": lambda nonce: signature_text(impostor.sign(nonce.encode())),
        },
    )
    assert answer == REFUSED
    _, answer = await forged_connect(nats_url, {"nkey": exchange_keys.agent_id})
    assert answer == REFUSED
    assert refusals(nats_server) == before + 2


async def test_a_signature_of_an_earlier_nonce_cannot_be_replayed(nats_server, nats_url):
    victim = AgentKeys.generate()
    captured: dict[str, str] = {}

    def sign_and_capture(nonce: str) -> str:
        captured["sig"] = signature_text(victim.sign(nonce.encode()))
        return captured["sig"]

    _, answer = await forged_connect(nats_url, {"nkey": victim.agent_id, "sig": sign_and_capture})
    assert answer == ACCEPTED  # the genuine connection
    _, answer = await forged_connect(nats_url, {"nkey": victim.agent_id, "sig": captured["sig"]})
    assert answer == REFUSED  # the same signature, on a connection with a new nonce


async def test_a_key_that_is_not_an_agent_key_is_refused(nats_server, nats_url):
    signer = AgentKeys.generate()
    # An account-type id (prefix A) with a valid signature is still not an agent.
    account_like = "A" + signer.agent_id[1:]
    _, answer = await forged_connect(
        nats_url,
        {"nkey": account_like, "sig": lambda n: signature_text(signer.sign(n.encode()))},
    )
    assert answer == REFUSED


async def test_an_agent_with_its_own_key_connects_and_trades(exchange, nats_server):
    before = nats_server.callout.granted_count if nats_server.callout else 0
    buyer = await exchange.funded_agent(5_000)
    assert (await buyer.balance()).available_millicredits == 5_000
    assert nats_server.callout is not None and nats_server.callout.granted_count > before
    await exchange.check_invariants()


async def test_a_refused_connection_is_a_clear_client_error_not_a_retry_loop(nats_url):
    with pytest.raises(AgentClientError, match="Authorization Violation"):
        await connect_nats(nats_url, WithoutSignature(), name="t", connect_timeout_s=3.0)
    with pytest.raises(AgentClientError, match="cannot connect"):
        await Agent.connect(
            "nats://127.0.0.1:1", AgentKeys.generate(), options=AgentOptions(connect_timeout_s=1.0)
        )


class WithoutSignature(AgentKeys):
    """An agent key whose seed text is an account seed: nats-py sends no user nkey."""

    def __init__(self) -> None:
        super().__init__(AgentKeys.generate()._signing_key)

    def seed_text(self) -> bytes:
        import nkeys

        return bytes(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_ACCOUNT))
