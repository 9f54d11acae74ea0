"""Promote a candidate classifier only when it is no worse on quality and cheaper (or better at
no more cost) than the serving one, both measured on the same prompts neither was fitted on, at
the operator's goal. Pure: metrics in, a verdict out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TOLERANCE = 0.005
"""Differences smaller than this (in share of the top tier's score or cost) are ties."""


@dataclass(frozen=True)
class Figures:
    keep: float
    """Share of the top tier's score kept on the held-out prompts, at the goal."""
    cost_share: float
    """Cost relative to always the top tier, at the goal."""
    cost_at_95: float


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    serving: Figures
    candidate: Figures
    prompts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(metrics: dict[str, Any], goal: str) -> Figures:
    """The goal's held-out point and the router's cost_at_95 from `workflow.evaluate`'s
    metrics."""
    for row in metrics.get("goals", []):
        if row["goal"] == goal:
            held = row["held_out"]
            return Figures(held["keep"], held["cost_share"], metrics["router"]["cost_at_95"])
    raise ValueError(
        f"no figures for goal {goal!r} (have: {[g['goal'] for g in metrics['goals']]})"
    )


def meets(goal: str, point: Figures, tolerance: float = TOLERANCE) -> bool:
    """Does the held-out point reach the goal (`keep:S` or `max_cost_share:C`)?"""
    kind, _, value = goal.partition(":")
    if kind == "keep":
        return point.keep >= float(value) - tolerance
    return point.cost_share <= float(value) + tolerance


def verdict(
    serving: Figures,
    candidate: Figures,
    prompts: int,
    goal: str = "keep:0.95",
    tolerance: float = TOLERANCE,
) -> Verdict:
    """Promote when the candidate meets the goal the serving classifier misses, or when both
    stand the same against the goal and the candidate is no worse on quality and cheaper, or
    better on quality at no more cost."""
    cheaper = candidate.cost_share < serving.cost_share - tolerance
    no_dearer = candidate.cost_share <= serving.cost_share + tolerance
    no_worse = candidate.keep >= serving.keep - tolerance
    better = candidate.keep > serving.keep + tolerance
    if meets(goal, candidate) and not meets(goal, serving):
        reason = f"meets {goal}, which the serving classifier misses"
    elif meets(goal, serving) and not meets(goal, candidate):
        reason = (
            f"refused: misses {goal} (keeps {candidate.keep:.3f}, costs {candidate.cost_share:.3f})"
        )
    elif no_worse and cheaper:
        reason = "no worse on quality and cheaper"
    elif better and no_dearer:
        reason = "better on quality at no more cost"
    elif not no_worse:
        reason = f"refused: keeps {candidate.keep:.3f} against {serving.keep:.3f}"
    else:
        reason = (
            f"refused: costs {candidate.cost_share:.3f} against {serving.cost_share:.3f} "
            "for no better quality"
        )
    return Verdict(not reason.startswith("refused"), reason, serving, candidate, prompts)
