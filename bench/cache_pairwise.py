"""How far can a hit verifier built on the serving embedder go on natural rephrasings? Printed
as JSON (issue 31's evidence).

The cache's verifier must tell a Quora paraphrase from a Quora near miss (human labels, word-set
Jaccard >= 0.5, the pairs that look alike but need another answer). This bench compares, on
the same split as `rung cache fit` (by question: train / calibration / test, rule-made pairs
added as there), everything that is available on the request path without another model:

- `features`: today's verifier (boosted trees over word-level differences and the cosine);
- `pair head`: a logistic over the two embeddings read together, [u * v, |u - v|] (the
  classic head of a bi-encoder pair classifier), fitted on the train split;
- `features and pair head`: serve only when both pass, the trees' threshold set on rule-made
  near misses and the head's on natural ones (a budget per source of pairs).

For each: the test split's AUROC of paraphrase vs near miss (natural pairs), and the share of
paraphrases and near misses served when the calibration split's natural near misses set the
threshold to serve at most 1% of them (a plug-in rate, no confidence bound). Also: how many
natural wrong candidates the calibration split holds above the floor, against the number a 95%
Clopper-Pearson bound needs to promise 1% at all (the bound `rung cache fit` uses).

    python bench/cache_pairwise.py ../shared/data/cache-pairs/qqp-train.jsonl \\
        [--out bench/results/cache_pairwise.json]
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
from cache_quality import start  # the sibling bench: python bench/cache_pairwise.py

from rung.cache.fit import build_sets, fit_verifier, guard_passes, upper_bound, wilson
from rung.classifiers import workflow
from rung.confidence.fit import auroc

BUDGET = 0.01
Array = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def plug_in_threshold(scores: Array, candidates: Mask, wrong: Mask, budget: float) -> float:
    """Lowest threshold serving at most `budget` of the `wrong` pairs (candidates only)."""
    total = int(wrong.sum())
    for t in np.unique(scores[candidates & wrong])[::-1]:
        if int((candidates & wrong & (scores >= t)).sum()) > budget * total:
            return float(np.nextafter(t, np.inf))
    return float(scores.min())


def needed_for_bound(budget: float) -> int:
    """Fewest wrong pairs, none served, for the 95% upper bound to be within `budget`."""
    n = 1
    while upper_bound(0, n) > budget:
        n += 1
    return n


def pair_rows(items: list[Any], table: dict[str, Array]) -> Array:
    u = np.stack([table[a] for a, _, _, _ in items]).astype(np.float64)
    v = np.stack([table[b] for _, b, _, _ in items]).astype(np.float64)
    return np.hstack([u * v, np.abs(u - v)])


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    args, pairs, embedder, identity, words = start(__doc__, "cache_pairwise.json")
    sets = build_sets(pairs)
    texts = sorted({t for items in sets.values() for a, b, _, _ in items for t in (a, b)})
    vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
    table = dict(zip(texts, vectors, strict=True))

    def embed(batch: list[str]) -> Any:
        return np.stack([table[t] for t in batch])

    trees, x = fit_verifier(sets, embed, words.embed, identity)  # as `rung cache fit` fits it
    y = {name: np.array([p[2] for p in items]) for name, items in sets.items()}
    kind = {name: np.array([p[3] for p in items]) for name, items in sets.items()}
    head = LogisticRegression(C=1.0, max_iter=3000).fit(pair_rows(sets["train"], table),
                                                        y["train"])  # fmt: skip
    scores = {
        "features": {s: trees.probabilities(x[s].tolist()) for s in ("calibration", "test")},
        "pair head": {
            s: head.decision_function(pair_rows(sets[s], table)) for s in ("calibration", "test")
        },
    }
    candidate = {s: guard_passes(sets[s]) & (x[s][:, 0] >= args.floor) for s in x}
    natural_wrong = {s: kind[s] == "pairs-near-miss" for s in x}
    rule_wrong = {s: ~np.char.startswith(kind[s].astype(str), "pairs-") & ~y[s] for s in x}
    paraphrase = {s: kind[s] == "pairs-paraphrase" for s in x}

    def served(mask: Mask) -> dict[str, Any]:
        out = {}
        for label, of in (("paraphrases", paraphrase), ("near misses", natural_wrong),
                          ("rule-made near misses", rule_wrong)):  # fmt: skip
            k, n = int((mask & of["test"]).sum()), int(of["test"].sum())
            low, high = wilson(k, n)
            out[label] = {"served": round(k / n, 4), "ci95": [round(low, 4), round(high, 4)]}
        return out

    variants: dict[str, Any] = {}
    for name, s in scores.items():
        t = plug_in_threshold(s["calibration"], candidate["calibration"],
                              natural_wrong["calibration"], BUDGET)  # fmt: skip
        natural = paraphrase["test"] | natural_wrong["test"]
        variants[name] = {
            "auroc_paraphrase_vs_near_miss": round(
                auroc(s["test"][natural], paraphrase["test"][natural].astype(int)), 3
            ),
            "test": served(candidate["test"] & (s["test"] >= t)),
        }
    f, h = scores["features"], scores["pair head"]
    tf = plug_in_threshold(f["calibration"], candidate["calibration"],
                           rule_wrong["calibration"], BUDGET)  # fmt: skip
    passed = candidate["calibration"] & (f["calibration"] >= tf)
    th = plug_in_threshold(h["calibration"], passed, natural_wrong["calibration"], BUDGET)
    variants["features and pair head"] = {
        "test": served(candidate["test"] & (f["test"] >= tf) & (h["test"] >= th))
    }
    report = {
        "benchmark": "cache_pairwise",
        "embedder": identity,
        "floor": args.floor,
        "budget": BUDGET,
        "pairs": {name: len(items) for name, items in sets.items()},
        "variants": variants,
        "certifying": {
            "natural wrong candidates in calibration (above the floor, past the guard)": int(
                (candidate["calibration"] & natural_wrong["calibration"]).sum()
            ),
            "needed for a 95% bound of 1% with none served": needed_for_bound(BUDGET),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
