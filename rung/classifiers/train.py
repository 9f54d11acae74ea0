"""Fitting the difficulty model. Three variants, all compiled to one linear map + sigmoid:

- `logistic`: one L2-regularised logistic regression per tier on [embedding, text features];
- `difficulty`: a ridge regression from the same inputs to how often *every* model in the data
  (not only the ladder's) solved the prompt, then one 1-D logistic per tier on that estimate
  (fitted on out-of-fold estimates, so it learns how much to trust them);
- `blend` (default): the mean of the two in logit space.
The second uses the other models as extra supervision: 30-40 outcomes per prompt say far more
about its difficulty than one tier's 0/1.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rung.classifiers.features import feature_matrix
from rung.classifiers.model import DifficultyModel

Array = npt.NDArray[np.float64]
Method = Literal["logistic", "difficulty", "blend"]
METHODS: tuple[Method, ...] = ("logistic", "difficulty", "blend")


def _logistic(x: Array, y: Array, c: float) -> tuple[Array, float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():  # a tier that always (or never) succeeds: a constant
        p = float(np.clip(y.mean(), 0.01, 0.99))
        return np.zeros(x.shape[1]), float(np.log(p / (1 - p)))
    fit = LogisticRegression(C=c, max_iter=5000).fit(x, (y >= 0.5).astype(int))
    return np.asarray(fit.coef_[0], dtype=np.float64), float(fit.intercept_[0])


def _ridge(x: Array, y: Array, alpha: float) -> tuple[Array, float]:
    from sklearn.linear_model import Ridge

    fit = Ridge(alpha=alpha).fit(x, y)
    return np.asarray(fit.coef_, dtype=np.float64), float(fit.intercept_)


def fit_linear(
    x: Array,
    scores: Array,
    others: Array,
    method: Method = "blend",
    c: float = 1.0,
    alpha: float = 10.0,
    seed: int = 0,
) -> tuple[Array, Array]:
    """[prompts, d] inputs and [prompts, tiers] outcomes -> weights [tiers, d], bias [tiers]."""
    tiers = scores.shape[1]
    logistic_w = np.zeros((tiers, x.shape[1]))
    logistic_b = np.zeros(tiers)
    if method in ("logistic", "blend"):
        for k in range(tiers):
            logistic_w[k], logistic_b[k] = _logistic(x, scores[:, k], c)
        if method == "logistic":
            return logistic_w, logistic_b
    solved = np.nanmean(np.concatenate([scores, others], axis=1), axis=1)
    folds = np.random.default_rng(seed).permutation(len(x)) % 5
    out_of_fold = np.zeros(len(x))
    for f in range(5):
        train, held = folds != f, folds == f
        w, b = _ridge(x[train], solved[train], alpha)
        out_of_fold[held] = x[held] @ w + b
    ridge_w, ridge_b = _ridge(x, solved, alpha)
    difficulty_w = np.zeros((tiers, x.shape[1]))
    difficulty_b = np.zeros(tiers)
    for k in range(tiers):
        slope, intercept = _logistic(out_of_fold[:, None], scores[:, k], 10.0)
        difficulty_w[k] = slope[0] * ridge_w
        difficulty_b[k] = slope[0] * ridge_b + intercept
    if method == "difficulty":
        return difficulty_w, difficulty_b
    return (logistic_w + difficulty_w) / 2, (logistic_b + difficulty_b) / 2


def train(
    embeddings: npt.NDArray[np.floating[Any]],
    texts: list[str],
    scores: Array,
    others: Array,
    tiers: list[dict[str, Any]],
    embedder: dict[str, str],
    method: Method = "blend",
    training: dict[str, Any] | None = None,
) -> DifficultyModel:
    features = feature_matrix(texts)
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    x = np.hstack([np.asarray(embeddings, dtype=np.float64), (features - mean) / scale])
    weights, bias = fit_linear(x, scores, others, method)
    return DifficultyModel(
        tiers=tiers,
        embedder=embedder,
        weights=weights,
        bias=bias,
        feature_mean=mean,
        feature_scale=scale,
        training={"method": method, **(training or {})},
    )
