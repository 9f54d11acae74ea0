"""Offline evaluation: replay routing decisions against recorded outcomes. Pure functions.

Costs are normalised by the cost of sending every prompt to the most expensive tier; quality is
the mean score. A router's curve comes from sweeping its decision parameter (the utility rule's
lambda); any two points on it can be mixed (route a share of traffic at each), so every strategy
is judged on the upper envelope of its points. The no-information baseline is the envelope of
the always-tier-k points. These are figures of a curve; what an operator's goal really buys is
`at_goals`: the parameter chosen on the validation split, applied to held-out prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.classifiers.decision import choose_tiers, choose_tiers_by_threshold
from rung.classifiers.goal import LAMBDAS, at_lambda, describe, interval, meet, met
from rung.classifiers.goal import Point as GoalPoint
from rung.config import GoalConfig

Array = npt.NDArray[np.float64]
Point = tuple[float, float]  # (normalised cost, mean score)


def envelope(points: list[Point]) -> list[Point]:
    """The upper-left concave envelope: for each cost, the best score reachable by mixing."""
    pts = sorted(set(points))
    # Only points that improve on every cheaper point matter.
    frontier: list[Point] = []
    for cost, score in pts:
        if not frontier or score > frontier[-1][1]:
            frontier.append((cost, score))
    hull: list[Point] = []
    for p in frontier:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # Drop the middle point when it lies on or under the chord to p.
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def cost_at(points: list[Point], score: float) -> float:
    """Lowest cost whose (mixed) score reaches `score`; inf if none does."""
    hull = envelope(points)
    for i, (cost, value) in enumerate(hull):
        if value >= score:
            if i == 0:
                return cost
            c0, v0 = hull[i - 1]
            return c0 + (score - v0) * (cost - c0) / (value - v0)
    return float("inf")


def score_at(points: list[Point], budget: float) -> float:
    """Best (mixed) score at a normalised cost of at most `budget`; 0 if nothing fits."""
    hull = envelope(points)
    for i, (cost, value) in enumerate(hull):
        if cost > budget:
            if i == 0:
                return 0.0
            c0, v0 = hull[i - 1]
            return v0 + (budget - c0) * (value - v0) / (cost - c0)
    return hull[-1][1] if hull else 0.0


def replay(choice: npt.NDArray[np.int64], scores: Array, costs: Array) -> Point:
    rows = np.arange(len(choice))
    total_top = float(costs[:, -1].sum())
    return float(costs[rows, choice].sum()) / total_top, float(scores[rows, choice].mean())


def tier_points(scores: Array, costs: Array) -> list[Point]:
    total_top = float(costs[:, -1].sum())
    return [
        (float(costs[:, k].sum()) / total_top, float(scores[:, k].mean()))
        for k in range(scores.shape[1])
    ]


def oracle_points(scores: Array, costs: Array, prices: Array) -> list[Point]:
    """The cheapest correct tier per prompt (the cheapest tier when none is correct)."""
    order = np.argsort(prices, kind="stable")
    correct = scores[:, order] >= 0.5
    first = np.where(correct.any(axis=1), np.argmax(correct, axis=1), 0)
    oracle = replay(np.asarray(order[first], dtype=np.int64), scores, costs)
    cheapest = replay(np.full(len(scores), order[0], dtype=np.int64), scores, costs)
    return [cheapest, oracle]


def calibration_error(probabilities: Array, outcomes: Array, bins: int = 10) -> float:
    """Expected calibration error over every (prompt, tier) prediction."""
    p, y = probabilities.ravel(), outcomes.ravel()
    edges = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        mask = edges == b
        if mask.any():
            error += mask.mean() * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return error


@dataclass(frozen=True)
class SweepPoint:
    lam: float
    cost: float
    score: float
    shares: list[float]


def sweep(
    probabilities: Array,
    scores: Array,
    costs: Array,
    prices: Array,
    lambdas: tuple[float, ...] = LAMBDAS,
) -> list[SweepPoint]:
    """The utility rule's points over a lambda grid (each: normalised cost, mean score)."""
    out = []
    for lam in lambdas:
        choice = choose_tiers(probabilities, prices, lam)
        cost, score = replay(choice, scores, costs)
        shares = np.bincount(choice, minlength=scores.shape[1]) / len(choice)
        out.append(SweepPoint(lam, cost, score, [float(s) for s in shares]))
    return out


