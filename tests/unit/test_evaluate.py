from __future__ import annotations

import numpy as np
import pytest

from rung.classifiers.evaluate import (
    calibration_error,
    cost_at,
    envelope,
    oracle_points,
    replay,
    score_at,
    summarize,
    tier_points,
)
from rung.classifiers.goal import curve


def test_envelope_keeps_the_concave_frontier():
    points = [(0.1, 0.5), (0.3, 0.55), (0.5, 0.8), (1.0, 0.9), (0.9, 0.6)]
    assert envelope(points) == [(0.1, 0.5), (0.5, 0.8), (1.0, 0.9)]


def test_cost_at_interpolates_by_mixing():
    points = [(0.2, 0.6), (1.0, 1.0)]
    assert cost_at(points, 0.8) == pytest.approx(0.6)
    assert cost_at(points, 0.5) == pytest.approx(0.2)
    assert cost_at(points, 1.01) == float("inf")
    assert score_at(points, 0.6) == pytest.approx(0.8)
    assert score_at(points, 0.1) == 0.0
    assert score_at(points, 2.0) == pytest.approx(1.0)


# Three prompts, two tiers (price 1 and 3, every call 4 chars so cost = price * 1e-6).
SCORES = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
COSTS = np.array([[1.0, 3.0], [1.0, 3.0], [1.0, 3.0]]) * 1e-6
PRICES = np.array([1.0, 3.0])


def test_replay_and_reference_points():
    assert replay(np.array([0, 1, 0]), SCORES, COSTS) == pytest.approx((5 / 9, 2 / 3))
    assert np.allclose(tier_points(SCORES, COSTS), [(1 / 3, 1 / 3), (1.0, 2 / 3)])
    # oracle: prompt 0 small, 1 large, 2 cheapest (nobody is right)
    assert oracle_points(SCORES, COSTS, PRICES)[1] == pytest.approx((5 / 9, 2 / 3))


def test_a_perfect_router_matches_the_oracle_and_beats_the_baseline():
    perfect = np.array([[0.99, 0.99], [0.01, 0.99], [0.01, 0.01]])
    metrics = summarize(perfect, SCORES, COSTS, PRICES)
    assert metrics["router"]["cost_at_95"] == pytest.approx(metrics["oracle"]["cost_at_95"])
    assert metrics["router"]["cost_at_95"] < metrics["baseline"]["cost_at_95"]
    # some lambda sends the hopeless prompt and the easy one to the cheap tier, the other up
    best = min((p for p in metrics["sweep"] if p["score"] == pytest.approx(2 / 3)),
               key=lambda p: p["cost"])  # fmt: skip
    assert best["shares"] == pytest.approx([2 / 3, 1 / 3])


def test_goals_are_met_on_validation_and_reported_on_held_out_data():
    perfect = np.array([[0.99, 0.99], [0.01, 0.99], [0.01, 0.01]])
    validation = curve(perfect, SCORES, COSTS, PRICES)
    metrics = summarize(perfect, SCORES, COSTS, PRICES, validation)
    by_goal = {g["goal"]: g for g in metrics["goals"]}
    keep = by_goal["keep:0.95"]
    assert keep["validation"]["keep"] >= 0.95
    assert keep["validation"]["met"] is True
    held = keep["held_out"]
    # same data here: same figures, inside their own bootstrap intervals
    assert (held["keep"], held["cost_share"]) == (
        keep["validation"]["keep"],
        keep["validation"]["cost_share"],
    )
    assert held["keep_95"][0] <= held["keep"] <= held["keep_95"][1]
    assert held["cost_share_95"][0] <= held["cost_share"] <= held["cost_share_95"][1]
    assert held["prompts"] == 3
    assert by_goal["max_cost_share:0.5"]["validation"]["cost_share"] <= 0.5
    # nothing spends only 30% here: the goal gets the cheapest point there is, and says it
    # missed (it used to print "met" beside a cost share over the goal)
    cheapest = min(p.cost_share for p in validation)
    missed = by_goal["max_cost_share:0.3"]["validation"]
    assert missed["cost_share"] == cheapest > 0.3
    assert missed["met"] is False


def test_a_keep_over_one_is_explained_not_promised():
    from rung.classifiers.goal import keeps

    assert keeps(0.931, "large") == "keeps 93.1% of large's score"
    over = keeps(1.067, "large")
    assert over.startswith("keeps all of large's score (106.7%")
    assert "cheaper tiers are right on some prompts large gets wrong" in over


def test_calibration_error():
    assert calibration_error(
        np.array([0.8] * 10), np.array([1.0] * 8 + [0.0] * 2)
    ) == pytest.approx(0.0)
    assert calibration_error(
        np.array([0.9] * 10), np.array([1.0] * 5 + [0.0] * 5)
    ) == pytest.approx(0.4)
