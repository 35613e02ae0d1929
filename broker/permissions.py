"""Who may publish and subscribe to what: least privilege per identity (pure).

The auth callout (``broker/auth_callout.py``) grants each connection the
permissions of its role, decided by the key it proved it holds:

* an **agent** publishes only its own requests (``agentx.v2.x.<id>.>``,
  ``agentx.v2.portal.<id>.>``), RFQs, counter-offers and walk-aways to
  providers, and one reply to each message it received (a quote to an
  RFQ, an answer to a counter-offer); it receives only on its own inbox
  prefix, its own negotiation subject and the RFQ subjects. It has no
  JetStream API at all: its notices come into its inbox
  (``_INBOX.<id>.notices``) and it acknowledges them with a signed request
  (``notices.ack``).
* an **exchange worker** (the exchange key) serves the exchange's request
  subjects and ``info`` in its queue group, publishes notices into agents'
  notice subjects (``_INBOX.*.notices``, which only each agent may read)
  and result chunks into their stream, and uses the JetStream API, except
  to delete or purge a stream or a stored message: nobody connected can.
* a **portal** process (the portal key) serves the portal's subjects and
  relays agents' signed ``contract.open`` requests.

RFQ subjects are readable by every agent on purpose: a call for quotes is a
public broadcast to whoever sells the capability (any agent may advertise
any capability), so it carries a task summary and a budget, never the task.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent_client import limits as protocol_limits
from agent_client import subjects
from broker.nats_jwt import ResponsePermission, SubjectPermission, UserPermissions

__all__ = ["AccessPolicy", "Role", "permissions_for"]

_NANOSECONDS_PER_SECOND = 1_000_000_000
# A reply (a quote to an RFQ, the exchange's answer) may follow its request
# by at most a request's lifetime; the server forgets the grant after that.
_REPLY_WINDOW_NS = protocol_limits.REQUEST_LIFETIME_MAX_S * _NANOSECONDS_PER_SECOND
_ONE_REPLY = ResponsePermission(max=1, ttl=_REPLY_WINDOW_NS)
# NATS micro services answer these for discovery (and stats, for operators).
_DISCOVERY = ("$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>")
_MICRO_SERVICE = ("$SRV.>",)
# Every service's request counts: for the exchange's key, which operators hold
# (``agentx status``), never for agents.
_SERVICE_STATS = ("$SRV.STATS", "$SRV.STATS.>")
# Deleting a stream, purging it or removing one of its messages is refused to
# every connection, the exchange's included: a stolen worker key cannot wipe
# the notices or the results.
_JETSTREAM_DESTRUCTIVE = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
)


class Role(enum.Enum):
    AGENT = "agent"
    EXCHANGE = "exchange"
    PORTAL = "portal"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Which keys are the exchange's workers and the portal's processes; the rest are agents."""

    exchange_ids: frozenset[str]
    portal_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert self.exchange_ids, "an exchange needs its key"
        assert not self.exchange_ids & self.portal_ids, "one key, one role"

    def role_of(self, identity: str, /) -> Role:
        if identity in self.exchange_ids:
            return Role.EXCHANGE
        if identity in self.portal_ids:
            return Role.PORTAL
        return Role.AGENT


def permissions_for(role: Role, identity: str, /) -> UserPermissions:
    """The permissions a connection authenticated as ``identity`` gets."""
    if role is Role.EXCHANGE:
        return _exchange_permissions(identity)
    if role is Role.PORTAL:
        return _portal_permissions(identity)
    return _agent_permissions(identity)


def _agent_permissions(agent_id: str) -> UserPermissions:
    return UserPermissions(
        pub=SubjectPermission(
            allow=(
                subjects.exchange_requests_of(agent_id),
                subjects.portal_requests_of(agent_id),
                subjects.EXCHANGE_INFO,
                subjects.rfq(">"),
                subjects.negotiation("*"),
                *_DISCOVERY,
            )
        ),
        sub=SubjectPermission(
            allow=(
                f"{subjects.inbox_prefix(agent_id)}.>",
                subjects.negotiation(agent_id),
                subjects.rfq(">"),
            )
        ),
        resp=_ONE_REPLY,
    )


def _exchange_permissions(exchange_id: str) -> UserPermissions:
    return UserPermissions(
        pub=SubjectPermission(
            allow=(
                "$JS.API.>",
                subjects.notice_deliver_subject("*"),
                subjects.RESULT_CHUNKS,
                subjects.GOODS_CHUNKS,
                *_DISCOVERY,
                *_SERVICE_STATS,
            ),
            deny=_JETSTREAM_DESTRUCTIVE,
        ),
        sub=SubjectPermission(
            allow=(
                subjects.exchange_request_wildcard(">"),
                subjects.EXCHANGE_INFO,
                f"{subjects.inbox_prefix(exchange_id)}.>",
                *_MICRO_SERVICE,
            )
        ),
        resp=_ONE_REPLY,
    )


def _portal_permissions(portal_id: str) -> UserPermissions:
    return UserPermissions(
        pub=SubjectPermission(
            allow=(
                # The portal relays an agent's own signed acceptance; the
                # exchange checks that agent's signature, not the portal's.
                subjects.exchange_request("*", "contract.open"),
                subjects.EXCHANGE_INFO,
            )
        ),
        sub=SubjectPermission(
            allow=(
                subjects.portal_requests_of("*"),
                f"{subjects.inbox_prefix(portal_id)}.>",
                *_MICRO_SERVICE,
            )
        ),
        resp=_ONE_REPLY,
    )
