"""Relaying an agent's own signed acceptance to the exchange, for ``/api/v1``.

The portal holds no agent keys: the agent signed ``contract.open`` itself,
and the exchange checks that signature, the quote, the budgets and funds.
The exchange's answer is signed for the agent; the portal believes it only
once it verifies against the exchange id the portal learned at start.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client

from agent_client import subjects
from agent_client.agent import fetch_exchange_info
from agent_client.errors import AgentClientError
from agent_client.protocol import Envelope, json_encoder
from agent_client.replies import open_reply
from agent_client.signing import Clock
from agent_client.transport import NatsConnection
from human_portal.errors import ServiceUnavailable

__all__ = ["ExchangeRelay"]

RELAY_TIMEOUT_S = 10.0


class ExchangeRelay:
    def __init__(self, client: Client, exchange_id: str, /, *, clock: Clock) -> None:
        self._connection = NatsConnection(client)
        self._exchange_id = exchange_id
        self._clock = clock

    @classmethod
    async def connect(cls, client: Client, /, *, clock: Clock) -> ExchangeRelay:
        """Learn the exchange's id from its signed ``info`` over the portal's connection."""
        info = await fetch_exchange_info(
            NatsConnection(client),
            pinned_exchange_id=None,
            timeout_s=RELAY_TIMEOUT_S,
            clock=clock,
        )
        return cls(client, info.exchange_id, clock=clock)

    async def open_contract(self, acceptance: Envelope, agent_id: str, /) -> dict[str, Any]:
        """The exchange's verified answer to the agent's ``contract.open``, as JSON values."""
        subject = subjects.exchange_request(agent_id, "contract.open")
        payload = json_encoder.encode(acceptance)
        try:
            reply_bytes = await self._connection.request(
                subject, payload, timeout_s=RELAY_TIMEOUT_S
            )
            _, reply = open_reply(
                reply_bytes,
                signer_id=self._exchange_id,
                audience=agent_id,
                request_subject=subject,
                request_payload=payload,
                clock=self._clock,
            )
        except AgentClientError as exc:
            raise ServiceUnavailable("the exchange did not answer") from exc
        # Through JSON: the reply holds raw JSON values (the task) as they came.
        answer: dict[str, Any] = msgspec.json.decode(json_encoder.encode(reply))
        return answer
