from __future__ import annotations

import pytest

from rung.router.decide import decide_by_length, fallback_order


@pytest.mark.parametrize(
    ("chars", "thresholds", "tiers", "tier", "reason"),
    [
        (10, [100, 1000], 3, 0, "length 10<=100"),
        (100, [100, 1000], 3, 0, "length 100<=100"),
        (101, [100, 1000], 3, 1, "length 101<=1000"),
        (5000, [100, 1000], 3, 2, "length 5000>1000"),
        (5000, [100], 3, 1, "length 5000>100"),
        (5, [], 2, 0, "length 5(single tier)"),
        (5, [], 1, 0, "length 5(single tier)"),
    ],
)
def test_length_rule(chars, thresholds, tiers, tier, reason):
    decision = decide_by_length(chars, thresholds, tiers)
    assert (decision.tier, decision.reason) == (tier, reason)


def test_fallback_goes_up_the_ladder_only():
    assert fallback_order(0, 3) == (0, 1, 2)
    assert fallback_order(2, 3) == (2,)
