"""`rung train` and `rung eval`: outcomes + ladder (+ embedder) -> classifier -> metrics and curve.

Embeddings of a data set are cached on disk by (embedder, texts) so that re-training and
cross-validation do not embed the same prompts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from rung.classifiers.embedder import Embedder
from rung.classifiers.evaluate import envelope, summarize
from rung.classifiers.model import DifficultyModel
from rung.classifiers.outcomes import DataError, Ladder, LadderData, ladder_data, read_outcomes
from rung.classifiers.train import Method, train

Matrix = npt.NDArray[np.float32]


def embeddings_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rung" / "embeddings"


def embed_all(
    embedder: Embedder,
    identity: dict[str, str],
    texts: list[str],
    cache_dir: Path | None = None,
    batch: int = 32,
) -> Matrix:
    """Embed many texts (similar lengths batched together) with a progress bar. With a cache
    directory, vectors are kept per text and per embedder, so any later run over any mix of the
    same prompts (another ladder, cross-validation, eval after train) embeds nothing twice."""
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    name = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24] + ".npz"
    store = cache_dir / name if cache_dir is not None else None
    known: dict[str, Matrix] = {}
    if store is not None and store.exists():
        with np.load(store, allow_pickle=False) as cached:
            known = dict(zip(cached["keys"].tolist(), cached["vectors"], strict=True))
    missing = sorted(
        {k: i for i, k in enumerate(keys) if k not in known}.values(), key=lambda i: len(texts[i])
    )
    with tqdm(
        total=len(missing),
        desc="embedding",
        unit="prompt",
        file=sys.stderr,
        disable=None if missing else True,
    ) as bar:
        for start in range(0, len(missing), batch):
            rows = missing[start : start + batch]
            for i, vector in zip(rows, embedder.embed([texts[i] for i in rows]), strict=True):
                known[keys[i]] = vector
            bar.update(len(rows))
    if store is not None and missing:
        store.parent.mkdir(parents=True, exist_ok=True)
        partial = store.with_suffix(".partial.npz")
        np.savez(partial, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        partial.replace(store)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def load_data(files: list[Path], ladder: Ladder) -> LadderData:
    data = ladder_data(read_outcomes(files), ladder)
    if len(data.outcomes) == 0:
        models = ", ".join(str(t.model) for t in ladder.tiers)
        raise DataError(
            f"no prompt in {', '.join(map(str, files))} has outcomes for every "
            f"tier of the ladder ({models})"
        )
    return data


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method,
    files: list[Path],
) -> DifficultyModel:
    texts = [o.prompt for o in data.outcomes]
    summary = {
        "files": [{"name": f.name, "sha256": file_digest(f)} for f in files],
        "ladder": ladder.name,
        "prompts": len(texts),
        "tier_accuracy": [round(float(a), 4) for a in data.scores.mean(axis=0)],
        "other_models": int(data.others.shape[1]),
    }
    tiers = [t.model_dump() for t in ladder.tiers]
    return train(embeddings, texts, data.scores, data.others, tiers, identity, method, summary)


def evaluate(
    model: DifficultyModel, data: LadderData, embeddings: Matrix, ladder: Ladder, target: float
) -> dict[str, Any]:
    if model.tier_names != [t.name for t in ladder.tiers]:
        raise DataError(
            f"the classifier's tiers {model.tier_names} are not the ladder's "
            f"{[t.name for t in ladder.tiers]}"
        )
    texts = [o.prompt for o in data.outcomes]
    probabilities = model.predict(embeddings, texts)
    return summarize(probabilities, data.scores, data.costs, ladder.prices, target)


def cross_validate(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method,
    target: float,
    folds: int = 5,
    repeats: int = 3,
    files: list[Path] | None = None,
) -> dict[str, Any]:
    """Train on k-1 folds, evaluate on the held-out one; every prompt is held out once per
    repeat. Reports each metric's mean and standard deviation over the held-out folds."""
    runs: list[dict[str, Any]] = []
    n = len(data.outcomes)
    out_of_fold = np.zeros(data.scores.shape)
    texts = [o.prompt for o in data.outcomes]
    for repeat in range(repeats):
        assignment = np.random.default_rng(repeat).permutation(n) % folds
        for fold in range(folds):
            train_idx = np.flatnonzero(assignment != fold)
            test_idx = np.flatnonzero(assignment == fold)
            part = _subset(data, train_idx)
            model = fit(part, embeddings[train_idx], ladder, identity, method, files or [])
            runs.append(
                evaluate(model, _subset(data, test_idx), embeddings[test_idx], ladder, target)
            )
            if repeat == 0:
                held_texts = [texts[i] for i in test_idx]
                out_of_fold[test_idx] = model.predict(embeddings[test_idx], held_texts)

    def stat(path: tuple[str, ...]) -> dict[str, float]:
        values = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(float(value))
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    keys = {
        "router_cost_at_95": ("router", "cost_at_95"),
        "baseline_cost_at_95": ("baseline", "cost_at_95"),
        "oracle_cost_at_95": ("oracle", "cost_at_95"),
        "router_score_at_half_cost": ("router", "score_at_half_cost"),
        "baseline_score_at_half_cost": ("baseline", "score_at_half_cost"),
        "calibration_error": ("calibration_error",),
    }
    wins = sum(r["router"]["cost_at_95"] < r["baseline"]["cost_at_95"] for r in runs)
    pooled = summarize(out_of_fold, data.scores, data.costs, ladder.prices, target)
    return {
        "cross_validation": {
            "folds": folds,
            "repeats": repeats,
            "held_out_runs": len(runs),
            "router_beats_baseline_in": f"{wins}/{len(runs)}",
            **{name: stat(path) for name, path in keys.items()},
        },
        # One curve from out-of-fold predictions: every prompt scored by a model that never saw
        # it (first repeat).
        **pooled,
    }


