"""Connection authentication: nats-server asks this service who may connect, and how.

With the auth callout on (``render_auth_callout_config``), nats-server
authenticates nobody itself except this service's own user. Every other
client's CONNECT is sent here as a signed authorization request, and the
connection is allowed only if we answer with a signed user JWT:

1. The client connects with its agent key (an nkey): the server sent it a
   random nonce, it signed the nonce and sent its public key and the
   signature. The server forwards both unverified, so :func:`authorize`
   checks the signature over the nonce itself. Anonymous clients, keys
   that are not user keys, and bad signatures are refused.
2. The key's role (:class:`~broker.permissions.AccessPolicy`) picks its
   permissions (:mod:`broker.permissions`), and the answer binds them to
   the connection the server named (``user_nkey``), for this server only.

:func:`authorize` and :func:`response_for` are pure; :class:`AuthCalloutService`
is the NATS adapter, and :class:`CalloutKeys` the keys the set-up needs: the
issuer account key that signs answers (the server trusts its public half),
the service's own user key, and a system-account user key the service uses
for one thing: disconnecting an agent a worker reports as flooding
(:meth:`AuthCalloutService.evict`), whose key it then refuses for a while
(broker/evictions.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import nats
import nats.errors
import nkeys
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from broker.errors import AuthCalloutUnavailable, JwtInvalid
from broker.evictions import ConnectionBook, ServerConnection, Suspensions
from broker.limits import (
    AGENT_SUSPENSION_S,
    AUTH_CALLOUT_CONNECT_TIMEOUT_S,
    AUTH_CALLOUT_DRAIN_TIMEOUT_S,
    AUTH_REQUEST_PENDING_MAX,
    CONNECTIONS_TRACKED_AGENTS_MAX,
    CONNECTIONS_TRACKED_PER_AGENT_MAX,
    KICK_TIMEOUT_S,
    SUSPENDED_AGENTS_MAX,
)
from broker.nats_jwt import (
    AUTHORIZATION_REQUEST_AUDIENCE,
    AuthorizationRequest,
    AuthorizationRequestClaims,
    AuthorizationResponse,
    AuthorizationResponseClaims,
    NkeyPair,
    UserClaims,
    UserPermissions,
    decode_jwt,
    decode_public_nkey,
    encode_jwt,
    verify_nonce_signature,
)
from broker.permissions import AccessPolicy, Role, permissions_for

__all__ = [
    "AGENTS_ACCOUNT",
    "AUTH_CALLOUT_SUBJECT",
    "AuthCalloutService",
    "CalloutKeys",
    "Granted",
    "Refused",
    "authorize",
    "render_auth_callout_config",
    "response_for",
]

log = logging.getLogger(__name__)

AUTH_CALLOUT_SUBJECT: Final = "$SYS.REQ.USER.AUTH"
# The account every authenticated connection lands in (JetStream is on there),
# and the one only the callout service's user lives in.
AGENTS_ACCOUNT: Final = "AGENTX"
CALLOUT_ACCOUNT: Final = "AUTH"
SYSTEM_ACCOUNT: Final = "SYS"
# nats-server's own service for disconnecting one client by id.
KICK_SUBJECT_FORMAT: Final = "$SYS.REQ.SERVER.{server_id}.KICK"
# Several callout services (one per node in a cluster) share the requests.
CALLOUT_QUEUE_GROUP: Final = "agentx-auth"


@dataclass(frozen=True, slots=True)
class CalloutKeys:
    """The issuer account key (signs answers) and the service's own user key.

    The embedded stack makes fresh ones at every start: the server's config
    holds only their public halves and is rewritten at every start too.
    """

    issuer: NkeyPair
    service_user: NkeyPair
    # A user of the system account: it may disconnect clients (and nothing
    # else is asked of it). Held by this service only.
    system_user: NkeyPair

    @classmethod
    def generate(cls) -> CalloutKeys:
        return cls(
            issuer=NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_ACCOUNT),
            service_user=NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_USER),
            system_user=NkeyPair.generate(prefix_byte=nkeys.PREFIX_BYTE_USER),
        )


def render_auth_callout_config(keys: CalloutKeys, /, *, jetstream: bool) -> list[str]:
    """The nats-server config lines that turn the callout on (a restart applies them)."""
    user = keys.service_user.public_key
    system_user = keys.system_user.public_key
    return [
        "accounts {",
        f"  {CALLOUT_ACCOUNT} {{ users: [ {{ nkey: {user} }} ] }}",
        f"  {AGENTS_ACCOUNT} {{ jetstream: {'enabled' if jetstream else 'disabled'} }}",
        f"  {SYSTEM_ACCOUNT} {{ users: [ {{ nkey: {system_user} }} ] }}",
        "}",
        f"system_account: {SYSTEM_ACCOUNT}",
        "authorization {",
        "  auth_callout {",
        f"    issuer: {keys.issuer.public_key}",
        f"    auth_users: [ {user}, {system_user} ]",
        f"    account: {CALLOUT_ACCOUNT}",
        "  }",
        "}",
    ]


@dataclass(frozen=True, slots=True)
class Granted:
    identity: str
    role: Role
    permissions: UserPermissions


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


def authorize(request: AuthorizationRequest, policy: AccessPolicy, /) -> Granted | Refused:
    """Who the connecting client proved to be, and what it may do (pure)."""
    options = request.connect_opts
    if not options.nkey:
        return Refused("connect with your agent key (nkey); anonymous clients are refused")
    public_key = decode_public_nkey(options.nkey, prefix_byte=nkeys.PREFIX_BYTE_USER)
    if public_key is None:
        return Refused("the nkey is not an agent (user) public key")
    nonce = request.client_info.nonce
    if not nonce or not options.sig:
        return Refused("no signed nonce: sign the server's nonce with your agent key")
    if not verify_nonce_signature(public_key, nonce, options.sig):
        return Refused("the nonce signature does not verify")
    role = policy.role_of(options.nkey)
    return Granted(options.nkey, role, permissions_for(role, options.nkey))


def response_for(
    request: AuthorizationRequest,
    decision: Granted | Refused,
    issuer: NkeyPair,
    /,
    *,
    now_s: int,
) -> bytes:
    """The signed answer to the server: a user JWT for this connection, or why not."""
    if isinstance(decision, Granted):
        user = UserClaims(sub=request.user_nkey, aud=AGENTS_ACCOUNT, nats=decision.permissions)
        answer = AuthorizationResponse(jwt=encode_jwt(user, issuer, issued_at_s=now_s))
    else:
        answer = AuthorizationResponse(error=decision.reason)
    claims = AuthorizationResponseClaims(
        sub=request.user_nkey, aud=request.server_id.id, nats=answer
    )
    return encode_jwt(claims, issuer, issued_at_s=now_s).encode()


def decode_request(data: bytes, /, *, now_s: int) -> AuthorizationRequest:
    """The server's signed authorization request; JwtInvalid if it is not one."""
    claims = decode_jwt(
        data, claims_type=AuthorizationRequestClaims, issuer_prefix=nkeys.PREFIX_BYTE_SERVER
    )
    if claims.aud != AUTHORIZATION_REQUEST_AUDIENCE:
        raise JwtInvalid("not an authorization request")
    if claims.iss != claims.nats.server_id.id:
        raise JwtInvalid("signed by another server than it names")
    if claims.exp and claims.exp < now_s:
        raise JwtInvalid("the request has expired")
    return claims.nats


