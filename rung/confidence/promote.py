"""Replace the serving confidence calibrator only when a candidate judges recent answers better:
both scored on the same held-out answers (their signals and whether they agreed with the answer
that replaced or checked them). Pure: calibrators and examples in, a verdict out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rung.confidence.calibrator import Calibrator
from rung.confidence.fit import Rows, auroc, calibration_error

AUROC_TOLERANCE = 0.01
ERROR_TOLERANCE = 0.005


@dataclass(frozen=True)
class Judged:
    examples: int
    serving_auroc: float
    candidate_auroc: float
    serving_error: float
    candidate_error: float


@dataclass(frozen=True)
class CalibratorVerdict:
    promote: bool
    reason: str
    tiers: dict[str, Judged]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_tier(serving: Calibrator, candidate: Calibrator, tier: str, data: Rows) -> Judged | None:
    """Both calibrators' whole-answer models on `data`; None without both outcomes in it (or
    without a model for the tier on either side)."""
    old, new = serving.tiers.get(tier), candidate.tiers.get(tier)
    labels = np.array([label for _, label in data])
    if old is None or new is None or len(set(labels.tolist())) < 2:
        return None
    p_old = np.array([old.predict_features(x) for x, _ in data])
    p_new = np.array([new.predict_features(x) for x, _ in data])
    return Judged(len(data), round(auroc(p_old, labels), 4), round(auroc(p_new, labels), 4),
                  round(calibration_error(p_old, labels), 4),
                  round(calibration_error(p_new, labels), 4))  # fmt: skip


def calibrator_verdict(judged: dict[str, Judged], min_examples: int) -> CalibratorVerdict:
    """Promote when, over the tiers with at least `min_examples` held-out answers, the candidate
    ranks answers no worse (AUROC within 0.01) and is better calibrated, or ranks them better
    and is calibrated no worse."""
    counted = {t: j for t, j in judged.items() if j.examples >= min_examples}
    if not counted:
        return CalibratorVerdict(False, f"refused: no tier has {min_examples} held-out answers "
                                 "with both outcomes", judged)  # fmt: skip
    weights = np.array([j.examples for j in counted.values()], dtype=np.float64)

    def mean(field: str) -> float:
        return float(np.average([getattr(j, field) for j in counted.values()], weights=weights))

    old_auc, new_auc = mean("serving_auroc"), mean("candidate_auroc")
    old_err, new_err = mean("serving_error"), mean("candidate_error")
    figures = (
        f"AUROC {new_auc:.3f} vs {old_auc:.3f}, calibration error {new_err:.3f} vs {old_err:.3f}"
    )
    ranks_better = new_auc > old_auc + AUROC_TOLERANCE
    ranks_as_well = new_auc >= old_auc - AUROC_TOLERANCE
    calibrated_better = new_err < old_err - ERROR_TOLERANCE
    calibrated_as_well = new_err <= old_err + ERROR_TOLERANCE
    if ranks_better and calibrated_better:
        return CalibratorVerdict(True, f"ranks better, better calibrated ({figures})", judged)
    if ranks_as_well and calibrated_better:
        return CalibratorVerdict(True, f"better calibrated, ranks as well ({figures})", judged)
    if ranks_better and calibrated_as_well:
        return CalibratorVerdict(True, f"ranks better, calibrated as well ({figures})", judged)
    return CalibratorVerdict(False, f"refused: not better ({figures})", judged)
