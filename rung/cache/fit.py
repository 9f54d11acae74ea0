"""Fitting the hit verifier and setting its threshold from an error budget (`rung cache fit`).

Pairs are split **by question** before anything is fitted: every question, with every pair it
is in, lands in exactly one of train (70%), calibration (15%) and test (15%), so no figure
measured on the test split comes from a question the verifier or its threshold saw.

The calibration split's scores ride along in the artifact, so the gateway sets the threshold for
its own similarity floor and error budget at startup (rung.cache.verifier.threshold_for).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rung.cache.verifier import (
    FEATURES,
    Calibration,
    Trees,
    Verifier,
    WordVectors,
    features,
    threshold_for,
    upper_bound,
)

Array = npt.NDArray[np.float64]
SPLITS = (("train", 70), ("calibration", 85), ("test", 100))


def split_by_question(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """A split name per pair; pairs that share a question (transitively) share a split."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def key(text: str) -> str:
        return " ".join(text.lower().split())

    for a, b in pairs:
        ra, rb = find(key(a)), find(key(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    names = []
    for a, _ in pairs:
        bucket = int(hashlib.sha1(find(key(a)).encode()).hexdigest()[:8], 16) % 100
        names.append(next(name for name, upto in SPLITS if bucket < upto))
    return names


def fit_trees(x: Array, y: npt.NDArray[np.bool_], seed: int = 0) -> Trees:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_depth=6, l2_regularization=1.0, random_state=seed
    ).fit(x, y.astype(int))
    return export(model)


def export(model: Any) -> Trees:
    """sklearn's HistGradientBoostingClassifier (binary) as padded node arrays."""
    trees = [predictors[0].nodes for predictors in model._predictors]
    size = max(len(t) for t in trees)

    def column(name: str, dtype: Any) -> Any:
        out = np.zeros((len(trees), size), dtype=dtype)
        for i, t in enumerate(trees):
            out[i, : len(t)] = t[name]
        return out

    leaf = column("is_leaf", np.bool_)
    leaf[:, :] |= np.arange(size)[None, :] >= np.array([len(t) for t in trees])[:, None]
    depth = int(max(int(t["depth"].max()) for t in trees)) + 1
    return Trees(
        feature=column("feature_idx", np.int64),
        threshold=column("num_threshold", np.float64),
        left=column("left", np.int64),
        right=column("right", np.int64),
        value=column("value", np.float64),
        leaf=leaf,
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        depth=depth,
    )


__all__ = ["FEATURES", "fit_trees", "split_by_question", "threshold_for", "upper_bound"]


def build_sets(
    pairs: Sequence[tuple[str, str, bool, str]], generated_per_split: int = 6000, seed: int = 1
) -> dict[str, list[tuple[str, str, bool, str]]]:
    """Labelled pairs (a, b, same, kind) split by question, each split topped up with rule-made
    pairs from its own questions: train and calibration with the `train` word lists, test with
    the `test` ones."""
    from rung.cache.edits import generate

    names = split_by_question([(a, b) for a, b, _, _ in pairs])
    sets: dict[str, list[tuple[str, str, bool, str]]] = {name: [] for name, _ in SPLITS}
    for pair, name in zip(pairs, names, strict=True):
        sets[name].append(pair)
    for name, items in sets.items():
        questions = sorted({a for a, _, _, _ in items})[:generated_per_split]
        half: Literal["train", "test"] = "test" if name == "test" else "train"
        items += [(p.a, p.b, p.same, p.kind) for p in generate(questions, half, seed)]
    return sets


def featurize(
    items: Sequence[tuple[str, str, bool, str]],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    vectors: WordVectors,
) -> Array:
    """Feature rows for pairs; `embed` gives the cache embedder's unit vectors for all the
    texts at once (batch and cache inside it: rung.classifiers.workflow.embed_all)."""
    from tqdm import tqdm

    texts = sorted({t for a, b, _, _ in items for t in (a, b)})
    table = dict(zip(texts, embed(texts), strict=True))
    rows = [
        features(a, b, float(table[a] @ table[b]), vectors)
        for a, b, _, _ in tqdm(items, desc="features", unit="pair", disable=None)
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(items), len(FEATURES))


def guard_passes(items: Sequence[tuple[str, str, bool, str]]) -> npt.NDArray[np.bool_]:
    from rung.cache.guard import near_miss

    return np.array([near_miss(a, b) is None for a, b, _, _ in items], dtype=np.bool_)


def fit_verifier(
    sets: dict[str, list[tuple[str, str, bool, str]]],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    vectors: WordVectors,
    identity: dict[str, str],
) -> tuple[Verifier, dict[str, Array]]:
    """Fit on train; keep the calibration split's guard-passing candidates in the artifact.
    Returns the verifier and every split's features (for reports)."""
    x = {name: featurize(items, embed, vectors) for name, items in sets.items()}
    y = {name: np.array([p[2] for p in items], dtype=np.bool_) for name, items in sets.items()}
    trees = fit_trees(x["train"], y["train"])
    provisional = Verifier(
        trees, Calibration(np.zeros(0), np.zeros(0, bool), np.zeros(0)), identity
    )
    # The budget is over near misses: candidates that look like the question but need another
    # answer (QQP's loosely related pairs rarely reach the floor and would dilute it).
    kinds = [p[3] for p in sets["calibration"]]
    near = np.array([not k.endswith(("-related", "-unrelated")) for k in kinds], dtype=np.bool_)
    ok = guard_passes(sets["calibration"]) & near
    scores = provisional.probabilities(x["calibration"][ok].tolist())
    calibration = Calibration(scores, y["calibration"][ok], x["calibration"][ok, 0])
    return Verifier(trees, calibration, identity), x


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a rate k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def served_by_kind(
    verifier: Verifier,
    items: Sequence[tuple[str, str, bool, str]],
    x: Array,
    floor: float,
    threshold: float | None,
) -> dict[str, dict[str, Any]]:
    """Per kind of pair: how many, how many the cache would serve (floor, guard, verifier)."""
    ok = guard_passes(items)
    scores = verifier.probabilities(x.tolist()) if len(x) else np.zeros(0)
    served = ok & (x[:, 0] >= floor) & (scores >= (threshold if threshold is not None else 2.0))
    kinds = np.array([p[3] for p in items])
    same = np.array([p[2] for p in items], dtype=np.bool_)
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds.tolist())):
        mask = kinds == kind
        k, n = int(served[mask].sum()), int(mask.sum())
        low, high = wilson(k, n)
        out[kind] = {
            "should_hit": bool(same[mask].all()),
            "pairs": n,
            "served": round(k / n, 4),
            "ci95": [round(low, 4), round(high, 4)],
        }
    for label, mask in (("all paraphrases", same), ("all near misses", ~same)):
        k, n = int(served[mask].sum()), int(mask.sum())
        if n:
            out[label] = {
                "pairs": n,
                "served": round(k / n, 4),
                "ci95": [round(v, 4) for v in wilson(k, n)],
            }
    return out