class AuthCalloutService:
    """Answers the server's authorization requests on a connection of its own."""

    def __init__(
        self,
        url: str,
        keys: CalloutKeys,
        policy: AccessPolicy,
        /,
        *,
        clock_s: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        self._url = url
        self._keys = keys
        self._policy = policy
        self._clock_s = clock_s
        self._client: Client | None = None
        self._system_client: Client | None = None
        self._subscription: Subscription | None = None
        self._connections = ConnectionBook(
            agents_max=CONNECTIONS_TRACKED_AGENTS_MAX,
            connections_per_agent_max=CONNECTIONS_TRACKED_PER_AGENT_MAX,
        )
        self._suspensions = Suspensions(agents_max=SUSPENDED_AGENTS_MAX)
        self.granted_count = 0
        self.refused_count = 0
        self.evicted_count = 0

    async def start(self) -> None:
        assert self._client is None, "the callout service is already started"
        try:
            self._client = await self._connect(self._keys.service_user, "agentx-auth-callout")
            self._system_client = await self._connect(self._keys.system_user, "agentx-evictions")
            self._subscription = await self._client.subscribe(
                AUTH_CALLOUT_SUBJECT,
                queue=CALLOUT_QUEUE_GROUP,
                cb=self._answer,
                pending_msgs_limit=AUTH_REQUEST_PENDING_MAX,
            )
            await self._client.flush()
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            await self.stop()
            raise AuthCalloutUnavailable(url=self._url, reason=repr(exc)) from exc

    async def _connect(self, user: NkeyPair, name: str) -> Client:
        return await nats.connect(
            self._url,
            name=name,
            nkeys_seed_str=user.seed_text(prefix_byte=nkeys.PREFIX_BYTE_USER),
            connect_timeout=AUTH_CALLOUT_CONNECT_TIMEOUT_S,
            drain_timeout=AUTH_CALLOUT_DRAIN_TIMEOUT_S,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            error_cb=_log_connection_error,
        )

    async def stop(self) -> None:
        for client in (self._client, self._system_client):
            if client is not None and not client.is_closed:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await client.drain()
        self._client = self._system_client = None

    async def evict(self, agent_id: str, /) -> None:
        """Disconnect every connection of ``agent_id`` and refuse its key for a while.

        Called by a worker that saw the agent keep flooding past its
        refusals. Only agents are evicted, never the exchange's or the
        portal's keys.
        """
        if self._policy.role_of(agent_id) is not Role.AGENT or self._system_client is None:
            return
        self._suspensions.suspend(agent_id, until_s=time.monotonic() + AGENT_SUSPENSION_S)
        connections = self._connections.take(agent_id)
        self.evicted_count += 1
        log.warning(
            "disconnected agent %s (%d connections) for flooding; refused for %d s",
            agent_id,
            len(connections),
            AGENT_SUSPENSION_S,
        )
        for connection in connections:
            subject = KICK_SUBJECT_FORMAT.format(server_id=connection.server_id)
            payload = json.dumps({"cid": connection.client_id}).encode()
            # Already gone, or the server slow to answer: nothing more to do.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._system_client.request(subject, payload, timeout=KICK_TIMEOUT_S)

    async def _answer(self, message: Msg) -> None:
        # Each answer is a few signatures of CPU work, done inline: the
        # subscription's bounded pending queue holds what waits meanwhile.
        now_s = self._clock_s()
        try:
            request = decode_request(message.data, now_s=now_s)
        except JwtInvalid as exc:
            log.warning("ignored a message on %s: %s", AUTH_CALLOUT_SUBJECT, exc)
            return
        decision = self._decide(request)
        if isinstance(decision, Granted):
            self.granted_count += 1
            connection = ServerConnection(request.server_id.id, request.client_info.id)
            self._connections.admitted(decision.identity, connection)
        else:
            self.refused_count += 1
            log.info("refused a connection from %s: %s", request.client_info.host, decision.reason)
        with contextlib.suppress(nats.errors.Error):
            await message.respond(response_for(request, decision, self._keys.issuer, now_s=now_s))

    def _decide(self, request: AuthorizationRequest) -> Granted | Refused:
        decision = authorize(request, self._policy)
        if isinstance(decision, Granted):
            left_s = self._suspensions.seconds_left(decision.identity, now_s=time.monotonic())
            if left_s > 0:
                return Refused(f"this key is suspended for flooding, {left_s:.0f} s more")
        return decision


async def _log_connection_error(error: Exception) -> None:
    log.warning("auth callout connection: %s", error)
