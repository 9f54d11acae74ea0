"""Fitting confidence calibrators from labelled outputs (needs the `train` extra), with
held-out AUROC and calibration error: `rung calibrate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rung.confidence.calibrator import (
    FEATURES,
    Calibrator,
    TierCalibrator,
    features,
    prefix_signals,
)
from rung.confidence.signals import Signals

Rows = list[tuple[list[float], int]]


def examples(rows: Sequence[dict[str, Any]], model: str, probe: int | None) -> Rows:
    """(features, correct) for every outcome of `model` that recorded signals."""
    out = []
    for row in rows:
        result = (row.get("results") or {}).get(model)
        if not result or "signals" not in result:
            continue
        if probe is None:
            signals = Signals.from_dict(result["signals"])
        else:
            scores = result.get("token_scores") or []
            if not scores:
                continue
            signals = prefix_signals(scores, probe)
        out.append((features(signals), int(float(result["score"]) >= 0.5)))
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(probs[mask].mean() - labels[mask].mean())
    return float(total)


def _fit(x: np.ndarray, y: np.ndarray) -> TierCalibrator:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit((x - mean) / scale, y)
    return TierCalibrator(
        [float(v) for v in model.coef_[0]],
        float(model.intercept_[0]),
        [float(v) for v in mean],
        [float(v) for v in scale],
    )


def held_out(data: Rows, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold P(correct) for every example: each predicted by a model that never saw it."""
    x = np.array([f for f, _ in data], dtype=np.float64)
    y = np.array([label for _, label in data])
    if len(set(y.tolist())) < 2 or len(y) < 2 * folds:
        raise ValueError(f"need both right and wrong answers, at least {2 * folds}; got {len(y)}")
    predictions = np.zeros(len(y))
    order = np.random.default_rng(seed).permutation(len(y))
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        if len(set(y[train].tolist())) < 2:
            predictions[test] = y[train].mean()
            continue
        model = _fit(x[train], y[train])
        predictions[test] = [model.predict_features(row) for row in x[test]]
    return predictions


def fit_tier(data: Rows, folds: int = 5, seed: int = 0) -> tuple[TierCalibrator, dict[str, Any]]:
    """Fit on everything; report AUROC and calibration error of out-of-fold predictions."""
    x = np.array([f for f, _ in data], dtype=np.float64)
    y = np.array([label for _, label in data])
    held_out_p = held_out(data, folds, seed)
    metrics = {
        "examples": len(y),
        "accuracy": round(float(y.mean()), 4),
        "auroc": round(auroc(held_out_p, y), 4),
        "calibration_error": round(calibration_error(held_out_p, y), 4),
    }
    return _fit(x, y), metrics


def fit(
    rows: Sequence[dict[str, Any]], tiers: dict[str, str], probe_tokens: int = 24
) -> Calibrator:
    """A calibrator for every tier ({tier name: model name in the outcomes})."""
    whole: dict[str, TierCalibrator] = {}
    probe: dict[str, TierCalibrator] = {}
    metrics: dict[str, Any] = {"features": list(FEATURES), "probe_tokens": probe_tokens}
    for tier, model in tiers.items():
        whole[tier], metrics[tier] = fit_tier(examples(rows, model, None))
        probe[tier], metrics[f"{tier}/probe"] = fit_tier(examples(rows, model, probe_tokens))
    return Calibrator(whole, probe, probe_tokens, metrics)
