"""What a request's handling noted for the edge (metrics, the request log line): plain values."""

from __future__ import annotations

from dataclasses import dataclass, field

from rung.tenants.usage import UsageRecord


@dataclass
class Notes:
    request_id: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: admit, decide, cache, backend / first_byte."""
    record: UsageRecord | None = None
    """The settled usage (None: refused before admission, e.g. 400, 401, 429)."""
    reason: str = ""
    """x-rung-route-reason."""
