"""Who is connected as which agent, and who is suspended (pure, bounded).

A worker can refuse a flooding agent's requests cheaply, but it still
receives every one of them: nats-server has no per-connection rate limit,
and a flood queued ahead of an honest request delays it. So when a worker
sees an agent keep flooding past its refusals, the broker disconnects that
agent's connections (the server's kick, by client id) and the auth callout
refuses the key for a while. The callout learns each connection's client id
when it admits it; :class:`ConnectionBook` remembers them, and
:class:`Suspensions` the keys refused until when. Both are bounded:
forgetting the oldest entry only means a kick or a refusal that does not
happen, never one that happens wrongly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ConnectionBook", "ServerConnection", "Suspensions"]


@dataclass(frozen=True, slots=True)
class ServerConnection:
    """One client connection: the server it is on and its client id there."""

    server_id: str
    client_id: int


class ConnectionBook:
    """The latest connections admitted for each agent (the ones a kick must reach)."""

    def __init__(self, *, agents_max: int, connections_per_agent_max: int) -> None:
        assert agents_max > 0 and connections_per_agent_max > 0
        self._agents_max = agents_max
        self._per_agent_max = connections_per_agent_max
        self._connections: OrderedDict[str, list[ServerConnection]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._connections)

    def admitted(self, agent_id: str, connection: ServerConnection, /) -> None:
        connections = self._connections.pop(agent_id, [])
        connections.append(connection)
        self._connections[agent_id] = connections[-self._per_agent_max :]
        if len(self._connections) > self._agents_max:
            self._connections.popitem(last=False)

    def take(self, agent_id: str, /) -> list[ServerConnection]:
        """The agent's connections, forgotten here (they are about to be closed)."""
        return self._connections.pop(agent_id, [])


class Suspensions:
    """Agents refused at connect until a given time."""

    def __init__(self, *, agents_max: int) -> None:
        assert agents_max > 0
        self._agents_max = agents_max
        self._until_s: OrderedDict[str, float] = OrderedDict()

    def suspend(self, agent_id: str, /, *, until_s: float) -> None:
        self._until_s.pop(agent_id, None)
        self._until_s[agent_id] = until_s
        if len(self._until_s) > self._agents_max:
            self._until_s.popitem(last=False)

    def seconds_left(self, agent_id: str, /, *, now_s: float) -> float:
        """How long ``agent_id`` stays refused (0: it is not)."""
        until_s = self._until_s.get(agent_id)
        if until_s is None:
            return 0.0
        if until_s <= now_s:
            del self._until_s[agent_id]
            return 0.0
        return until_s - now_s
