"""What the pipeline decided for a request (`Plan`) and what it did (`Served`, `Call`): plain
values for headers, accounting and logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rung.cache.keys import CacheKey
from rung.cache.semantic import Lookup
from rung.confidence.signals import Signals
from rung.config import RungConfig
from rung.router.cascading import Judging

DEFAULT_TENANT = "default"
"""A request's tenant when no tenants are configured."""


@dataclass(frozen=True)
class Plan:
    order: tuple[int, ...]
    """Tiers to try, in order (empty for a cache hit)."""
    reason: str
    decided: int
    tenant: str = DEFAULT_TENANT
    key: CacheKey | None = None
    """The request's cache key when it may be looked up or stored."""
    cache: Lookup | None = None
    vector: np.ndarray | None = None
    route_key: str = ""
    judging: Judging | None = None
    """How each answer is judged and where the request escalates (None: the first answer is
    served)."""
    deadline: float = 0.0
    """The request's deadline (loop time) across fallbacks and escalations."""
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """(start, end) perf_counter of `decide` (embed + classify) and `cache` (the lookup, which
    may contain the decision)."""
    forward: dict[str, str] | None = None
    """Headers sent on to the backends with this request (request id, trace context)."""
    conversation: str | None = None
    """A later turn's conversation key (its tier was looked up: sticky upward)."""
    sticky: bool = False
    """Remember the answering tier for this conversation."""
    prompt_tokens: int = 0
    """The prompt's estimated tokens (each tier's max_tokens is fitted to its window)."""
    adapters: dict[int, str] = field(default_factory=dict)
    """Per tier index, the tenant's LoRA adapter (by name), sent instead of the base model."""
    routed: bool = False
    """The router chose the tier (not pinned by the client, not a cache hit)."""


@dataclass
class Call:
    """One backend answer this request paid for."""

    tier: int
    usage: dict[str, Any] | None
    tokens_seen: int = 0
    """For a stream abandoned by an escalation probe: tokens read before cancelling it."""
    text: str | None = None
    """The answer escalated away from (JSON answers; for the shadow records, never logged)."""
    signals: Signals | None = None
    """Its confidence signals, when the backend sent logprobs."""


@dataclass
class Served:
    """What the pipeline did for one request, for headers, logs and later for accounting."""

    tier: int = -1
    model: str = ""
    reason: str = ""
    fallback: list[str] = field(default_factory=list)
    cache: str | None = None
    """x-rung-cache: hit-exact | hit-semantic | miss | bypass (None: the cache is off)."""
    tried: list[str] = field(default_factory=list)
    """Every tier called, in order."""
    similarity: float | None = None
    escalated: list[str] = field(default_factory=list)
    """`from->to` for each escalation."""
    confidence: float | None = None
    """The last judged answer's confidence."""
    calls: list[Call] = field(default_factory=list)
    """Answers escalated away from (the final answer is accounted separately)."""
    signals: Signals | None = None
    """The served answer's confidence signals, when it was judged with logprobs."""

    def headers(self, config: RungConfig) -> dict[str, str]:
        headers = {
            "x-rung-tier": config.tiers[self.tier].name,
            "x-rung-model": self.model,
            "x-rung-route-reason": self.reason,
        }
        if self.fallback:
            headers["x-rung-fallback"] = "; ".join(self.fallback)
        if self.cache is not None:
            headers["x-rung-cache"] = self.cache
        if self.similarity is not None:
            headers["x-rung-cache-similarity"] = f"{self.similarity:.4f}"
        if self.escalated:
            headers["x-rung-escalated"] = ",".join(self.escalated)
        if self.confidence is not None:
            headers["x-rung-confidence"] = f"{self.confidence:.3f}"
        return headers
