"""Replacing the confidence calibrator: both judged on the same held-out answers, the verdict
by ranking (AUROC) and calibration error."""

from __future__ import annotations

from rung.confidence.calibrator import FEATURES, Calibrator, TierCalibrator
from rung.confidence.promote import Judged, calibrator_verdict, judge_tier

N = len(FEATURES)


def calibrator(slope: float) -> Calibrator:
    """P(right) = sigmoid(slope * first feature)."""
    model = TierCalibrator([slope] + [0.0] * (N - 1), 0.0, [0.0] * N, [1.0] * N)
    return Calibrator({"small": model})


def test_a_calibrator_that_ranks_backwards_loses_to_one_that_ranks_right():
    data = [([float(v)] + [0.0] * (N - 1), int(v > 0)) for v in (-3, -2, -1, 1, 2, 3)]
    judged = judge_tier(calibrator(-2.0), calibrator(2.0), "small", data)
    assert judged is not None
    assert (judged.serving_auroc, judged.candidate_auroc) == (0.0, 1.0)
    assert judged.candidate_error < judged.serving_error
    verdict = calibrator_verdict({"small": judged}, min_examples=6)
    assert verdict.promote
    assert verdict.reason.startswith("ranks better, better calibrated")
    assert not calibrator_verdict({"small": judged}, min_examples=7).promote  # too few


def test_one_outcome_only_cannot_be_judged():
    data = [([1.0] + [0.0] * (N - 1), 1)] * 5
    assert judge_tier(calibrator(1.0), calibrator(2.0), "small", data) is None
    assert judge_tier(calibrator(1.0), calibrator(2.0), "large", data) is None  # no model


def test_the_verdict_needs_better_ranking_or_calibration():
    same = Judged(100, 0.80, 0.80, 0.05, 0.05)
    assert not calibrator_verdict({"small": same}, 30).promote
    calibrated = Judged(100, 0.80, 0.795, 0.08, 0.03)
    assert calibrator_verdict({"small": calibrated}, 30).promote
    ranks = Judged(100, 0.70, 0.80, 0.05, 0.052)
    assert calibrator_verdict({"small": ranks}, 30).promote
    worse = Judged(100, 0.80, 0.70, 0.08, 0.02)  # better calibrated, but ranks much worse
    assert "refused" in calibrator_verdict({"small": worse}, 30).reason
