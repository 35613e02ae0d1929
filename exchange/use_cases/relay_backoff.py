"""When the outbox relay may try again after its notices could not be sent (pure).

While NATS cannot take them (the worker's connection is down), a relay
that retried every sweep interval would re-send the same batch every
second and log a line per notice each time. Instead it waits: the delay starts at a minimum, doubles
after each failed pass up to a maximum, and returns to nothing after a pass
that published everything. Each change of delay is worth one log line; the
caller logs it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RelayBackoff"]


@dataclass(slots=True)
class RelayBackoff:
    """The relay's current delay (0: not backing off) and when it may next publish."""

    delay_min_ms: int
    delay_max_ms: int
    delay_ms: int = 0
    next_attempt_at_ms: int = 0

    def __post_init__(self) -> None:
        assert 0 < self.delay_min_ms <= self.delay_max_ms

    def ready(self, now_ms: int, /) -> bool:
        """Whether a relay pass may publish now."""
        return now_ms >= self.next_attempt_at_ms

    def failed(self, now_ms: int, /) -> bool:
        """A pass could not publish everything: wait longer. Whether the delay changed."""
        delay_ms = min(max(2 * self.delay_ms, self.delay_min_ms), self.delay_max_ms)
        changed = delay_ms != self.delay_ms
        self.delay_ms = delay_ms
        self.next_attempt_at_ms = now_ms + delay_ms
        return changed

    def retry_now(self) -> None:
        """A notice was sent again (a send after commit): the next pass may
        publish at once, keeping the delay in case it fails again."""
        self.next_attempt_at_ms = 0

    def succeeded(self) -> bool:
        """A pass published everything: no more waiting. Whether it was backing off."""
        was_backing_off = self.delay_ms > 0
        self.delay_ms = 0
        self.next_attempt_at_ms = 0
        return was_backing_off
