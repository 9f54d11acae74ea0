"""The dashboard's figures from usage records (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from rung.tenants.report import DAY, HOUR, percentile, tenant_view

NOW = 1_800_000_000.0


def record(age_s: float, cost: int, top: int, **extra: Any) -> dict[str, Any]:
    base = {"time": NOW - age_s, "cost": cost, "top_tier_cost": top, "tier": "small",
            "cache": "miss", "escalated": None, "status": 200, "latency_ms": 10.0}  # fmt: skip
    return base | extra


def test_totals_rates_and_mix_over_the_window() -> None:
    records = [
        record(60, 100, 900),
        record(120, 0, 0, cache="hit-exact", latency_ms=1.0),
        record(3 * HOUR, 900, 900, tier="large", escalated="small->large", latency_ms=50.0),
        record(2 * DAY, 500, 500, status=502, tier="large"),
        record(8 * DAY, 10**6, 10**6),  # outside the 7 days
    ]
    view = tenant_view(records, NOW, 7)
    assert view["requests"] == 4
    assert view["cost_usd"] == pytest.approx(1500 / 1e6)
    assert view["top_tier_cost_usd"] == pytest.approx(2300 / 1e6)
    assert view["saved_usd"] == pytest.approx(800 / 1e6)
    assert view["saved_share"] == pytest.approx(800 / 2300)
    assert view["tier_mix"] == {"large": 2, "small": 2}
    assert (view["cache_hit_rate"], view["escalation_rate"], view["error_rate"]) == (
        0.25, 0.25, 0.25)  # fmt: skip
    assert view["latency_ms"] == {"p50": 10.0, "p99": 50.0}
    assert view["bucket_s"] == DAY
    assert len(view["series"]) in (8, 9)  # every day of the window, empty ones too
    assert sum(s["requests"] for s in view["series"]) == 4
    assert sum(s["cost_usd"] for s in view["series"]) == pytest.approx(1500 / 1e6)


def test_a_short_window_is_hourly_and_empty_is_not_a_division_by_zero() -> None:
    view = tenant_view([], NOW, 1)
    assert view["bucket_s"] == HOUR
    assert len(view["series"]) in (24, 25)
    assert view["requests"] == 0
    assert view["saved_share"] is None
    assert view["cache_hit_rate"] is None
    assert view["latency_ms"] == {"p50": None, "p99": None}


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0)  # fmt: skip
    assert percentile([], 50) is None
