from __future__ import annotations

import numpy as np
import pytest

from rung.classifiers.decision import (
    choose_tier,
    choose_tier_by_threshold,
    choose_tiers,
    choose_tiers_by_threshold,
)

PRICES = [0.1, 0.2, 0.6, 0.9]


@pytest.mark.parametrize(
    ("probs", "lam", "allowed", "tier", "reason"),
    [
        # lambda 0: the most probable tier, whatever it costs (cheapest on ties)
        ([0.5, 0.6, 0.7, 0.8], 0.0, None, 3, "most-likely"),
        ([0.8, 0.8, 0.8, 0.8], 0.0, None, 0, "cheapest-is-best"),
        # a dearer tier that is no better never wins: Mixtral (0.6) scores like Phi-3 (0.1)
        ([0.41, 0.45, 0.41, 0.64], 0.1, None, 3, "most-likely"),
        ([0.41, 0.45, 0.41, 0.64], 0.3, None, 1, "best-value"),
        # a large lambda buys the cheapest
        ([0.2, 0.5, 0.7, 0.9], 5.0, None, 0, "best-value"),
        # utilities at 0.5: 0.144, 0.389, 0.367, 0.4: the top tier, by a hair
        ([0.2, 0.5, 0.7, 0.9], 0.5, None, 3, "most-likely"),
        ([0.2, 0.5, 0.7, 0.85], 0.5, None, 1, "best-value"),
        # tier caps from a tenant's policy: costs are relative to the dearest *allowed* tier
        ([0.2, 0.5, 0.7, 0.9], 0.5, [0, 1], 1, "most-likely"),
        ([0.9, 0.5, 0.5, 0.5], 0.0, [1, 2], 1, "cheapest-is-best"),
    ],
)
def test_utility_rule(probs, lam, allowed, tier, reason):
    assert choose_tier(probs, PRICES, lam, allowed) == (tier, reason)


def test_utility_prices_not_positions_decide_what_is_cheapest():
    assert choose_tier([0.9, 0.9], [0.5, 0.1], 0.1) == (1, "cheapest-is-best")


def test_utility_never_picks_a_dearer_tier_that_is_no_better():
    rng = np.random.default_rng(1)
    probs = rng.random((2000, 4))
    prices = np.array(PRICES)
    for lam in (0.0, 0.05, 0.3, 1.0):
        choice = choose_tiers(probs, prices, lam)
        chosen = probs[np.arange(len(probs)), choice]
        for k in range(4):
            cheaper_and_as_good = (prices[k] < prices[choice]) & (probs[:, k] >= chosen)
            assert not cheaper_and_as_good.any()


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
def test_threshold_rule(probs, target, allowed, tier, reason):
    assert choose_tier_by_threshold(probs, PRICES, target, allowed) == (tier, reason)


def test_no_allowed_tier_is_an_error():
    with pytest.raises(ValueError, match="no tier"):
        choose_tier([0.5], [1.0], 0.5, allowed=[])
    with pytest.raises(ValueError, match="no tier"):
        choose_tier_by_threshold([0.5], [1.0], 0.5, allowed=[])


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    probs = rng.random((500, 4))
    prices = np.array(PRICES)
    for lam in (0.0, 0.1, 0.3, 0.7, 3.0):
        expected = [choose_tier(list(p), PRICES, lam)[0] for p in probs]
        assert choose_tiers(probs, prices, lam).tolist() == expected
    for target in (0.0, 0.3, 0.7, 0.95, 1.0):
        expected = [choose_tier_by_threshold(list(p), PRICES, target)[0] for p in probs]
        assert choose_tiers_by_threshold(probs, prices, target).tolist() == expected


@pytest.mark.parametrize(
    ("probabilities", "load", "want"),
    [
        # medium chosen; large as likely, within the margin, idle -> large takes it
        ([0.5, 0.9, 0.9], [0.0, 0.9, 0.1], 2),
        # medium not busy: stays
        ([0.5, 0.9, 0.9], [0.0, 0.5, 0.1], 1),
        # large idle but less likely to succeed: never at the cost of quality
        ([0.5, 0.9, 0.89], [0.0, 0.9, 0.1], 1),
        # small idle but much less likely: stays on medium
        ([0.2, 0.9, 0.9], [0.0, 0.9, 0.95], 1),
    ],
)
def test_a_busy_tier_gives_way_only_to_one_as_good(
    probabilities: list[float], load: list[float], want: int
) -> None:
    from rung.classifiers.decision import prefer_spare

    prices = [0.1, 0.2, 0.21]
    chosen, _ = choose_tier(probabilities, prices, 0.05, [0, 1, 2])
    assert chosen == 1
    assert prefer_spare(probabilities, prices, 0.05, chosen, [0, 1, 2], load) == want
