"""Fitting the answer verifier from outcome records that carry each tier's answer `text`
(`rung label` writes them; ../shared/data/answers has them for public models).

The verifier is stacked on the prompt model: its `prompt_logit` input is the prompt model's
out-of-fold prediction for a fitting prompt (never an in-sample one, which would teach it to
trust a probability that is better on its training prompts than anywhere else), and its own
out-of-fold predictions are what the cascade policy is fitted on.

Its `logprob_logit` input is what the gateway gives it when a backend returns logprobs: the
confidence calibrator's estimate (`escalation.calibrator`), here computed from the `signals`
`rung label` and shadow records keep beside each answer. Records without them (the public
answer data) leave it missing, and the verifier learns nothing from it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.classifiers.answers import read
from rung.classifiers.outcomes import Ladder, LadderData
from rung.classifiers.verifier import AnswerVerifier, fit, inputs
from rung.confidence.calibrator import Calibrator
from rung.confidence.signals import Signals

Array = npt.NDArray[np.float64]
MIN_TEXT_SHARE = 0.9
"""Every tier needs answer texts for at least this share of the prompts to fit a verifier."""


@dataclass(frozen=True)
class Readings:
    features: Array
    """[prompts, tiers, features] (rung.classifiers.answers.FEATURES)."""
    keys: npt.NDArray[np.int64]
    """[prompts, tiers] final-answer digests, -1 where none was found."""
    confidence: Array | None = None
    """[prompts, tiers] the calibrator's estimate from each answer's logprob signals (NaN:
    none); None when no record carries signals."""

    def subset(self, rows: npt.NDArray[np.int64]) -> Readings:
        confidence = None if self.confidence is None else self.confidence[rows]
        return Readings(self.features[rows], self.keys[rows], confidence)


def key(result: str | None) -> int:
    """A final answer's 62-bit digest (-1: none): equal answers, equal keys."""
    if result is None:
        return -1
    return int.from_bytes(hashlib.sha1(result.encode()).digest()[:8], "big") >> 2


def _confidence(calibrator: Calibrator | None, tier: str, signals: Any) -> float:
    if calibrator is None or not isinstance(signals, dict):
        return math.nan
    try:
        estimate = calibrator.confidence(tier, Signals.from_dict(signals))
    except (KeyError, TypeError):  # signals of another version: as if there were none
        return math.nan
    return math.nan if estimate is None else estimate


def readings(
    data: LadderData, ladder: Ladder, calibrator: Calibrator | None = None
) -> Readings | None:
    """Each tier's answer read (and, with `calibrator`, its logprob confidence where the
    record kept signals), or None when the records lack answer texts."""
    texts: list[list[Any]] = []
    finishes: list[list[Any]] = []
    signals: list[list[Any]] = []
    for o in data.outcomes:
        results = [o.results[str(t.model_for(o.dataset))] for t in ladder.tiers]
        texts.append([r.get("text") for r in results])
        finishes.append([r.get("finish_reason") for r in results])
        signals.append([r.get("signals") for r in results])
    if not texts:
        return None
    present = np.array([[isinstance(t, str) for t in row] for row in texts])
    if (present.mean(axis=0) < MIN_TEXT_SHARE).any():
        return None
    features, keys = [], []
    for o, row, finish in zip(data.outcomes, texts, finishes, strict=True):
        read_row = [read(t or "", o.prompt, f) for t, f in zip(row, finish, strict=True)]
        features.append([r.features for r in read_row])
        keys.append([key(r.result) for r in read_row])
    confidence = None
    if calibrator is not None and any(isinstance(x, dict) for row in signals for x in row):
        names = [t.name for t in ladder.tiers]
        confidence = np.array(
            [
                [_confidence(calibrator, n, x) for n, x in zip(names, row, strict=True)]
                for row in signals
            ]
        )
    return Readings(
        np.array(features, dtype=np.float64), np.array(keys, dtype=np.int64), confidence
    )


def rows(features: Array, probabilities: Array, confidence: Array | None = None) -> Array:
    """[prompts, tiers, inputs]: each answer's features, its tier's prompt probability and
    its logprob confidence (NaN or no array: missing)."""
    n, tiers, _ = features.shape

    def known(i: int, k: int) -> float | None:
        c = None if confidence is None else float(confidence[i, k])
        return None if c is None or math.isnan(c) else c

    return np.array(
        [
            [
                inputs(tuple(features[i, k]), float(probabilities[i, k]), known(i, k))
                for k in range(tiers)
            ]
            for i in range(n)
        ]
    )


def fit_verifier(
    readings_: Readings,
    probabilities: Array,
    success: npt.NDArray[np.bool_],
    folds: npt.NDArray[np.uint64],
    tiers: list[str],
) -> tuple[AnswerVerifier, Array]:
    """The verifier fitted on every fitting prompt, and its out-of-fold probabilities there.
    `probabilities` are the prompt model's out-of-fold predictions for the same prompts."""
    from sklearn.metrics import roc_auc_score

    x = rows(readings_.features, probabilities, readings_.confidence)
    out_of_fold = np.zeros(success.shape)
    for k in np.unique(folds):
        inside = folds != k
        if inside.all() or not inside.any():
            continue
        out_of_fold[~inside] = fit(x[inside], success[inside], tiers, {}).probabilities(x[~inside])
    report: dict[str, Any] = {"out_of_fold_auroc": {}, "prompt_auroc": {}}
    for j, name in enumerate(tiers):
        y = success[:, j]
        if 0 < y.mean() < 1:
            report["out_of_fold_auroc"][name] = round(float(roc_auc_score(y, out_of_fold[:, j])), 4)
            report["prompt_auroc"][name] = round(float(roc_auc_score(y, probabilities[:, j])), 4)
    return fit(x, success, tiers, report), out_of_fold
