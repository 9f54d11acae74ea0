"""The confidence calibrator: features, prediction, JSON round trip, fitting and its metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rung.confidence.calibrator import (
    FEATURES,
    Calibrator,
    TierCalibrator,
    features,
    load_calibrator,
    prefix_signals,
    shipped_calibrator,
)
from rung.confidence.fit import auroc, calibration_error, examples, fit
from rung.confidence.signals import TokenScore, answer_signals


def test_features_follow_the_declared_order() -> None:
    signals = answer_signals("I'm sorry", "length", [TokenScore(-1.0, 0.5), TokenScore(-3.0)])
    x = dict(zip(FEATURES, features(signals), strict=True))
    assert x["mean_logprob"] == -2.0
    assert x["min_logprob"] == -3.0
    assert x["log_tokens"] == pytest.approx(math.log(3))
    assert (x["truncated"], x["refusal"], x["empty"], x["no_logprobs"]) == (1.0, 1.0, 0.0, 0.0)
    assert features(answer_signals("ok", "stop", []))[FEATURES.index("no_logprobs")] == 1.0


def test_prefix_signals_read_the_first_k_recorded_tokens() -> None:
    scores = [[-0.1, 0.2], [-2.0, None], [-0.5, 0.4], [-9.0, 1.0]]
    signals = prefix_signals(scores, 3)
    assert signals.tokens == 3
    assert signals.min_logprob == -2.0
    assert signals.mean_entropy == pytest.approx(0.3)


def test_prediction_and_json_round_trip(tmp_path: Path) -> None:
    weights = [2.0 if f == "mean_logprob" else 0.0 for f in FEATURES]
    tier = TierCalibrator(weights, 1.0, [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    calibrator = Calibrator({"small": tier}, {"small": tier}, 16, {"small": {"auroc": 0.8}})
    signals = answer_signals("x", "stop", [TokenScore(-0.5)])
    assert calibrator.confidence("small", signals) == pytest.approx(0.5)  # sigmoid(1 - 1)
    assert calibrator.confidence("large", signals) is None
    path = tmp_path / "c.json"
    calibrator.save(path)
    loaded = load_calibrator(path)
    assert loaded == calibrator
    path.write_text(path.read_text().replace("rung-confidence/1", "other/9"))
    with pytest.raises(ValueError, match="not a rung confidence calibrator"):
        load_calibrator(path)


def test_the_shipped_calibrator_loads() -> None:
    loaded = load_calibrator(shipped_calibrator("local"))
    assert set(loaded.tiers) == {"small", "large"}
    with pytest.raises(ValueError, match="no confidence calibrator"):
        shipped_calibrator("nope")


def test_auroc_and_calibration_error() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert calibration_error(np.array([0.0, 0.0, 1.0, 1.0]), labels) == 0.0
    assert calibration_error(np.array([0.75] * 4), labels) == pytest.approx(0.25)


def test_fit_learns_that_unsure_answers_are_wrong() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(300):
        correct = i % 2 == 0
        lp = rng.normal(-0.2 if correct else -1.5, 0.3, size=30)
        scores = [TokenScore(float(v), 0.3) for v in lp]
        signals = answer_signals("Answer: 4", "stop", scores)
        result = {
            "score": float(correct),
            "signals": signals.to_dict(),
            "token_scores": [[s.logprob, s.entropy] for s in scores],
        }
        rows.append({"id": str(i), "results": {"m": result}})
    assert len(examples(rows, "m", None)) == 300
    calibrator = fit(rows, {"small": "m"}, probe_tokens=8)
    assert calibrator.metrics["small"]["auroc"] > 0.95
    assert calibrator.metrics["small/probe"]["auroc"] > 0.9
    assert calibrator.metrics["small"]["examples"] == 300
    sure = answer_signals(
        "4", "stop", [TokenScore(float(v), 0.3) for v in rng.normal(-0.2, 0.3, 30)]
    )
    unsure = answer_signals(
        "4", "stop", [TokenScore(float(v), 0.3) for v in rng.normal(-1.5, 0.3, 30)]
    )
    assert calibrator.confidence("small", sure) > 0.9  # type: ignore[operator]
    assert calibrator.confidence("small", unsure) < 0.1  # type: ignore[operator]
