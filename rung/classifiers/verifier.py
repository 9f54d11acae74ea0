"""The answer verifier: P(this answer is right), per tier, from the answer's features
(rung.classifiers.answers), the prompt-side probability that the tier succeeds, and, when the
backend returned token logprobs, the confidence calibrator's estimate (one input among the
others, with a flag saying whether it was there).

One logistic regression per tier, stored as plain arrays beside the difficulty model's (no
pickle). Scoring one answer is a dot product after reading it: well under a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.classifiers.answers import FEATURES

Array = npt.NDArray[np.float64]
INPUTS: tuple[str, ...] = (*FEATURES, "prompt_logit", "logprob_logit", "logprob_missing")
C = 0.5
"""Inverse regularisation of each tier's logistic regression (chosen on the fitting prompts'
out-of-fold predictions, GSM8K and MMLU-Pro together)."""


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def inputs(features: tuple[float, ...], prompt_p: float, confidence: float | None) -> list[float]:
    """One answer's input row (INPUTS order)."""
    if confidence is None:
        return [*features, logit(prompt_p), 0.0, 1.0]
    return [*features, logit(prompt_p), logit(confidence), 0.0]


@dataclass(frozen=True)
class AnswerVerifier:
    tiers: list[str]
    mean: Array
    """[inputs] standardisation."""
    scale: Array
    weights: Array
    """[tiers, inputs]"""
    bias: Array
    """[tiers]"""
    report: dict[str, Any]
    """Out-of-fold AUROC per tier on the fitting prompts, and the test split's."""

    def probability(self, tier: int, row: list[float]) -> float:
        z = (np.asarray(row) - self.mean) / self.scale
        x = float(z @ self.weights[tier] + self.bias[tier])
        return 1.0 / (1.0 + math.exp(-min(max(x, -40.0), 40.0)))

    def probabilities(self, rows: Array) -> Array:
        """[prompts, tiers, inputs] -> [prompts, tiers]."""
        z = (rows - self.mean) / self.scale
        x = np.einsum("ntf,tf->nt", z, self.weights) + self.bias
        out: Array = 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))
        return out

    def columns(self, tiers: list[int]) -> AnswerVerifier:
        """The verifier of these tiers only (a ladder or a tenant that serves a subset)."""
        return AnswerVerifier(
            [self.tiers[k] for k in tiers],
            self.mean,
            self.scale,
            self.weights[tiers],
            self.bias[tiers],
            self.report,
        )

    def arrays(self) -> dict[str, Array]:
        return {
            "verifier_mean": self.mean,
            "verifier_scale": self.scale,
            "verifier_weights": self.weights,
            "verifier_bias": self.bias,
        }


def fit(
    rows: Array, success: npt.NDArray[np.bool_], tiers: list[str], report: dict[str, Any]
) -> AnswerVerifier:
    """[prompts, tiers, inputs] and [prompts, tiers] outcomes -> one logistic per tier."""
    from sklearn.linear_model import LogisticRegression

    flat = rows.reshape(-1, rows.shape[2])
    mean = flat.mean(axis=0)
    scale = flat.std(axis=0) + 1e-6
    weights = np.zeros((len(tiers), rows.shape[2]))
    bias = np.zeros(len(tiers))
    for k in range(len(tiers)):
        y = success[:, k]
        if y.min() == y.max():  # always (or never) right: a constant
            p = min(max(float(y.mean()), 0.01), 0.99)
            bias[k] = math.log(p / (1 - p))
            continue
        model = LogisticRegression(C=C, max_iter=5000).fit((rows[:, k] - mean) / scale, y)
        weights[k], bias[k] = model.coef_[0], model.intercept_[0]
    return AnswerVerifier(tiers, mean, scale, weights, bias, report)