def _subset(data: LadderData, rows: npt.NDArray[np.int64]) -> LadderData:
    return LadderData(
        [data.outcomes[i] for i in rows], data.scores[rows], data.costs[rows], data.others[rows]
    )


def plot_curve(metrics: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = metrics["sweep"]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(
        [p["cost"] for p in sweep],
        [p["score"] for p in sweep],
        "-o",
        markersize=2,
        label="rung classifier (quality target swept)",
    )
    tiers = metrics["always_tier"]
    ax.plot(
        [t["cost"] for t in tiers],
        [t["score"] for t in tiers],
        "s",
        color="grey",
        label="always one tier",
    )
    hull = envelope([(t["cost"], t["score"]) for t in tiers])
    ax.plot(
        [c for c, _ in hull],
        [v for _, v in hull],
        "--",
        color="grey",
        label="baseline: best mix of single tiers",
    )
    oracle_x = metrics["oracle"]["cost_at_95"]
    ax.axhline(
        metrics["score_needed_for_95"],
        color="red",
        lw=0.8,
        ls=":",
        label="95% of the top tier's score",
    )
    ax.plot([oracle_x], [metrics["score_needed_for_95"]], "k*", label="oracle at 95%")
    router_x = metrics["router"]["cost_at_95"]
    if router_x != float("inf"):
        ax.axvline(router_x, color="C0", lw=0.8, ls=":")
    ax.set_xlabel("cost (normalised: 1 = every prompt to the top tier)")
    ax.set_ylabel("mean score")
    ax.set_title(title)
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline(metrics: dict[str, Any]) -> str:
    r, b, o = metrics["router"], metrics["baseline"], metrics["oracle"]
    need = metrics["score_needed_for_95"]
    return (
        f"cost_at_95: router {r['cost_at_95']:.3f}, baseline {b['cost_at_95']:.3f}, "
        f"oracle {o['cost_at_95']:.3f} (score needed {need:.3f}); score_at_half_cost: "
        f"router {r['score_at_half_cost']:.3f}, baseline {b['score_at_half_cost']:.3f}; "
        f"calibration error {metrics['calibration_error']:.3f}"
    )
