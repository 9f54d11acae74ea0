"""The cascade policy judged offline: `metrics.json`'s `cascade` section.

On held-out prompts with answer texts: the policy's cost-quality curve over its parameters and
its cost to keep 95% of the top tier's score; what each standard goal, fitted on the
classifier's own validation predictions (as the gateway fits it), realises here, with calls per
prompt and the share that paid two calls or more; the same policy fed a perfect verifier (the
ceiling any verifier could reach with this prompt model and these paths); and the policy with
no verifier at all (prompt-only routing on expected costs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.classifiers import cascade
from rung.classifiers.evaluate import STANDARD_GOALS, cost_at
from rung.classifiers.goal import describe, meet
from rung.classifiers.model import Held
from rung.config import GoalConfig

Array = npt.NDArray[np.float64]


def policy_held(held: Held, prices: Array, answer_chars: list[float]) -> cascade.Held:
    """A classifier's held split as the cascade sees it, at these prices (per million tokens,
    one per tier of the split). Without answer texts, every answer counts as unverified."""
    n, tiers = held.scores.shape
    prompt = held.prompt_chars if held.prompt_chars is not None else np.zeros(n)
    expected = (prompt[:, None] + np.asarray(answer_chars)[None, :]) / 4 * prices / 1e6
    keys = held.keys if held.keys is not None else np.full((n, tiers), -1, dtype=np.int64)
    agree = (keys[:, :, None] == keys[:, None, :]) & (keys[:, :, None] >= 0)
    verified = held.verified if held.verified is not None else np.zeros((n, tiers))
    return cascade.Held(
        held.probabilities, verified, expected, held.costs(prices), held.scores, agree
    )


def cost_at_95(points: list[cascade.Point], held: cascade.Held) -> float:
    top = float(held.scores[:, -1].mean())
    curve = [(p.cost_share, p.keep * top) for p in points] + [(1.0, top)]
    return cost_at(curve, 0.95 * top)


def bootstrap(params: cascade.Params, held: cascade.Held, draws: int = 1000) -> dict[str, Any]:
    """95% intervals of the realised keep and cost share (prompts resampled)."""
    served, spent, _ = cascade.simulate(params, held)
    got = held.scores[np.arange(len(served)), served]
    top = params.path[-1]
    pick = np.random.default_rng(0).integers(0, len(got), size=(draws, len(got)))
    top_mean = held.scores[:, top][pick].mean(axis=1)
    keep = np.divide(got[pick].mean(axis=1), top_mean, out=np.ones(draws), where=top_mean > 0)
    total = held.costs[:, top][pick].sum(axis=1)
    share = np.divide(spent[pick].sum(axis=1), total, out=np.zeros(draws), where=total > 0)
    return {
        "keep_95": [float(np.quantile(keep, q)) for q in (0.025, 0.975)],
        "cost_share_95": [float(np.quantile(share, q)) for q in (0.025, 0.975)],
    }


def section(
    held: cascade.Held,
    validation: cascade.Held,
    names: list[str],
    goals: tuple[GoalConfig, ...] = STANDARD_GOALS,
) -> dict[str, Any]:
    """The `cascade` section for held-out data `held`, goals fitted on `validation`."""
    verifying = bool(held.verified.any())
    points = cascade.sweep(held, verifying)
    # A perfect verifier knows whether calling further could do better: it accepts an answer
    # that is right, or that no dearer tier would get right.
    better_above = np.flip(np.maximum.accumulate(np.flip(held.scores, 1), 1), 1)
    later = np.concatenate([better_above[:, 1:], np.zeros((len(held.scores), 1))], axis=1)
    perfect = replace(held, verified=(held.scores >= later).astype(np.float64))
    fitted = cascade.sweep(validation, verifying)
    at_goals = []
    for goal in goals:
        chosen = meet(goal, fitted)
        realised = cascade.point(chosen.params, held)
        at_goals.append(
            {
                "goal": describe(goal),
                "params": chosen.params.describe(names),
                "validation": {"keep": chosen.keep, "cost_share": chosen.cost_share},
                "held_out": {
                    "keep": realised.keep,
                    "cost_share": realised.cost_share,
                    "calls_per_prompt": realised.calls,
                    "two_or_more_calls": realised.escalated,
                    **bootstrap(chosen.params, held),
                },
            }
        )
    return {
        "verifier": verifying,
        "cost_at_95": cost_at_95(points, held),
        "prompt_only_cost_at_95": cost_at_95(cascade.sweep(held, False), held),
        "perfect_verifier_cost_at_95": cost_at_95(cascade.sweep(perfect, True), perfect),
        "at_goals": at_goals,
        "curve": sorted(
            {(round(p.cost_share, 4), round(p.keep, 4)) for p in points}, key=lambda x: x[0]
        ),
    }
