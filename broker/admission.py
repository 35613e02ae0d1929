"""Per-agent admission: no agent can starve the others of a worker (pure).

A request's subject names its agent, and the connection's permissions
guarantee only that agent can publish there, so a worker can decide
whether to take a request before decoding a byte of it. Three limits, each
a token bucket or a count per agent:

* **requests**: a sustained rate with a burst;
* **protocol errors**: a far smaller budget for requests that fail the
  receiver's checks (malformed, forged, replayed, wrong kind). An agent
  that spends it is refused outright until it recovers, so a flood of junk
  costs a handful of verifications and then only this look-up;
* **in flight**: requests of one agent being answered at once, a fraction
  of the worker's slots, so one agent's slow requests cannot hold them all.

A refused request is answered ``rate_limited``, but only a few times a
second per agent (answers cost a signature); past that it is dropped
without a word and the sender's request times out. An agent that keeps
sending after that (``evict_after_drops`` requests dropped unanswered) is
a flood: the worker reports it once to be disconnected (``EVICT``), since a
flood still costs the worker every message it receives. Agents are remembered in
least-recently-seen order up to a bound; forgetting one resets its buckets,
which a flooder can only provoke with that many authenticated connections.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from broker.limits import (
    AGENT_DROPS_BEFORE_EVICTION,
    AGENT_PROTOCOL_ERROR_BURST,
    AGENT_PROTOCOL_ERRORS_PER_S,
    AGENT_REFUSAL_ANSWER_BURST,
    AGENT_REFUSAL_ANSWERS_PER_S,
    AGENT_REQUEST_BURST,
    AGENT_REQUESTS_IN_FLIGHT_MAX,
    AGENT_REQUESTS_PER_S,
    AGENTS_TRACKED_MAX,
)

__all__ = ["DEFAULT_ADMISSION", "AdmissionLimits", "AgentAdmission", "Verdict"]


class Verdict(enum.Enum):
    ADMIT = "admit"
    # Refuse, answering rate_limited.
    REFUSE = "refuse"
    # Refuse without answering (the refusal answers are spent too).
    DROP = "drop"
    # Drop, and this agent has flooded past its refusals: disconnect it.
    EVICT = "evict"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    requests_per_s: float
    request_burst: int
    in_flight_max: int
    protocol_errors_per_s: float
    protocol_error_burst: int
    refusal_answers_per_s: float
    refusal_answer_burst: int
    agents_tracked_max: int
    # Dropped requests of one agent (since its last admitted one) that make
    # it a flood to disconnect.
    evict_after_drops: int

    def __post_init__(self) -> None:
        assert 0 < self.requests_per_s <= self.request_burst
        assert self.in_flight_max > 0
        assert 0 < self.protocol_errors_per_s <= self.protocol_error_burst <= self.request_burst
        assert 0 < self.refusal_answers_per_s <= self.refusal_answer_burst
        assert self.agents_tracked_max > 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at_s: float

    def refill(self, *, rate_per_s: float, burst: int, now_s: float) -> None:
        elapsed_s = max(0.0, now_s - self.updated_at_s)
        self.tokens = min(float(burst), self.tokens + elapsed_s * rate_per_s)
        self.updated_at_s = now_s

    def take(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class _AgentState:
    requests: _Bucket
    protocol_errors: _Bucket
    refusal_answers: _Bucket
    in_flight: int = 0
    # Requests dropped unanswered since the last one admitted.
    dropped: int = 0
    # Until then the agent is refused (its protocol-error budget is spent)
    # and no refusal answer is due: its requests are dropped with no more
    # work than this comparison, however many a flood sends.
    dropping_until_s: float = 0.0


# The limits every signed-request service runs with unless told otherwise.
DEFAULT_ADMISSION = AdmissionLimits(
    requests_per_s=AGENT_REQUESTS_PER_S,
    request_burst=AGENT_REQUEST_BURST,
    in_flight_max=AGENT_REQUESTS_IN_FLIGHT_MAX,
    protocol_errors_per_s=AGENT_PROTOCOL_ERRORS_PER_S,
    protocol_error_burst=AGENT_PROTOCOL_ERROR_BURST,
    refusal_answers_per_s=AGENT_REFUSAL_ANSWERS_PER_S,
    refusal_answer_burst=AGENT_REFUSAL_ANSWER_BURST,
    agents_tracked_max=AGENTS_TRACKED_MAX,
    evict_after_drops=AGENT_DROPS_BEFORE_EVICTION,
)


class AgentAdmission:
    """The admission state of one worker's agents."""

    def __init__(self, limits: AdmissionLimits, /) -> None:
        self._limits = limits
        self._agents: OrderedDict[str, _AgentState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._agents)

    def admit(self, agent_id: str, /, *, now_s: float) -> Verdict:
        """Take a request of ``agent_id``; the caller calls ``finished`` for each ADMIT."""
        limits = self._limits
        state = self._state_of(agent_id, now_s=now_s)
        if now_s < state.dropping_until_s:
            return self._dropped(state)
        state.protocol_errors.refill(
            rate_per_s=limits.protocol_errors_per_s,
            burst=limits.protocol_error_burst,
            now_s=now_s,
        )
        state.requests.refill(
            rate_per_s=limits.requests_per_s, burst=limits.request_burst, now_s=now_s
        )
        if (
            state.protocol_errors.tokens >= 1.0
            and state.in_flight < limits.in_flight_max
            and state.requests.take()
        ):
            state.in_flight += 1
            state.dropped = 0
            return Verdict.ADMIT
        state.refusal_answers.refill(
            rate_per_s=limits.refusal_answers_per_s,
            burst=limits.refusal_answer_burst,
            now_s=now_s,
        )
        if state.refusal_answers.take():
            return Verdict.REFUSE
        if state.protocol_errors.tokens < 1.0:
            state.dropping_until_s = now_s + min(
                (1.0 - state.protocol_errors.tokens) / limits.protocol_errors_per_s,
                (1.0 - state.refusal_answers.tokens) / limits.refusal_answers_per_s,
            )
        return self._dropped(state)

    def _dropped(self, state: _AgentState) -> Verdict:
        state.dropped += 1
        return Verdict.EVICT if state.dropped == self._limits.evict_after_drops else Verdict.DROP

    def finished(self, agent_id: str, /) -> None:
        state = self._agents.get(agent_id)
        if state is not None and state.in_flight > 0:
            state.in_flight -= 1

    def protocol_error(self, agent_id: str, /, *, now_s: float) -> None:
        """Charge a request that failed the receiver's checks to its agent."""
        state = self._agents.get(agent_id)
        if state is not None:
            limits = self._limits
            state.protocol_errors.refill(
                rate_per_s=limits.protocol_errors_per_s,
                burst=limits.protocol_error_burst,
                now_s=now_s,
            )
            state.protocol_errors.take()

    def _state_of(self, agent_id: str, *, now_s: float) -> _AgentState:
        state = self._agents.get(agent_id)
        if state is not None:
            self._agents.move_to_end(agent_id)
            return state
        limits = self._limits
        state = _AgentState(
            requests=_Bucket(float(limits.request_burst), now_s),
            protocol_errors=_Bucket(float(limits.protocol_error_burst), now_s),
            refusal_answers=_Bucket(float(limits.refusal_answer_burst), now_s),
        )
        self._agents[agent_id] = state
        if len(self._agents) > limits.agents_tracked_max:
            self._agents.popitem(last=False)
        return state
