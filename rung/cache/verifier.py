"""The hit verifier: for a cached question above the similarity floor, is its answer right for
the new question? A small learned model over what tells a rephrasing from a near miss.

Embeddings see topics, not the one word that changes the answer ("best" vs "worst", "km to
miles" vs "miles to km"). The features therefore look at the words the two questions do *not*
share: how many, how similar the swapped-in words are to the ones they replace (a sibling or an
antonym is very similar; a rewording is not a one-for-one swap), whether the same words come in
another order, how much of each question the other covers; beside the embeddings' cosine.

The model is a gradient-boosted tree ensemble stored as plain arrays (`verifier.npz`, no pickle)
plus a JSON manifest, with the calibration split's scores: the gateway sets its threshold from
the error budget (`cache.max_wrong_hit_rate`) and its similarity floor at startup. Scoring one
pair costs well under a millisecond.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.errors import RungError

Array = npt.NDArray[np.float64]
WordVectors = Callable[[list[str]], npt.NDArray[np.float32]]
"""Unit vectors for single words (the static embedder's rows)."""
FORMAT = "rung-verifier/1"

_WORD = re.compile(r"[a-z0-9]+(?:[+#]+|'[a-z]+)?")
_STOP_WORDS = (
    "a an the is are was were be been being do does did doing have has had i you he she it we "
    "they me my your his her its our their this that these those what which who whom whose "
    "when where why how can could would should will shall may might must of in on at to for "
    "from by with about as into than then so if or and but not no yes there here some any "
    "all each every one get got make way ways best good much many most more very just really "
    "also s t"
)
_STOP = frozenset(_STOP_WORDS.split())

FEATURES = (
    "cosine",
    "jaccard",
    "content_jaccard",
    "only_query",
    "only_cached",
    "swapped",
    "swap_similarity_max",
    "swap_similarity_mean",
    "difference_cosine",
    "order_kept",
    "same_words_other_order",
    "length_ratio",
    "covered_query",
    "covered_cached",
    "soft_coverage_query_min",
    "soft_coverage_query_mean",
    "soft_coverage_cached_min",
    "soft_coverage_cached_mean",
)


class VerifierError(RungError):
    """A verifier file is missing or malformed."""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a[:64]:
        current = [0]
        for j, y in enumerate(b[:64]):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def features(query: str, cached: str, cosine: float, vectors: WordVectors) -> list[float]:
    """The verifier's inputs for one (new question, cached question) pair. Pure."""
    wa, wb = words(query), words(cached)
    sa, sb = set(wa), set(wb)
    union = sa | sb
    ca, cb = sa - _STOP, sb - _STOP
    only_a = sorted(ca - cb)
    only_b = sorted(cb - ca)
    content = ca | cb
    best = mean_best = 0.0
    difference = 1.0 if not only_a and not only_b else 0.0
    soft = [1.0, 1.0, 1.0, 1.0]
    la, lb = sorted(ca), sorted(cb)
    if la and lb:
        table = vectors(la + lb)  # one call for every content word of both
        va_all, vb_all = table[: len(la)], table[len(la) :]
        all_sims = va_all @ vb_all.T
        exact = np.array([[x == y for y in lb] for x in la])
        all_sims = np.where(exact, 1.0, all_sims)
        forward, backward = all_sims.max(axis=1), all_sims.max(axis=0)
        soft = [float(forward.min()), float(forward.mean()), float(backward.min()),
                float(backward.mean())]  # fmt: skip
        if only_a and only_b:
            ia = [la.index(w) for w in only_a]
            ib = [lb.index(w) for w in only_b]
            va, vb = va_all[ia], vb_all[ib]
            sims = va @ vb.T
            best = float(sims.max())
            mean_best = float(sims.max(axis=1).mean())
            ma, mb = va.mean(axis=0), vb.mean(axis=0)
            norm = float(np.linalg.norm(ma) * np.linalg.norm(mb))
            difference = float(ma @ mb) / norm if norm > 0 else 0.0
    lcs = _lcs(wa, wb)
    longest = max(len(wa), len(wb), 1)
    return [
        cosine,
        len(sa & sb) / len(union) if union else 1.0,
        len(ca & cb) / len(content) if content else 1.0,
        float(len(only_a)),
        float(len(only_b)),
        float(min(len(only_a), len(only_b))),
        best,
        mean_best,
        difference,
        lcs / longest,
        float(Counter(wa) == Counter(wb) and wa != wb),
        min(len(wa), len(wb)) / longest,
        len(ca & cb) / len(ca) if ca else 1.0,
        len(ca & cb) / len(cb) if cb else 1.0,
        *soft,
    ]


@dataclass(frozen=True)
class Trees:
    """A boosted ensemble as arrays [trees, nodes]: feature, threshold, left, right, leaf
    value, is-leaf; missing values never occur (every feature is defined)."""

    feature: npt.NDArray[np.int64]
    threshold: Array
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    value: Array
    leaf: npt.NDArray[np.bool_]
    baseline: float
    depth: int

    def raw(self, x: Array) -> Array:
        """Log-odds for rows of x [n, features]."""
        n, trees = len(x), len(self.feature)
        node = np.zeros((n, trees), dtype=np.int64)
        cols = np.arange(trees)[None, :]
        for _ in range(self.depth):
            f = self.feature[cols, node]
            go_left = x[np.arange(n)[:, None], f] <= self.threshold[cols, node]
            nxt = np.where(go_left, self.left[cols, node], self.right[cols, node])
            node = np.where(self.leaf[cols, node], node, nxt)
        out: Array = self.value[cols, node].sum(axis=1) + self.baseline
        return out


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0 if k < n else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def upper_bound(wrong: int, total: int, confidence: float = 0.95) -> float:
    """Clopper-Pearson upper bound of a rate seen as `wrong` out of `total`: the largest rate
    under which seeing so few is still at least (1 - confidence) likely."""
    if total == 0 or wrong >= total:
        return 1.0
    lo, hi = wrong / total, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _binomial_cdf(wrong, total, mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def threshold_for(
    scores: Array, same: npt.NDArray[np.bool_], budget: float, confidence: float = 0.95
) -> float | None:
    """The lowest score threshold at which the wrong-hit rate (wrong candidates served over
    wrong candidates) has an upper confidence bound within `budget`; None when even serving
    nothing but the single best-scored candidate would not be (too few wrong pairs to promise
    that little)."""
    wrong = np.sort(scores[~same])[::-1]
    n = len(wrong)
    if n == 0:
        return None
    allowed = -1  # the most wrong candidates that may be served
    lo, hi = 0, n
    while lo <= hi:
        mid = (lo + hi) // 2
        if upper_bound(mid, n, confidence) <= budget:
            allowed, lo = mid, mid + 1
        else:
            hi = mid - 1
    if allowed < 0:
        return None
    if allowed >= n:
        return float(scores.min())
    # Serve only scores above the (allowed+1)-th best wrong one: at most `allowed` served.
    return float(np.nextafter(wrong[allowed], np.inf))


@dataclass(frozen=True)
class Calibration:
    """The calibration split's candidates (those the guard passes): verifier score, whether one
    answer is right for both, and their cosine."""

    scores: Array
    same: npt.NDArray[np.bool_]
    cosine: Array

    def threshold(self, floor: float, budget: float) -> float | None:
        above = self.cosine >= floor
        return threshold_for(self.scores[above], self.same[above], budget)


@dataclass(frozen=True)
class Verifier:
    trees: Trees
    calibration: Calibration
    embedder: dict[str, str]
    """The embedder whose cosine the model was fitted with."""
    report: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, rows: list[list[float]]) -> Array:
        x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
        p: Array = 1.0 / (1.0 + np.exp(-np.clip(self.trees.raw(x), -40, 40)))
        return p

    def score(self, query: str, cached: str, cosine: float, vectors: WordVectors) -> float:
        return float(self.probabilities([features(query, cached, cosine, vectors)])[0])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        t = self.trees
        np.savez_compressed(
            directory / "verifier.npz",
            feature=t.feature,
            threshold=t.threshold,
            left=t.left,
            right=t.right,
            value=t.value,
            leaf=t.leaf,
            calibration_scores=self.calibration.scores.astype(np.float32),
            calibration_same=self.calibration.same,
            calibration_cosine=self.calibration.cosine.astype(np.float32),
        )
        manifest = {
            "format": FORMAT,
            "features": list(FEATURES),
            "embedder": self.embedder,
            "baseline": t.baseline,
            "depth": t.depth,
            "report": self.report,
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load_verifier(directory: Path) -> Verifier:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        with np.load(directory / "verifier.npz", allow_pickle=False) as a:
            trees = Trees(
                feature=np.asarray(a["feature"], dtype=np.int64),
                threshold=np.asarray(a["threshold"], dtype=np.float64),
                left=np.asarray(a["left"], dtype=np.int64),
                right=np.asarray(a["right"], dtype=np.int64),
                value=np.asarray(a["value"], dtype=np.float64),
                leaf=np.asarray(a["leaf"], dtype=np.bool_),
                baseline=float(manifest["baseline"]),
                depth=int(manifest["depth"]),
            )
            calibration = Calibration(
                np.asarray(a["calibration_scores"], dtype=np.float64),
                np.asarray(a["calibration_same"], dtype=np.bool_),
                np.asarray(a["calibration_cosine"], dtype=np.float64),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise VerifierError(f"cannot load the cache verifier in {directory}: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("features") != list(FEATURES):
        raise VerifierError(f"{directory}: another verifier format or feature set; refit it")
    return Verifier(trees, calibration, manifest["embedder"], manifest["report"])


def resolve_verifier(name_or_dir: str) -> Path:
    """A verifier directory from a config value: a path, or `default` (the shipped one)."""
    from importlib import resources

    path = Path(name_or_dir).expanduser()
    if (path / "manifest.json").exists():
        return path
    shipped = Path(str(resources.files("rung.cache") / "defaults" / name_or_dir))
    if (shipped / "manifest.json").exists():
        return shipped
    raise VerifierError(f"no cache verifier {name_or_dir!r}: not a directory from `rung cache fit`")


def verifying(
    verifier: Verifier, threshold: float, vectors: WordVectors
) -> Callable[[str, str, float], bool]:
    """The cache's hit check: serve when the verifier's P(same answer) reaches the threshold."""

    def verify(query: str, cached: str, cosine: float) -> bool:
        return verifier.score(query, cached, cosine, vectors) >= threshold

    return verify
