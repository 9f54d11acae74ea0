"""Tenant policy resolution, the downshift rule, costs and keys: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from rung.config import GoalConfig, parse_config
from rung.errors import Unauthorized
from rung.tenants.keys import KeyRing, hash_key, new_key
from rung.tenants.periods import periods
from rung.tenants.policy import (
    budget_share,
    downshift,
    prompt_token_bound,
    request_cost,
    resolve_all,
)

TIERS = [
    {
        "name": n,
        "model": f"m-{n}",
        "price": {"input_per_mtok": 1, "output_per_mtok": 2},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }
    for n in ("tiny", "small", "large")
]


def config(**data: Any) -> Any:
    return parse_config({"tiers": TIERS, **data}, "<test>", {})


def test_tenant_policy_overrides_defaults_key_by_key() -> None:
    cfg = config(
        routing={"quality_target": 0.6},
        defaults={"max_tier": "small", "daily_budget_usd": 5, "requests_per_minute": 60},
        tenants=[
            {"name": "a", "keys": [hash_key("a" * 20)]},
            {
                "name": "b",
                "keys": ["b" * 20],
                "policy": {"max_tier": "large", "quality_target": 0.9},
            },
            {"name": "c", "keys": ["c" * 20], "policy": {"allowed_tiers": ["tiny", "large"]}},
        ],
    )
    policies = resolve_all(cfg)
    assert policies["a"].allowed == (0, 1)
    assert policies["a"].quality_target == 0.6
    assert policies["a"].daily_budget == 5_000_000  # micro-USD
    assert policies["b"].allowed == (0, 1, 2)
    assert policies["b"].quality_target == 0.9
    assert policies["b"].requests_per_minute == 60  # inherited
    assert policies["c"].allowed == (0,)  # large is above the default max_tier
    assert policies["a"].max_tokens == 4096
    assert policies["a"].goal is None  # the legacy rule, set at the routing level


def test_the_most_specific_level_that_states_a_rule_wins() -> None:
    cfg = config(
        routing={"goal": {"keep": 0.9}},
        defaults={"quality_target": 0.5},
        tenants=[
            {"name": "a", "keys": ["a" * 20]},
            {"name": "b", "keys": ["b" * 20], "policy": {"goal": {"max_cost_share": 0.4}}},
        ],
    )
    policies = resolve_all(cfg)
    assert (policies["a"].goal, policies["a"].quality_target) == (None, 0.5)  # defaults win
    assert policies["b"].goal == GoalConfig(max_cost_share=0.4)
    assert policies["b"].quality_target is None
    bare = resolve_all(config(tenants=[{"name": "a", "keys": ["a" * 20]}]))["a"]
    assert bare.goal == GoalConfig(keep=0.95)  # nothing stated: keep 95% of the top tier


@pytest.mark.parametrize(
    "data",
    [
        {"routing": {"goal": {"keep": 0.9}, "quality_target": 0.5}},
        {"routing": {"goal": {"keep": 0.9, "max_cost_share": 0.5}}},
        {"routing": {"goal": {}}},
        {"routing": {"goal": {"keep": 1.5}}},
        {"defaults": {"goal": {"keep": 0.9}, "quality_target": 0.5}},
    ],
)
def test_a_goal_is_one_clear_statement(data: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"exactly one|not both|less than or equal"):
        config(**data)


def test_downshift_eases_a_goal_all_the_way_at_the_budget() -> None:
    cfg = config(defaults={"daily_budget_usd": 1, "goal": {"keep": 0.95}})
    policy = resolve_all(
        config(**cfg.model_dump(include={"defaults"}), tenants=[{"name": "a", "keys": ["k" * 20]}])
    )["a"]
    eased = [downshift(policy, share)[0].eased for share in (0.5, 0.8, 0.9, 1.0)]
    assert eased == [0.0, 0.0, pytest.approx(0.5), 1.0]
    assert downshift(policy, 0.9)[0].goal == GoalConfig(keep=0.95)  # the chooser eases it


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"defaults": {"max_tier": "huge"}}, "no tier named 'huge'"),
        ({"tenants": [{"name": "a", "keys": ["k" * 20]}, {"name": "a"}]}, "declared twice"),
        (
            {"tenants": [{"name": "a", "keys": ["k" * 20]}, {"name": "b", "keys": ["k" * 20]}]},
            "used by two tenants",
        ),
        ({"tenants": [{"name": "a", "keys": ["short"]}]}, "at least 16"),
        ({"tenants": [{"name": "a", "keys": ["sha256:abc"]}]}, "64 lower-case hex"),
        ({"auth": {"open_tenant": "nobody"}}, "no tenant named 'nobody'"),
        ({"limits": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ],
)
def test_invalid_tenant_configs_say_what_is_wrong(data: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        config(**data)


def test_downshift_lowers_target_and_top_tier_through_the_band() -> None:
    cfg = config(defaults={"daily_budget_usd": 1, "quality_target": 0.8, "downshift_from": 0.5})
    policy = resolve_all(
        config(**cfg.model_dump(include={"defaults"}), tenants=[{"name": "a", "keys": ["k" * 20]}])
    )["a"]
    steps = [downshift(policy, share) for share in (0.0, 0.49, 0.5, 0.75, 0.9, 1.0, 1.2)]
    assert [p.allowed for p, _ in steps] == [
        (0, 1, 2),
        (0, 1, 2),
        (0, 1, 2),
        (0, 1),
        (0,),
        (0,),
        (0,),
    ]
    assert [p.quality_target for p, _ in steps] == [0.8, 0.8, 0.8, 0.4, 0.16, 0.0, 0.0]
    assert [round(x, 2) for _, x in steps] == [0, 0, 0, 0.5, 0.8, 1.0, 1.0]
    reject = resolve_all(
        config(
            defaults={"daily_budget_usd": 1, "on_budget": "reject"},
            tenants=[{"name": "a", "keys": ["k" * 20]}],
        )
    )["a"]
    assert downshift(reject, 0.99) == (reject, 0.0)


def test_budget_share_costs_and_bounds() -> None:
    cfg = config(
        tenants=[
            {
                "name": "a",
                "keys": ["k" * 20],
                "policy": {"daily_budget_usd": 2, "monthly_budget_usd": 10},
            }
        ]
    )
    policy = resolve_all(cfg)["a"]
    assert budget_share(policy, 1_000_000, 1_000_000) == 0.5  # day: 1 of 2 USD
    assert budget_share(policy, 0, 9_000_000) == 0.9  # month: 9 of 10
    assert request_cost(1000, 500, 0.5, 1.5) == 1250  # micro-USD
    assert request_cost(1, 0, 0.3, 0) == 1  # rounded up, never under
    assert prompt_token_bound(100, 2) == 100 + 16 + 16


def test_keys_are_random_hashed_and_checked() -> None:
    key = new_key()
    assert key.startswith("rung-")
    assert len(key) > 40
    assert new_key() != key
    cfg = config(
        tenants=[{"name": "a", "keys": [hash_key(key)]}, {"name": "b", "keys": ["b" * 20]}]
    )
    ring = KeyRing(cfg.tenants)
    assert ring.tenant_for(f"Bearer {key}") == "a"
    assert ring.tenant_for("bearer " + "b" * 20) == "b"
    for header in (None, "", "Bearer", f"Basic {key}", "Bearer nope-nope-nope-nope"):
        with pytest.raises(Unauthorized):
            ring.tenant_for(header)
    assert KeyRing(cfg.tenants, open_tenant="b").tenant_for(None) == "b"


def test_periods_roll_over_in_the_configured_zone() -> None:
    moment = 1_796_083_200.0  # 2026-12-01 00:00 UTC
    assert periods(moment, "UTC") == ("2026-12-01", "2026-12")
    assert periods(moment, "America/New_York") == ("2026-11-30", "2026-11")


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        (10, 5, (10, 5)),
        (0, 0, (0, 0)),
        (100, 20, (100, 20)),  # exactly the bounds
        (101, 5, None),  # more prompt than the request had
        (10, 21, None),  # more than max_tokens for every choice
        (-1_000_000, 5, None),
        (10, -1, None),
        (10**12, 10**12, None),
        (3.5, 5, None),
        ("7", 5, None),
        (True, 5, None),
        (None, 5, None),
        (None, None, None),
    ],
)
def test_only_believable_usage_is_believed(prompt, completion, expected):
    from rung.tenants.policy import checked_usage

    assert checked_usage(prompt, completion, 100, 20) == expected


def test_a_stream_without_usage_is_estimated_from_what_was_relayed():
    from rung.tenants.policy import estimated_tokens

    assert estimated_tokens(chars=18, pieces=4) == 5  # 18 characters: ceil(18 / 4)
    assert estimated_tokens(chars=3, pieces=3) == 3  # never fewer than the pieces
    assert estimated_tokens(chars=0, pieces=0) == 0
