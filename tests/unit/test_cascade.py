"""The cascade policy, pure: where a request starts, when it climbs, and that the fast sweep
over parameters judges exactly what the one-request functions do."""

from __future__ import annotations

import numpy as np
import pytest

from rung.classifiers import cascade
from rung.classifiers.goal import meet
from rung.config import GoalConfig


def held(n: int = 300, seed: int = 0) -> cascade.Held:
    rng = np.random.default_rng(seed)
    scores = (rng.random((n, 3)) < [0.6, 0.7, 0.9]).astype(float)
    probabilities = np.clip(0.5 * scores + 0.5 * rng.random((n, 3)), 0, 1)
    verified = np.clip(0.6 * scores + 0.4 * rng.random((n, 3)), 0, 1)
    expected = np.tile([1.0, 3.0, 9.0], (n, 1)) * (1 + rng.random((n, 1)))
    costs = expected * (0.5 + rng.random((n, 3)))
    keys = rng.integers(0, 3, size=(n, 3))
    keys[scores == 1] = 7  # right answers agree with each other
    agree = keys[:, :, None] == keys[:, None, :]
    return cascade.Held(probabilities, verified, expected, costs, scores, agree)


def test_start_trades_probability_against_expected_cost():
    p, cost = [0.80, 0.85, 0.95], [1.0, 3.0, 9.0]
    assert cascade.start(p, cost, 0.0, range(3)) == 2  # quality at any price
    assert cascade.start(p, cost, 10.0, range(3)) == 0  # price above all
    assert cascade.start(p, cost, 10.0, [1, 2]) == 1  # among the allowed ones only
    assert cascade.start(p, cost, 0.2, range(3)) == 1  # 0.85 - 0.2 / 3 beats 0.95 - 0.2
    assert cascade.start([0.9, 0.9, 0.9], cost, 0.0, range(3)) == 0  # ties: the cheaper


@pytest.mark.parametrize(
    ("tier", "verified", "agreed", "expected"),
    [
        (0, 0.95, False, None),  # verified: accepted
        (0, 0.20, False, 1),  # not: the next tier of the path
        (0, 0.20, True, None),  # agrees with the tier before it
        (1, 0.20, False, 2),
        (2, 0.00, False, None),  # the top's answer stands
    ],
)
def test_step_accepts_or_climbs_the_path(tier, verified, agreed, expected):
    params = cascade.Params(0.5, 0.8, (1, 2))
    assert cascade.step(params, tier, verified, agreed) == expected
    straight = cascade.Params(0.5, 0.8, (2,))
    if expected is not None:
        assert cascade.step(straight, tier, verified, agreed) == 2  # skips the middle tier


def test_the_sweep_judges_exactly_what_one_simulation_does():
    data = held()
    points = cascade.sweep(data)
    assert len(points) == len(cascade.LAMBDAS) * len(cascade.TAUS) * 2  # two paths for 3 tiers
    rng = np.random.default_rng(1)
    for i in rng.choice(len(points), 40, replace=False):
        fast = points[int(i)]
        slow = cascade.point(fast.params, data)
        assert fast.cost_share == pytest.approx(slow.cost_share)
        assert fast.keep == pytest.approx(slow.keep)
        assert fast.calls == pytest.approx(slow.calls)


def test_tau_zero_is_prompt_only_routing_and_above_one_always_climbs():
    data = held()
    first = cascade.point(cascade.Params(0.0, 0.0, (2,)), data)
    assert first.calls == 1.0
    never = cascade.point(cascade.Params(10.0, 1.01, (2,), agree=False), data)
    assert never.keep == pytest.approx(1.0)  # every request ends at the top
    assert never.escalated == pytest.approx(1.0)  # having started at the cheapest


def test_a_perfect_verifier_is_the_cheapest_way_to_keep_everything():
    data = held()
    perfect = cascade.Held(
        data.probabilities, data.scores, data.expected, data.costs, data.scores, data.agree
    )
    goal = GoalConfig(keep=0.99)
    ideal = meet(goal, cascade.sweep(perfect))
    real = meet(goal, cascade.sweep(data))
    assert ideal.keep >= 0.99
    assert ideal.cost_share <= real.cost_share


def test_meet_takes_the_cheapest_point_that_keeps_enough():
    data = held()
    points = cascade.sweep(data)
    chosen = meet(GoalConfig(keep=0.9), points)
    assert chosen.keep >= 0.9
    assert all(p.cost_share >= chosen.cost_share for p in points if p.keep >= 0.9)
    frugal = meet(GoalConfig(max_cost_share=0.3), points)
    assert frugal.cost_share <= 0.3
    assert all(p.keep <= frugal.keep for p in points if p.cost_share <= 0.3)
    assert cascade.paths(4) == [(3,), (1, 3), (2, 3), (1, 2, 3)]
