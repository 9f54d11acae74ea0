"""Routing goals an operator states (`keep: 0.95`, `max_cost_share: 0.5`) and the decision
parameter that meets them. Pure functions.

A goal is met on a classifier's *validation* split (prompts it was not fitted on): sweep the
utility rule's lambda, record per lambda the share of the top tier's cost spent and the share of
its quality kept, and take the cheapest lambda that keeps enough (or the best-keeping one that
spends little enough). The top tier is the dearest tier the gateway actually serves, so a
config without the ladder's largest model still gets what it asks for relative to its own top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from rung.classifiers.decision import choose_tiers
from rung.config import GoalConfig

Array = npt.NDArray[np.float64]
LAMBDAS: tuple[float, ...] = (0.0, *(float(x) for x in np.geomspace(1e-3, 20.0, 160)))


@dataclass(frozen=True)
class Point:
    lam: float
    cost_share: float
    """Spend over what sending every prompt to the top tier costs."""
    keep: float
    """Mean score over the top tier's mean score."""


def describe(goal: GoalConfig) -> str:
    if goal.keep is not None:
        return f"keep:{goal.keep:g}"
    return f"max_cost_share:{goal.max_cost_share:g}"


def curve(
    probabilities: Array,
    scores: Array,
    costs: Array,
    prices: Array,
    lambdas: tuple[float, ...] = LAMBDAS,
) -> list[Point]:
    """(lambda, cost share, quality kept) of the utility rule over [prompts, tiers] arrays whose
    last-by-price tier is the top."""
    top = int(np.argmax(prices))
    top_cost = float(costs[:, top].sum())
    top_score = float(scores[:, top].mean())
    rows = np.arange(len(scores))
    points = []
    for lam in lambdas:
        choice = choose_tiers(probabilities, prices, lam)
        cost = float(costs[rows, choice].sum()) / top_cost if top_cost > 0 else 0.0
        score = float(scores[rows, choice].mean())
        points.append(Point(lam, cost, score / top_score if top_score > 0 else 1.0))
    return points


class Scored(Protocol):
    """A point of any policy's curve: what it spends and what it keeps."""

    @property
    def cost_share(self) -> float: ...

    @property
    def keep(self) -> float: ...


P = TypeVar("P", bound=Scored)


def meet(goal: GoalConfig, points: Sequence[P]) -> P:
    """The point of the curve that meets the goal at the least cost (keep), or keeps the most
    within the spend (max_cost_share). When nothing meets it: the closest point (the most
    keeping one for `keep`, the cheapest for `max_cost_share`)."""
    if not points:
        raise ValueError("an empty curve meets no goal")
    if goal.keep is not None:
        keeping = [p for p in points if p.keep >= goal.keep]
        if not keeping:
            return max(points, key=lambda p: (p.keep, -p.cost_share))
        return min(keeping, key=lambda p: (p.cost_share, -p.keep))
    assert goal.max_cost_share is not None
    within = [p for p in points if p.cost_share <= goal.max_cost_share]
    if not within:
        return min(points, key=lambda p: (p.cost_share, -p.keep))
    return max(within, key=lambda p: (p.keep, -p.cost_share))


def met(goal: GoalConfig, point: Point) -> bool:
    if goal.keep is not None:
        return point.keep >= goal.keep
    assert goal.max_cost_share is not None
    return point.cost_share <= goal.max_cost_share


def interval(
    lam: float,
    probabilities: Array,
    scores: Array,
    costs: Array,
    prices: Array,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals (prompts resampled) of the quality kept and the cost share of
    one lambda on these prompts: how far a figure from a few hundred prompts can be trusted."""
    top = int(np.argmax(prices))
    choice = choose_tiers(probabilities, prices, lam)
    rows = np.arange(len(scores))
    got, top_scores = scores[rows, choice], scores[:, top]
    spent, top_costs = costs[rows, choice], costs[:, top]
    pick = np.random.default_rng(seed).integers(0, len(scores), size=(draws, len(scores)))
    top_mean = top_scores[pick].mean(axis=1)
    keep = np.divide(got[pick].mean(axis=1), top_mean, out=np.ones(draws), where=top_mean > 0)
    total = top_costs[pick].sum(axis=1)
    share = np.divide(spent[pick].sum(axis=1), total, out=np.zeros(draws), where=total > 0)

    def bounds(x: Array) -> tuple[float, float]:
        return float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))

    return {"keep": bounds(keep), "cost_share": bounds(share)}


def keeps(keep: float, top: str) -> str:
    """`keeps 93.1% of large's score`; above 100% it says why (the cheaper tiers answer some
    prompts the top tier gets wrong) rather than promising more than the top tier."""
    if keep > 1:
        return (
            f"keeps all of {top}'s score ({keep:.1%}: cheaper tiers are right on some prompts "
            f"{top} gets wrong)"
        )
    return f"keeps {keep:.1%} of {top}'s score"


def at_lambda(
    lam: float, probabilities: Array, scores: Array, costs: Array, prices: Array
) -> Point:
    """What one lambda spends and keeps on (held-out) data."""
    return curve(probabilities, scores, costs, prices, (lam,))[0]


def eased(goal: GoalConfig, progress: float, floor: float) -> GoalConfig:
    """A goal relaxed `progress` (0..1) of the way to the cheapest setting: budget downshift.
    `floor` is what the cheapest tier keeps."""
    if progress <= 0:
        return goal
    if goal.keep is not None:
        keep = goal.keep - progress * max(0.0, goal.keep - floor)
        return GoalConfig(keep=round(max(keep, 1e-6), 4))
    assert goal.max_cost_share is not None
    return GoalConfig(max_cost_share=round(max(goal.max_cost_share * (1 - progress), 1e-6), 4))
