"""The auth callout's pure core: NATS JWTs, the decision, the answer, the permissions.

The JWTs are checked two ways: against the format (round trips, signatures
by the named issuer, oversize and tampered tokens refused), and against the
real nats-server (the session's server, which runs this callout, admits
exactly the connections the decision grants: tests/threats). The decision
is tested on hand-made authorization requests: anonymous, wrong key kind,
missing or bad signature, and each role's permissions.
"""

from __future__ import annotations

import base64

import msgspec
import nkeys
import pytest

from agent_client import AgentKeys, subjects
from broker.auth_callout import (
    AGENTS_ACCOUNT,
    CalloutKeys,
    Granted,
    Refused,
    authorize,
    decode_request,
    render_auth_callout_config,
    response_for,
)
from broker.errors import JwtInvalid
from broker.limits import JWT_BYTES_MAX
from broker.nats_jwt import (
    AUTHORIZATION_REQUEST_AUDIENCE,
    AuthorizationRequest,
    AuthorizationRequestClaims,
    AuthorizationResponseClaims,
    ClientInformation,
    ConnectOptions,
    NkeyPair,
    ServerId,
    UserClaims,
    decode_jwt,
    encode_jwt,
)
from broker.permissions import AccessPolicy, Role, permissions_for

NOW_S = 1_800_000_000
NONCE = "a-server-nonce"


@pytest.fixture
def keys() -> CalloutKeys:
    return CalloutKeys.generate()


def request_from(agent: AgentKeys | None, *, nonce: str = NONCE, sig: str | None = None):
    options = ConnectOptions()
    if agent is not None:
        signature = (
            sig if sig is not None else base64.b64encode(agent.sign(nonce.encode())).decode()
        )
        options = ConnectOptions(nkey=agent.agent_id, sig=signature)
    server = NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_SERVER)
    user = NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_USER)
    return server, AuthorizationRequest(
        server_id=ServerId(id=server.public_key),
        user_nkey=user.public_key,
        client_info=ClientInformation(nonce=nonce),
        connect_opts=options,
    )


