from __future__ import annotations

import numpy as np
import pytest

from rung.classifiers.decision import choose_tier, choose_tiers

PRICES = [0.1, 0.2, 0.6, 0.9]


@pytest.mark.parametrize(
    ("probs", "target", "allowed", "tier", "reason"),
    [
        ([0.9, 0.95, 0.97, 0.99], 0.8, None, 0, "meets-target"),
        ([0.5, 0.85, 0.97, 0.99], 0.8, None, 1, "meets-target"),
        ([0.5, 0.6, 0.7, 0.79], 0.8, None, 3, "best-available"),
        ([0.5, 0.75, 0.7, 0.6], 0.8, None, 1, "best-available"),  # bigger is not always better
        ([0.9, 0.95, 0.97, 0.99], 0.8, [2, 3], 2, "meets-target"),  # tier cap from policy
        ([0.9, 0.5, 0.5, 0.5], 0.95, [1, 2], 1, "best-available"),  # ties: the cheapest
        ([0.8, 0.8, 0.8, 0.8], 0.8, None, 0, "meets-target"),  # >= is inclusive
        ([0.0, 0.0, 0.0, 0.0], 0.0, None, 0, "meets-target"),
    ],
)
def test_choose_tier(probs, target, allowed, tier, reason):
    assert choose_tier(probs, PRICES, target, allowed) == (tier, reason)


def test_prices_not_positions_decide_what_is_cheapest():
    assert choose_tier([0.9, 0.9], [0.5, 0.1], 0.8) == (1, "meets-target")


def test_no_allowed_tier_is_an_error():
    with pytest.raises(ValueError, match="no tier"):
        choose_tier([0.5], [1.0], 0.5, allowed=[])


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    probs = rng.random((500, 4))
    prices = np.array(PRICES)
    for target in (0.0, 0.3, 0.7, 0.95, 1.0):
        expected = [choose_tier(list(p), PRICES, target)[0] for p in probs]
        assert choose_tiers(probs, prices, target).tolist() == expected
