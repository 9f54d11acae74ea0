"""Semantic cache quality on pairs nothing was fitted or calibrated on, printed as JSON.

Fits the hit verifier exactly as `rung cache fit` does (pairs split by question into train,
calibration and test; rule-made near misses and rewrites added, the test split's from word
lists the verifier never saw), sets its threshold from the error budget on the calibration
split, and scores the **test split** per source and kind with 95% Wilson intervals. The
report's `headline` comes first: natural pairs at the default 1% budget beside the cache
without a verifier, then the hand-written pairs, then rule-made edits (which come from the same
generator as part of the verifier's training pairs, so they are not the figure that counts).
Per kind:

- `pairs-*`: labelled Quora pairs (human labels, noisy: QQP's "duplicate" is looser than "the
  same answer is right", so part of its near misses are paraphrases and the other way round);
- `rule-*` / `rewrite-*`: rule-made near misses and rephrasings (clean labels);
- `hand-written`: the 60 everyday pairs of bench/data/cache_pairs.jsonl (no generator made them);
- the no-verifier baseline beside it: cosine >= the old 0.87 threshold plus the rule guard.

    python bench/cache_quality.py ../shared/data/cache-pairs/qqp-train.jsonl \\
        [--embedder minilm-l6-q8] [--out bench/results/cache_quality.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from rung.cache.fit import (
    build_sets,
    featurize,
    fit_verifier,
    guard_passes,
    served_by_kind,
    wilson,
)
from rung.classifiers import static, workflow
from rung.classifiers.embedder import open_embedder
from rung.classifiers.outcomes import read_rows
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (0.005, 0.01, 0.02)
OLD_THRESHOLD = 0.87


def plot(points: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in points.items():
        ax.plot([w for w, _ in curve], [h for _, h in curve], label=label)
    ax.axvline(0.01, color="C3", lw=0.8, ls=":", label="1% of near misses")
    ax.set_xscale("log")
    ax.set_xlabel("near misses served (test split)")
    ax.set_ylabel("paraphrases served (test split)")
    ax.set_title("Cache hit verifier: hits vs wrong hits as its threshold moves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def share(k: int, n: int) -> dict[str, Any]:
    low, high = wilson(k, n)
    return {"pairs": n, "served": round(k / n, 4) if n else None,
            "ci95": [round(low, 4), round(high, 4)]}  # fmt: skip


def pooled(rows: dict[str, dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    """Served share of these kinds together, with its 95% Wilson interval."""
    n = sum(rows[k]["pairs"] for k in kinds if k in rows)
    return share(sum(round(rows[k]["served"] * rows[k]["pairs"]) for k in kinds if k in rows), n)


def headline(report: dict[str, Any], test: list[Any], baseline: Any) -> dict[str, Any]:
    """What counts first: natural rephrasings (human-labelled Quora pairs) at the default 1%
    budget, beside the cache without a verifier; the hand-written pairs and rule-made edits
    (rung's own generator, which part of the verifier's training pairs also come from) after."""
    at = report["budgets"]["0.01"]
    rows, hand = at["test"], at["hand_written"]
    kind_of = np.array([p[3] for p in test])

    def without(kind: str) -> dict[str, Any]:
        mask = kind_of == kind
        return share(int(baseline[mask].sum()), int(mask.sum()))

    return {
        "budget": 0.01,
        "natural (Quora, human labels)": {
            "paraphrases served": pooled(rows, ["pairs-paraphrase"]),
            "near misses served": pooled(rows, ["pairs-near-miss"]),
            "related or unrelated served": pooled(rows, ["pairs-related", "pairs-unrelated"]),
        },
        f"natural, without a verifier (cosine >= {OLD_THRESHOLD} and the guard)": {
            "paraphrases served": without("pairs-paraphrase"),
            "near misses served": without("pairs-near-miss"),
        },
        "hand-written (bench/data/cache_pairs.jsonl)": {
            "paraphrases served": hand.get("all paraphrases"),
            "near misses served": hand.get("all near misses"),
        },
        "rule-made (rung's own generator: not the figure that counts)": {
            "paraphrases served": pooled(rows, [k for k in rows if k.startswith("rewrite-")]),
            "near misses served": pooled(rows, [k for k in rows if k.startswith("rule-")]),
        },
    }


def start(doc: str, out: str) -> tuple[argparse.Namespace, list[Any], Any, dict[str, str], Any]:
    """What the cache-pair benches (this one, cache_pairwise.py) start from: their arguments
    (the labelled pairs, the serving embedder, the candidate floor, the JSON's path, default
    bench/results/`out`), the pairs as (a, b, same, kind), the serving embedder with its
    identity, and the static word table the hit verifier's features read."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("pairs", type=Path, help="labelled pairs (the shared qqp-train.jsonl)")
    parser.add_argument("--embedder", default="minilm-l6-q8")
    parser.add_argument("--floor", type=float, default=0.75)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results" / out)
    args = parser.parse_args()
    rows = read_rows(args.pairs)
    pairs = [(r["a"], r["b"], bool(r["same"]), f"pairs-{r['kind']}") for r in rows]
    embedder, identity = open_embedder(args.embedder, default_models_dir(), threads=2)
    words, _ = open_embedder(static.NAME, default_models_dir())
    return args, pairs, embedder, identity, words


