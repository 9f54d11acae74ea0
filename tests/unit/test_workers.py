"""Several workers share nothing in memory: what `rung serve --workers N` accepts."""

from __future__ import annotations

from typing import Any

import pytest

from rung.config import parse_config
from rung.errors import RungError
from rung.router.checks import check_workers

TIERS = [
    {
        "name": n,
        "model": f"m-{n}",
        "price": {"input_per_mtok": 1, "output_per_mtok": 2},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }
    for n in ("small", "large")
]
KEY = "k" * 32


def config(**data: Any) -> Any:
    return parse_config({"tiers": TIERS, "routing": {"policy": "length"}, **data}, "<t>", {})


def tenant(**policy: Any) -> list[dict[str, Any]]:
    return [{"name": "acme", "keys": [KEY], "policy": policy}]


@pytest.mark.parametrize(
    "policy",
    [{"daily_budget_usd": 1.0}, {"monthly_budget_usd": 5.0}, {"requests_per_minute": 60}],
)
def test_limits_counted_in_memory_are_refused_with_several_workers(
    policy: dict[str, Any],
) -> None:
    cfg = config(tenants=tenant(**policy), cache={"enabled": False})
    assert check_workers(cfg, 1) == []
    with pytest.raises(RungError, match=r"acme.*limits\.store: redis"):
        check_workers(cfg, 2)


def test_limits_in_redis_are_exact_across_workers() -> None:
    cfg = config(
        tenants=tenant(daily_budget_usd=1.0, tokens_per_minute=1000),
        limits={"store": "redis"},
        cache={"enabled": False},
    )
    assert check_workers(cfg, 4) == []


def test_unmetered_tenants_need_no_shared_store() -> None:
    cfg = config(tenants=tenant(max_tier="small"), cache={"enabled": False})
    assert check_workers(cfg, 2) == []


def test_a_memory_cache_with_several_workers_is_a_warning_not_an_error() -> None:
    warned = check_workers(config(), 2)
    assert len(warned) == 1
    assert "cache.store: redis" in warned[0]
    assert check_workers(config(cache={"store": "redis"}), 2) == []
