"""P(the answer is correct) from its confidence signals: a per-tier logistic model.

Fitted with scikit-learn on labelled outputs (`rung label` records the signals), saved as plain
JSON (weights, feature scaling, held-out metrics), never pickle. Prediction is numpy-free
arithmetic on one answer, cheap enough for every response.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.confidence.signals import LOWEST_K, Signals, TokenScore, answer_signals

FORMAT = "rung-confidence/1"
FEATURES = (
    "mean_logprob",
    "min_logprob",
    "low_quantile_logprob",
    "lowest_k_mean",
    "mean_entropy",
    "log_tokens",
    "truncated",
    "empty",
    "refusal",
    "invalid_json",
    "no_logprobs",
)


def features(signals: Signals) -> list[float]:
    """The model's inputs; missing logprob statistics are 0 with `no_logprobs` set."""

    def value(x: float | None) -> float:
        return 0.0 if x is None else float(x)

    return [
        value(signals.mean_logprob),
        value(signals.min_logprob),
        value(signals.low_quantile_logprob),
        value(signals.lowest_k_mean),
        value(signals.mean_entropy),
        math.log1p(signals.tokens),
        float(signals.truncated),
        float(signals.empty),
        float(signals.refusal),
        float(signals.invalid_json),
        float(signals.tokens == 0),
    ]


def prefix_signals(token_scores: Sequence[Sequence[float | None]], k: int) -> Signals:
    """Signals of the first k tokens, from the [logprob, entropy] pairs `rung label` keeps: what a
    stream probe of k tokens would have seen (text checks do not apply to a prefix)."""
    scores = [
        TokenScore(float(lp), None if ent is None else float(ent))  # type: ignore[arg-type]
        for lp, ent in token_scores[:k]
    ]
    return answer_signals("x", None, scores)


@dataclass(frozen=True)
class TierCalibrator:
    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]

    def predict(self, signals: Signals) -> float:
        return self.predict_features(features(signals))

    def predict_features(self, x: Sequence[float]) -> float:
        z = self.bias + sum(
            w * (v - m) / s
            for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


@dataclass(frozen=True)
class Calibrator:
    tiers: dict[str, TierCalibrator]
    """Whole answers, by tier name."""
    probe: dict[str, TierCalibrator] = field(default_factory=dict)
    """The first `probe_tokens` tokens of an answer (the stream probe), by tier name."""
    probe_tokens: int = 24
    metrics: dict[str, Any] = field(default_factory=dict)

    def confidence(self, tier: str, signals: Signals, probe: bool = False) -> float | None:
        model = (self.probe if probe else self.tiers).get(tier)
        return None if model is None else model.predict(signals)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "features": list(FEATURES),
            "lowest_k": LOWEST_K,
            "probe_tokens": self.probe_tokens,
            "tiers": {name: vars(t) for name, t in self.tiers.items()},
            "probe": {name: vars(t) for name, t in self.probe.items()},
            "metrics": self.metrics,
        }
        path.write_text(json.dumps(data, indent=2) + "\n")


def load_calibrator(path: Path) -> Calibrator:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the confidence calibrator {path}: {exc}") from None
    if data.get("format") != FORMAT or data.get("features") != list(FEATURES):
        raise ValueError(f"{path} is not a rung confidence calibrator of this version; refit it")

    def models(section: dict[str, Any]) -> dict[str, TierCalibrator]:
        out = {}
        for name, t in section.items():
            n = len(FEATURES)
            if not all(len(t[k]) == n for k in ("weights", "mean", "scale")):
                raise ValueError(f"{path}: tier {name!r} has the wrong number of weights")
            out[name] = TierCalibrator(
                [float(v) for v in t["weights"]],
                float(t["bias"]),
                [float(v) for v in t["mean"]],
                [float(v) or 1.0 for v in t["scale"]],
            )
        return out

    return Calibrator(
        models(data["tiers"]),
        models(data.get("probe", {})),
        int(data.get("probe_tokens") or 24),
        data.get("metrics", {}),
    )


def shipped_calibrator(name_or_path: str) -> Path:
    """A calibrator file from a config value: a path, or a shipped one's name (`local`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    from importlib import resources

    shipped = Path(str(resources.files("rung.confidence") / "defaults" / f"{name_or_path}.json"))
    if shipped.is_file():
        return shipped
    raise ValueError(f"no confidence calibrator {name_or_path!r}: not a file, not a shipped one")


def open_calibrator(name_or_path: str) -> Calibrator:
    """The calibrator a config value or `--calibrator` names (a file, or a shipped name)."""
    return load_calibrator(shipped_calibrator(name_or_path))


def same_calibrator(a: str, b: str) -> bool:
    """Do two such values name one calibrator (`local` and the shipped local.json's path do)?
    Compared by name when either cannot be found here."""
    try:
        return shipped_calibrator(a).resolve() == shipped_calibrator(b).resolve()
    except ValueError:
        return a == b
