"""The savings dashboard's figures from usage records. Pure: records in, a JSON-able view out."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

MICRO = 1_000_000
HOUR, DAY = 3600, 86400


def bucket_seconds(days: float) -> int:
    """Hourly buckets up to two days, daily beyond."""
    return HOUR if days <= 2 else DAY


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _empty() -> dict[str, float]:
    return {"cost_usd": 0.0, "top_tier_cost_usd": 0.0, "requests": 0}


def tenant_view(records: Iterable[dict[str, Any]], now: float, days: float) -> dict[str, Any]:
    """One tenant's figures over the last `days`: spend vs the top-tier counterfactual (totals
    and per bucket), tier mix, cache hit rate, escalation rate, latency percentiles."""
    since = now - days * DAY
    step = bucket_seconds(days)
    first = int(since // step) * step
    series: dict[int, dict[str, float]] = {t: _empty() for t in range(first, int(now) + 1, step)}
    tiers: Counter[str] = Counter()
    cost = top = 0
    requests = hits = escalated = errors = 0
    latencies: list[float] = []
    for r in records:
        if r["time"] < since:
            continue
        requests += 1
        cost += r["cost"]
        top += r["top_tier_cost"]
        tiers[r.get("tier") or "none"] += 1
        hits += bool(r.get("cache") and str(r["cache"]).startswith("hit"))
        escalated += bool(r.get("escalated"))
        errors += r["status"] >= 500
        latencies.append(float(r["latency_ms"]))
        slot = series.setdefault(int(r["time"] // step) * step, _empty())
        slot["cost_usd"] += r["cost"] / MICRO
        slot["top_tier_cost_usd"] += r["top_tier_cost"] / MICRO
        slot["requests"] += 1
    return {
        "requests": requests,
        "cost_usd": cost / MICRO,
        "top_tier_cost_usd": top / MICRO,
        "saved_usd": (top - cost) / MICRO,
        "saved_share": (top - cost) / top if top else None,
        "tier_mix": dict(sorted(tiers.items())),
        "cache_hit_rate": hits / requests if requests else None,
        "escalation_rate": escalated / requests if requests else None,
        "error_rate": errors / requests if requests else None,
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "bucket_s": step,
        "series": [{"t": t, **v} for t, v in sorted(series.items())],
    }
