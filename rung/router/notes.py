"""What a request's handling noted for the edge (metrics, the request log line, the trace):
plain values."""

from __future__ import annotations

from dataclasses import dataclass, field

from rung.tenants.usage import UsageRecord


@dataclass
class Notes:
    request_id: str = ""
    upstream_id: str = ""
    """The id the backends were sent (x-request-id), one per request."""
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    """(stage, start, end) perf_counter: admit, decide, cache, backend / first_byte."""
    record: UsageRecord | None = None
    """The settled usage (None: refused before admission, e.g. 400, 401, 429)."""
    reason: str = ""
    """x-rung-route-reason."""
    forward: dict[str, str] = field(default_factory=dict)
    """Headers for the backends: the request id, and the trace context when tracing."""

    def mark(self, stage: str, start: float, end: float) -> None:
        self.spans.append((stage, start, end))

    @property
    def stages(self) -> dict[str, float]:
        """Seconds per stage; `cache` is the lookup's own time (a decision inside it is
        counted under `decide`)."""
        out = {name: end - start for name, start, end in self.spans}
        if "cache" in out and "decide" in out:
            (_, c0, c1), (_, d0, d1) = (self._span("cache"), self._span("decide"))
            if c0 <= d0 and d1 <= c1:
                out["cache"] -= d1 - d0
        return out

    def _span(self, stage: str) -> tuple[str, float, float]:
        return next(s for s in self.spans if s[0] == stage)