def main() -> None:
    args, pairs, embedder, identity, words = start(__doc__, "cache_quality.json")
    sets = build_sets(pairs)
    hand = [
        (r["a"], r["b"], r["label"] == "paraphrase", "hand-written")
        for r in read_rows(ROOT / "bench/data/cache_pairs.jsonl")
    ]

    def embed(texts: list[str]) -> Any:
        return workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())

    verifier, x = fit_verifier(sets, embed, words.embed, identity)
    x_hand = featurize(hand, embed, words.embed)
    report: dict[str, Any] = {
        "benchmark": "cache_quality",
        "embedder": identity,
        "floor": args.floor,
        "pairs": {name: len(items) for name, items in sets.items()},
        "budgets": {},
    }
    for budget in BUDGETS:
        threshold = verifier.calibration.threshold(args.floor, budget)
        report["budgets"][str(budget)] = {
            "threshold": threshold,
            "test": served_by_kind(verifier, sets["test"], x["test"], args.floor, threshold),
            "hand_written": served_by_kind(verifier, hand, x_hand, args.floor, threshold),
        }
    # Without a verifier: cosine >= 0.87 and the guard (what rung served before).
    test = sets["test"]
    ok = guard_passes(test) & (x["test"][:, 0] >= OLD_THRESHOLD)
    kinds = np.array([p[3] for p in test])
    report["without_verifier"] = {
        kind: round(float(ok[kinds == kind].mean()), 4) for kind in sorted(set(kinds.tolist()))
    }
    report = {"headline": headline(report, test, ok), **report}
    # Curves: as the threshold moves, paraphrases served vs near misses served.
    scores = verifier.probabilities(x["test"].tolist())
    same = np.array([p[2] for p in test], dtype=np.bool_)
    base = guard_passes(test) & (x["test"][:, 0] >= args.floor)
    curves: dict[str, list[tuple[float, float]]] = {}
    for label, prefix in (("Quora pairs (noisy labels)", "pairs-"), ("rule-made", "r")):
        mine = np.array([k.startswith(prefix) for k in kinds.tolist()])
        if prefix == "pairs-":
            mine &= ~np.array([k.endswith(("related", "unrelated")) for k in kinds.tolist()])
        curve = []
        for t in np.linspace(0, 1, 201):
            served = base & (scores >= t) & mine
            wrong = served[~same & mine].mean() if (~same & mine).any() else 0
            curve.append((max(float(wrong), 1e-4), float(served[same & mine].mean())))
        curves[label] = curve
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(curves, args.out.with_suffix(".png"))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