def threshold_points(
    probabilities: Array, scores: Array, costs: Array, prices: Array
) -> list[Point]:
    """The legacy rule's points (cheapest tier meeting a target), target swept 0..1."""
    return [
        replay(choose_tiers_by_threshold(probabilities, prices, float(t)), scores, costs)
        for t in np.linspace(0, 1, 101)
    ]


STANDARD_GOALS = (
    GoalConfig(keep=0.90),
    GoalConfig(keep=0.95),
    GoalConfig(keep=0.98),
    GoalConfig(max_cost_share=0.3),
    GoalConfig(max_cost_share=0.5),
)


def at_goals(
    validation: list[GoalPoint],
    probabilities: Array,
    scores: Array,
    costs: Array,
    prices: Array,
    goals: tuple[GoalConfig, ...] = STANDARD_GOALS,
) -> list[dict[str, Any]]:
    """Each goal's lambda, met on the validation curve, then applied to these (held-out) data:
    what the operator would really get, with 95% bootstrap intervals. `met` says whether the
    validation curve reached the goal at all (if not, the closest point was taken)."""
    out = []
    for goal in goals:
        chosen = meet(goal, validation)
        held = at_lambda(chosen.lam, probabilities, scores, costs, prices)
        spread = interval(chosen.lam, probabilities, scores, costs, prices)
        out.append(
            {
                "goal": describe(goal),
                "lambda": chosen.lam,
                "validation": {
                    "cost_share": chosen.cost_share,
                    "keep": chosen.keep,
                    "met": met(goal, chosen),
                },
                "held_out": {
                    "cost_share": held.cost_share,
                    "keep": held.keep,
                    "keep_95": list(spread["keep"]),
                    "cost_share_95": list(spread["cost_share"]),
                    "prompts": len(scores),
                },
            }
        )
    return out


def summarize(
    probabilities: Array,
    scores: Array,
    costs: Array,
    prices: Array,
    validation: list[GoalPoint] | None = None,
) -> dict[str, Any]:
    """metrics.json for one held-out set: router vs oracle vs no-information baseline, and
    (given the validation curve) what each standard goal costs and keeps here."""
    points = sweep(probabilities, scores, costs, prices)
    baseline = tier_points(scores, costs)
    # Every strategy can fall back to the top tier (an operator can always pin it), so each
    # curve ends there.
    router = [(p.cost, p.score) for p in points] + [baseline[-1]]
    legacy = [*threshold_points(probabilities, scores, costs, prices), baseline[-1]]
    oracle = [*oracle_points(scores, costs, prices), baseline[-1]]
    need = 0.95 * float(scores[:, -1].mean())
    result: dict[str, Any] = {
        "prompts": len(scores),
        "top_tier_score": float(scores[:, -1].mean()),
        "score_needed_for_95": need,
        "router": {
            "cost_at_95": cost_at(router, need),
            "score_at_half_cost": score_at(router, 0.5),
        },
        "threshold_rule": {
            "cost_at_95": cost_at(legacy, need),
            "score_at_half_cost": score_at(legacy, 0.5),
        },
        "baseline": {
            "cost_at_95": cost_at(baseline, need),
            "score_at_half_cost": score_at(baseline, 0.5),
        },
        "oracle": {
            "cost_at_95": cost_at(oracle, need),
            "score_at_half_cost": score_at(oracle, 0.5),
        },
        "calibration_error": calibration_error(probabilities, scores),
        "always_tier": [{"cost": c, "score": s} for c, s in baseline],
        "sweep": [p.__dict__ for p in points],
    }
    if validation is not None:
        result["goals"] = at_goals(validation, probabilities, scores, costs, prices)
    return result
