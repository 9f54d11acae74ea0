"""Prometheus metrics: what rung served, what it cost, what the top tier would have cost, where
the time went, and the health of what it depends on.

One `Metrics` per app (it outlives config reloads, so counters never restart on a reload). Label
values are bounded: tenants and tiers are configured names, route reasons are reduced to their
class (`classifier`, `pinned`, ...), statuses are numbers. Several workers (`rung serve
--workers N`) share one exposition through prometheus_client's multiprocess mode: `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, and a scrape of any
worker sums every worker's counters and histograms. Gauges about backends and stores are read at
scrape time from the worker that answers it.

Updates are batched (rung.router.tally): applied a second after they happen and before every
scrape, so a scrape of one process is exact and, with several workers, another worker's last
second may be missing from it. Shadow checks are counted too (`rung_shadow_checks_total`), so
their agreement can be pooled over workers and replicas; the shadow gauges are per worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from rung.router.tally import Tally
from rung.tenants.usage import UsageRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STAGES = ("admit", "decide", "cache", "backend", "first_byte")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REASONS = ("classifier", "pinned", "length", "tenant", "cache", "sticky")
MICRO = 1_000_000


def reason_class(reason: str) -> str:
    """`classifier small=0.90 ...` -> `classifier`: the bounded part of a route reason."""
    word = reason.split(" ", 1)[0].split(":", 1)[0]
    return word if word in REASONS else ("none" if not word else "other")


class Metrics:
    def __init__(self, state: Callable[[], dict[str, Any]] | None = None) -> None:
        """`state`: called at scrape time for the backend and store gauges (see `_Health`)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "rung_requests",
            "Requests settled (answered, failed or served from the cache)",
            ["tenant", "tier", "reason", "cache", "status", "escalated"],
            registry=r,
        )
        self.responses = Counter(
            "rung_http_responses",
            "Every response of the completion routes, by status (rejections before routing too)",
            ["route", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "rung_tokens", "Tokens by tier", ["tenant", "tier", "kind"], registry=r
        )
        self.cost = Counter(
            "rung_cost_usd", "USD charged for what was served", ["tenant", "tier"], registry=r
        )
        self.top_cost = Counter(
            "rung_top_tier_cost_usd",
            "USD the same tokens would have cost on the tenant's top tier (the counterfactual)",
            ["tenant"],
            registry=r,
        )
        self.escalations = Counter(
            "rung_escalations", "Answers escalated to a higher tier", ["tenant", "step"], registry=r
        )
        self.unreliable_usage = Counter(
            "rung_usage_unreliable",
            "Answers charged without believable usage from the backend: `invalid` (negative, "
            "absurd: charged the reservation), `missing` (none: the reservation), `estimated` "
            "(a stream without usage, or one the client left: charged what was relayed)",
            ["tier", "kind"],
            registry=r,
        )
        self.shadow_checks = Counter(
            "rung_shadow_checks",
            "Routed answers checked against the reference tier, by whether they agreed with it "
            "(summed over workers, unlike the rung_shadow_* gauges)",
            ["tenant", "tier", "agreed"],
            registry=r,
        )
        self.latency = Histogram(
            "rung_request_seconds",
            "Whole request, first byte in to last byte out",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.stages = Histogram(
            "rung_stage_seconds",
            "Time per pipeline stage: admit, decide (embed + classify), cache (lookup), "
            "backend (whole answer, or until the stream opened), first_byte (streams)",
            ["stage"],
            buckets=BUCKETS,
            registry=r,
        )
        self._stage = {name: self.stages.labels(name) for name in STAGES}
        self._responses: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._settled: dict[tuple[Any, ...], tuple[Any, Any, Any, Any, Any, list[Any]]] = {}
        self._state = state
        self.tally = Tally()
        """Updates are applied in batches (see rung.router.tally); `render` flushes first."""
        if state is not None:
            r.register(_Health(state))

    def stage(self, name: str, seconds: float) -> None:
        self.tally.observe(self._stage[name], seconds)

    def response(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._responses.get(key)
        if children is None:
            children = (self.responses.labels(route, str(status)), self.latency.labels(route))
            self._responses[key] = children
        tally = self.tally
        tally.inc(children[0])
        tally.observe(children[1], seconds)

    def settled(self, record: UsageRecord, reason: str) -> None:
        """One settled request. The labelled children are looked up once per label set (the
        sets are bounded: configured names, a few statuses), not built per request."""
        tier = record.tier or "none"
        escalated = record.escalated
        key = (record.tenant, tier, reason_class(reason), record.cache, record.status, escalated)
        children = self._settled.get(key)
        if children is None:
            children = self._children(record.tenant, tier, key[2], record.cache, record.status,
                                      escalated)  # fmt: skip
            self._settled[key] = children
        requests, prompt, completion, cost, top, escalations = children
        tally = self.tally
        tally.inc(requests)
        if record.prompt_tokens:
            tally.inc(prompt, record.prompt_tokens)
        if record.completion_tokens:
            tally.inc(completion, record.completion_tokens)
        tally.inc(cost, record.cost / MICRO)
        tally.inc(top, record.top_tier_cost / MICRO)
        for step in escalations:
            tally.inc(step)
        unreliable = record.extra.get("usage") if record.extra else None
        if unreliable is not None:
            tally.inc(self.unreliable_usage.labels(tier, str(unreliable)))

    def shadow_checked(self, tenant: str, tier: str, agreed: bool) -> None:
        """One shadow check completed (rare: a share of routed answers)."""
        self.tally.inc(self.shadow_checks.labels(tenant, tier, "yes" if agreed else "no"))

    def _children(
        self,
        tenant: str,
        tier: str,
        reason: str,
        cache: str | None,
        status: int,
        escalated: str | None,
    ) -> tuple[Any, Any, Any, Any, Any, list[Any]]:
        return (
            self.requests.labels(
                tenant, tier, reason, cache or "off", str(status), "yes" if escalated else "no"
            ),
            self.tokens.labels(tenant, tier, "prompt"),
            self.tokens.labels(tenant, tier, "completion"),
            self.cost.labels(tenant, tier),
            self.top_cost.labels(tenant),
            [self.escalations.labels(tenant, s) for s in (escalated or "").split(",") if s],
        )

    def render(self) -> bytes:
        """The exposition: this process's registry, or every worker's through the directory."""
        self.tally.flush()
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        if self._state is not None:
            registry.register(_Health(self._state))
        return generate_latest(registry)


class _Health(Collector):
    """Backend replicas and stores as this worker sees them, read when scraped. `state()`
    returns {"tiers": describe(pools), "cache": cache.health() | None, "limits": gate.health()}."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        up = GaugeMetricFamily(
            "rung_backend_up", "Replica answered its last health check", labels=["tier", "replica"]
        )
        rotation = GaugeMetricFamily(
            "rung_backend_in_rotation",
            "Replica's circuit breaker lets requests through (0: open)",
            labels=["tier", "replica"],
        )
        outstanding = GaugeMetricFamily(
            "rung_backend_outstanding", "Requests in flight", labels=["tier", "replica"]
        )
        for tier in state.get("tiers", []):
            for replica in tier["replicas"]:
                labels = [tier["tier"], replica["replica"]]
                up.add_metric(labels, float(bool(replica["reachable"])))
                rotation.add_metric(labels, float(bool(replica["in_rotation"])))
                outstanding.add_metric(labels, float(replica["outstanding"]))
        yield from (up, rotation, outstanding)
        available = GaugeMetricFamily(
            "rung_store_available", "Store reachable (cache, limits)", labels=["store"]
        )
        errors = CounterMetricFamily(
            "rung_store_errors", "Store operations that failed", labels=["store"]
        )
        for name in ("cache", "limits"):
            health = state.get(name)
            if health:
                available.add_metric([name], float(bool(health["available"])))
                errors.add_metric([name], float(health["errors"]))
        yield from (available, errors)
        yield from _shadow_gauges(state.get("shadow") or {})
        cache = state.get("cache")
        if cache:
            entries = GaugeMetricFamily(
                "rung_cache_indexed_entries", "Entries in this worker's semantic index"
            )
            entries.add_metric([], float(cache["indexed"]))
            yield entries


def _shadow_gauges(shadow: dict[str, Any]) -> Iterator[Metric]:
    """What shadow checks estimate routing keeps, per tenant (this worker's samples)."""
    keeps = GaugeMetricFamily(
        "rung_shadow_keeps",
        "Estimated share of the reference tier's answers kept",
        labels=["tenant"],
    )
    lower = GaugeMetricFamily(
        "rung_shadow_keeps_lower", "Lower 95% bound of rung_shadow_keeps", labels=["tenant"]
    )
    goal = GaugeMetricFamily(
        "rung_shadow_goal_keep",
        "The tenant's routing goal (keep); alert when lower < goal",
        labels=["tenant"],
    )
    sampled = GaugeMetricFamily(
        "rung_shadow_sampled",
        "Answers checked against the reference tier",
        labels=["tenant", "tier"],
    )
    agreement = GaugeMetricFamily(
        "rung_shadow_agreement",
        "Share of checked answers that agree with the reference",
        labels=["tenant", "tier"],
    )
    held = GaugeMetricFamily(
        "rung_shadow_held_back",
        "1 while the shadow guard holds this tier back from the tenant's routed requests",
        labels=["tenant", "tier"],
    )
    for tenant, view in shadow.items():
        for tier in view.get("held_back", ()):
            held.add_metric([tenant, tier], 1.0)
        if view.get("keeps") is not None:
            keeps.add_metric([tenant], float(view["keeps"]))
            lower.add_metric([tenant], float(view["keeps_ci95"][0]))
        if view.get("goal_keep") is not None:
            goal.add_metric([tenant], float(view["goal_keep"]))
        for tier, t in view.get("tiers", {}).items():
            sampled.add_metric([tenant, tier], float(t["sampled"]))
            if t["agreement"] is not None:
                agreement.add_metric([tenant, tier], float(t["agreement"]))
    yield from (keeps, lower, goal, sampled, agreement, held)
