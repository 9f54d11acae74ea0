"""Goals -> the utility rule's lambda, met on validation data. Table-driven, pure."""

from __future__ import annotations

import numpy as np
import pytest

from rung.classifiers.goal import Point, curve, eased, meet
from rung.config import GoalConfig

CURVE = [
    Point(0.0, 1.00, 1.00),
    Point(0.1, 0.80, 0.99),
    Point(0.2, 0.55, 0.96),
    Point(0.3, 0.40, 0.93),
    Point(0.5, 0.20, 0.80),
    Point(2.0, 0.10, 0.65),
]


@pytest.mark.parametrize(
    ("goal", "lam"),
    [
        (GoalConfig(keep=0.95), 0.2),  # the cheapest point keeping >= 95%
        (GoalConfig(keep=0.99), 0.1),
        (GoalConfig(keep=0.5), 2.0),
        (GoalConfig(keep=1.0), 0.0),
        (GoalConfig(max_cost_share=0.5), 0.3),  # the most keeping point within the spend
        (GoalConfig(max_cost_share=0.2), 0.5),
        (GoalConfig(max_cost_share=0.05), 2.0),  # nothing that cheap: the cheapest there is
        (GoalConfig(max_cost_share=1.0), 0.0),
    ],
)
def test_meet(goal: GoalConfig, lam: float) -> None:
    assert meet(goal, CURVE).lam == lam


def test_an_unreachable_keep_gets_the_most_keeping_point() -> None:
    assert meet(GoalConfig(keep=1.0), CURVE[1:]).lam == 0.1


def test_curve_is_relative_to_the_dearest_tier() -> None:
    probabilities = np.array([[0.9, 0.95], [0.1, 0.9]])
    scores = np.array([[1.0, 1.0], [0.0, 1.0]])
    costs = np.array([[1.0, 4.0], [1.0, 4.0]])
    prices = np.array([1.0, 4.0])
    points = curve(probabilities, scores, costs, prices, (0.0, 0.2, 10.0))
    assert [(p.cost_share, p.keep) for p in points] == [(1.0, 1.0), (5 / 8, 1.0), (0.25, 0.5)]


def test_eased_goals_slide_to_the_cheapest_setting() -> None:
    goal = GoalConfig(keep=0.95)
    assert eased(goal, 0.0, 0.6) == goal
    assert eased(goal, 0.5, 0.6) == GoalConfig(keep=0.775)
    assert eased(goal, 1.0, 0.6) == GoalConfig(keep=0.6)
    assert eased(GoalConfig(max_cost_share=0.5), 0.5, 0.6) == GoalConfig(max_cost_share=0.25)
