"""Circuit breaker for one replica: consecutive failures take it out of rotation for a cooldown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Breaker:
    threshold: int
    cooldown_s: float
    failures: int = 0
    open_until: float | None = None

    def allows(self, now: float) -> bool:
        """Closed, or open but cooled down (half-open: a trial call may go through)."""
        return self.open_until is None or now >= self.open_until

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = None

    def record_failure(self, now: float) -> None:
        self.failures += 1
        # A failed trial call while half-open re-opens at once.
        if self.failures >= self.threshold or self.open_until is not None:
            self.open_until = now + self.cooldown_s

    def trip(self, now: float) -> None:
        """Open immediately (a health probe found the replica unreachable)."""
        self.failures = max(self.failures, self.threshold)
        self.open_until = now + self.cooldown_s