def test_a_jwt_round_trips_and_names_its_signer(keys):
    claims = UserClaims(
        sub="U" + "A" * 55, aud=AGENTS_ACCOUNT, nats=permissions_for(Role.AGENT, "x")
    )
    token = encode_jwt(claims, keys.issuer, issued_at_s=NOW_S)
    decoded = decode_jwt(token, claims_type=UserClaims, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    assert decoded.iss == keys.issuer.public_key and decoded.iat == NOW_S
    assert decoded.nats == claims.nats and decoded.jti  # the claims' hash


def test_a_tampered_oversize_or_wrongly_issued_jwt_is_refused(keys):
    claims = UserClaims(sub="U" + "A" * 55, nats=permissions_for(Role.AGENT, "x"))
    token = encode_jwt(claims, keys.issuer, issued_at_s=NOW_S)
    header, body, signature = token.split(".")
    forged_body = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(body + "==").replace(b"_INBOX", b"_OUTBX")
        )
        .rstrip(b"=")
        .decode()
    )
    for bad in (
        f"{header}.{forged_body}.{signature}",
        "x" * (JWT_BYTES_MAX + 1),
        "not.a.jwt",
    ):
        with pytest.raises(JwtInvalid):
            decode_jwt(bad, claims_type=UserClaims, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    # Signed by an account key, read as if a server had to sign it.
    with pytest.raises(JwtInvalid):
        decode_jwt(token, claims_type=UserClaims, issuer_prefix=nkeys.PREFIX_BYTE_SERVER)


def test_an_agent_that_signed_the_nonce_is_granted_an_agents_permissions():
    agent = AgentKeys.generate()
    _, request = request_from(agent)
    decision = authorize(request, AccessPolicy(exchange_ids=frozenset({"U" + "E" * 55})))
    assert isinstance(decision, Granted)
    assert (decision.identity, decision.role) == (agent.agent_id, Role.AGENT)
    assert decision.permissions == permissions_for(Role.AGENT, agent.agent_id)


@pytest.mark.parametrize(
    "case",
    ["anonymous", "no-signature", "signed-by-another-key", "signature-not-base64", "no-nonce"],
)
def test_anything_but_a_signature_of_this_nonce_by_this_key_is_refused(case):
    agent, other = AgentKeys.generate(), AgentKeys.generate()
    if case == "anonymous":
        _, request = request_from(None)
    elif case == "no-signature":
        _, request = request_from(agent, sig="")
    elif case == "signed-by-another-key":
        _, request = request_from(agent, sig=base64.b64encode(other.sign(NONCE.encode())).decode())
    elif case == "signature-not-base64":
        _, request = request_from(agent, sig="!!!")
    else:
        _, request = request_from(agent, nonce="")
    decision = authorize(request, AccessPolicy(exchange_ids=frozenset({other.agent_id})))
    assert isinstance(decision, Refused)


def test_the_exchange_and_portal_keys_get_their_roles():
    exchange, portal = AgentKeys.generate(), AgentKeys.generate()
    policy = AccessPolicy(
        exchange_ids=frozenset({exchange.agent_id}), portal_ids=frozenset({portal.agent_id})
    )
    for keys, role in ((exchange, Role.EXCHANGE), (portal, Role.PORTAL)):
        _, request = request_from(keys)
        decision = authorize(request, policy)
        assert isinstance(decision, Granted) and decision.role is role


def test_roles_grant_least_privilege():
    agent_id = AgentKeys.generate().agent_id
    agent = permissions_for(Role.AGENT, agent_id)
    assert f"agentx.v2.x.{agent_id}.>" in agent.pub.allow
    assert not any(s.startswith("$JS.API") for s in agent.pub.allow)
    assert agent.sub.allow == (
        f"_INBOX.{agent_id}.>",
        subjects.negotiation(agent_id),
        "agentx.v2.rfq.>",
    )
    assert agent.resp is not None and agent.resp.max == 1
    exchange = permissions_for(Role.EXCHANGE, agent_id)
    assert "$JS.API.STREAM.DELETE.>" in exchange.pub.deny
    assert "$JS.API.STREAM.PURGE.>" in exchange.pub.deny
    assert subjects.exchange_request_wildcard(">") in exchange.sub.allow
    portal = permissions_for(Role.PORTAL, agent_id)
    assert portal.pub.allow[0] == "agentx.v2.x.*.contract.open"


def test_the_answer_binds_the_user_jwt_to_this_connection_and_server(keys):
    agent = AgentKeys.generate()
    server, request = request_from(agent)
    decision = authorize(request, AccessPolicy(exchange_ids=frozenset({"U" + "E" * 55})))
    answer = response_for(request, decision, keys.issuer, now_s=NOW_S)
    claims = decode_jwt(
        answer, claims_type=AuthorizationResponseClaims, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT
    )
    assert (claims.sub, claims.aud) == (request.user_nkey, server.public_key)
    user = decode_jwt(
        claims.nats.jwt, claims_type=UserClaims, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT
    )
    assert (user.sub, user.aud) == (request.user_nkey, AGENTS_ACCOUNT)
    # nats-server reads a claim without type and version as version 1.
    raw = msgspec.json.decode(base64.urlsafe_b64decode(claims.nats.jwt.split(".")[1] + "=="))
    assert raw["nats"]["type"] == "user" and raw["nats"]["version"] == 2


def test_a_refusal_answers_with_the_reason_and_no_jwt(keys):
    _, request = request_from(None)
    decision = authorize(request, AccessPolicy(exchange_ids=frozenset({"U" + "E" * 55})))
    answer = response_for(request, decision, keys.issuer, now_s=NOW_S)
    claims = decode_jwt(
        answer, claims_type=AuthorizationResponseClaims, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT
    )
    assert claims.nats.jwt == "" and "anonymous" in claims.nats.error


def test_only_a_request_signed_by_the_server_it_names_is_read(keys):
    server, request = request_from(AgentKeys.generate())
    claims = AuthorizationRequestClaims(
        aud=AUTHORIZATION_REQUEST_AUDIENCE, sub=keys.issuer.public_key, nats=request
    )
    token = encode_jwt(claims, server, issued_at_s=NOW_S).encode()
    assert decode_request(token, now_s=NOW_S).user_nkey == request.user_nkey
    impostor = NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_SERVER)
    with pytest.raises(JwtInvalid):
        decode_request(encode_jwt(claims, impostor, issued_at_s=NOW_S).encode(), now_s=NOW_S)
    other_audience = msgspec.structs.replace(claims, aud="something-else")
    with pytest.raises(JwtInvalid):
        decode_request(encode_jwt(other_audience, server, issued_at_s=NOW_S).encode(), now_s=NOW_S)


def test_the_server_config_names_only_public_keys(keys):
    text = "\n".join(render_auth_callout_config(keys, jetstream=True))
    assert keys.issuer.public_key in text and keys.service_user.public_key in text
    seed = keys.issuer.seed_text(prefix_byte=nkeys.PREFIX_BYTE_ACCOUNT)
    assert seed not in text and "jetstream: enabled" in text
