"""Why the cascade buys little on MMLU-Pro, printed as JSON: what the answer verifier can
*confirm*, not only what it can reject.

A cascade saves money only by accepting the cheap tier's answer, so what matters is the
precision of the answers it accepts, next to what the top tier would have scored on the same
prompts. For each ladder (MMLU-Pro, and GSM8K where the cascade works), fitted exactly as
`bench/routing.py` fits it, on the out-of-fold predictions of the fitting prompts
("validation") and on the untouched test split:

- per tier: accuracy, cost share, AUROC of the prompt model and of the answer verifier, and the
  verifier's AUROC among answers that gave a final answer at all;
- the cheapest tier's answers by decile of the verifier: how often they are right, and how often
  the top tier is right on the same prompts;
- the cheapest tier -> top with the real verifier (one threshold, the least cost that keeps 95%
  of the top tier's score on that split: a diagnostic upper bound, not a router figure), beside
  the same cascade fed a synthetic verifier of the *same AUROC* whose errors are symmetric
  (binormal, equal variance): what that AUROC would buy if the verifier confirmed as well as it
  rejected;
- on validation only, the acceptance rule "accept unless the next tier is likely to do better"
  (the verifier's P(right) minus beta x the prompt model's P for the next tier), the variant
  that was tried and not shipped.

    python bench/cascade_signal.py ../shared/data/answers [--out bench/results/cascade_signal.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rung.classifiers import cascade, workflow
from rung.classifiers.cascade_report import cost_at_95, policy_held
from rung.classifiers.embedder import open_embedder
from rung.classifiers.outcomes import load_ladder
from rung.confidence.fit import auroc
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
LADDERS = {"mmlu-pro": "mmlu-pro.jsonl", "gsm8k": "gsm8k.jsonl"}
SEEDS = 5


def cheap_then_top(held: cascade.Held, verified: np.ndarray) -> float:
    """Least cost share of "the cheapest tier, then the top unless its answer's score reaches a
    threshold" that keeps 95% of the top tier's score on `held` (inf if none does)."""
    top = held.scores.shape[1] - 1
    with_scores = held.verified.copy()
    with_scores[:, 0] = verified
    trial = replace(held, verified=with_scores)
    best = float("inf")
    for tau in np.unique(np.quantile(verified, np.linspace(0, 1, 201))):
        # A huge lambda starts every prompt at the cheapest tier.
        point = cascade.point(cascade.Params(1e9, float(tau), (top,), agree=False), trial)
        if point.keep >= 0.95:
            best = min(best, point.cost_share)
    return best


def synthetic(right: np.ndarray, area: float, seed: int) -> np.ndarray:
    """Scores of a binormal equal-variance verifier with this AUROC."""
    gap = np.sqrt(2) * statistics.NormalDist().inv_cdf(min(area, 0.999))
    noise = np.random.default_rng(seed).standard_normal(len(right))
    out: np.ndarray = 1 / (1 + np.exp(-(right * gap + noise)))
    return out


def deciles(held: cascade.Held) -> list[dict[str, float]]:
    v, cheap, top = held.verified[:, 0], held.scores[:, 0], held.scores[:, -1]
    edges = np.quantile(v, np.linspace(0, 1, 11))
    rank = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, 9)
    return [
        {
            "decile": d + 1,
            "prompts": int((rank == d).sum()),
            "cheapest_right": round(float(cheap[rank == d].mean()), 3),
            "top_right": round(float(top[rank == d].mean()), 3),
        }
        for d in range(10)
        if (rank == d).any()
    ]


def gain_rule(held: cascade.Held, beta: float) -> float:
    """cost_at_95 when an answer is accepted on (P(right) - beta x P(next tier right) + beta) /
    (1 + beta) >= tau instead of P(right) >= tau."""
    tiers = held.scores.shape[1]
    points = []
    for path in cascade.paths(tiers):
        following = cascade.next_tiers(path, tiers)
        shifted = (held.verified - beta * held.probabilities[:, following] + beta) / (1 + beta)
        points += [
            p for p in cascade.sweep(replace(held, verified=shifted)) if p.params.path == path
        ]
    return round(cost_at_95(points, held), 4)


def report(held: cascade.Held, names: list[str], keys: np.ndarray) -> dict[str, Any]:
    right = held.scores >= 0.5
    top_cost = held.costs[:, -1].sum()
    tiers = {}
    for k, name in enumerate(names):
        answered = keys[:, k] >= 0
        tiers[name] = {
            "accuracy": round(float(right[:, k].mean()), 3),
            "cost_share": round(float(held.costs[:, k].sum() / top_cost), 3),
            "prompt_auroc": round(auroc(held.probabilities[:, k], right[:, k]), 3),
            "verifier_auroc": round(auroc(held.verified[:, k], right[:, k]), 3),
            "no_final_answer": round(float(1 - answered.mean()), 3),
            "verifier_auroc_with_final_answer": round(
                auroc(held.verified[answered, k], right[answered, k]), 3
            ),
        }
    area = auroc(held.verified[:, 0], right[:, 0])
    fake = [cheap_then_top(held, synthetic(right[:, 0], area, s)) for s in range(SEEDS)]
    return {
        "prompts": len(held.scores),
        "tiers": tiers,
        "cheapest_by_verifier_decile": deciles(held),
        "cheapest_then_top_cost_at_95": {
            "real_verifier": round(cheap_then_top(held, held.verified[:, 0]), 4),
            "synthetic_same_auroc": round(float(np.mean(fake)), 4),
            # Accepts an answer that is right, or that the top tier would not get right either.
            "perfect_verifier": round(
                cheap_then_top(held, (held.scores[:, 0] >= held.scores[:, -1]).astype(float)), 4
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="the shared answers directory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/cascade_signal.json")
    args = parser.parse_args()
    embedder, identity = open_embedder("static-minilm-l6", default_models_dir(), threads=2)
    out: dict[str, Any] = {"benchmark": "cascade_signal", "ladders": {}}
    for name, file in LADDERS.items():
        ladder = load_ladder(ROOT / f"ladders/{name}.yaml")
        path = args.data / file if (args.data / file).exists() else args.data / (file + ".gz")
        data = workflow.load_data([path], ladder)
        texts = [o.prompt for o in data.outcomes]
        vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
        model = workflow.fit(data, vectors, ladder, identity, "blend", [path])
        names = [t.name for t in ladder.tiers]
        row: dict[str, Any] = {}
        for split in ("validation", "test"):
            held = model.held[split]
            assert held.keys is not None  # the answers were read
            row[split] = report(
                policy_held(held, ladder.prices, model.answer_chars), names, held.keys
            )
        validation = policy_held(model.held["validation"], ladder.prices, model.answer_chars)
        row["validation"]["gain_rule_cost_at_95"] = {
            f"beta={b:g}": gain_rule(validation, b) for b in (0.0, 0.5, 1.0, 2.0)
        }
        out["ladders"][name] = row
        print(name, json.dumps(row["test"]["cheapest_then_top_cost_at_95"]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
