"""Routing quality on prompts no part of rung was fitted or tuned on, printed as JSON.

For each ladder: dedupe prompt texts, split them by text digest (70% train, 15% validation,
15% test), fit the classifier on train, meet goals on validation, and score the untouched test
split: the utility rule's cost_at_95 beside the legacy threshold rule, the no-information
baseline (best mix of single tiers) and the oracle, and what each standard goal really keeps
and costs there. Also:

- methods (`logistic`, `difficulty`, `blend`) compared on the *validation* split, so choosing
  one does not touch the test split;
- the generalisation check: a classifier fitted on GSM8K + MMLU-Pro (ladders/transfer.yaml)
  scored on MATH level 5, a task family it never saw;
- the signal ceiling: the same rule fed by a logistic model per tier that *sees how every model
  outside the ladder scored on the very prompt* (information no text classifier has). It bounds
  what any predictor of per-prompt difficulty can buy on that data set;
- with `--minilm`, the same held-out figures with the MiniLM transformer as the embedder, side
  by side with the static embedder that serves by default;
- given records with answer texts (../shared/data/answers), the cascade policy (route, answer,
  verify, escalate; rung.classifiers.cascade) beside prompt-only routing and the perfect
  verifier's ceiling, with calls per prompt at each goal; and the production classifier served
  on MATH level 5 as a tenant capped to three of its tiers (ladders/math-l5.yaml);
- on the validation split, a TF-IDF logistic regression of the prompt (the baseline an outside
  study found strong) beside rung's prompt models.

    python bench/routing.py ../shared/data/answers [--minilm] [--out bench/results/routing.json]
    (the outcomes directory works too: no cascade rows without answer texts)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rung.classifiers import workflow
from rung.classifiers.embedder import open_embedder
from rung.classifiers.evaluate import summarize
from rung.classifiers.outcomes import load_ladder
from rung.classifiers.train import METHODS, train
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
LADDERS = {
    "gsm8k": ["gsm8k.jsonl"],
    "mmlu-pro": ["mmlu-pro.jsonl"],
    "production": ["gsm8k.jsonl", "mmlu-pro.jsonl"],
}


def data_file(directory: Path, name: str) -> Path:
    """`name` (e.g. gsm8k.jsonl) in the directory, gzipped or not."""
    plain = directory / name
    return plain if plain.exists() else directory / (name + ".gz")


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    cascade = metrics.get("cascade")
    extra: dict[str, Any] = {}
    if cascade is not None:
        extra["cascade"] = {
            "verifier": cascade["verifier"],
            "cost_at_95": round(cascade["cost_at_95"], 4),
            "prompt_only_cost_at_95": round(cascade["prompt_only_cost_at_95"], 4),
            "perfect_verifier_cost_at_95": round(cascade["perfect_verifier_cost_at_95"], 4),
            "at_goals": cascade["at_goals"],
        }
    return {
        **extra,
        "prompts": metrics["prompts"],
        "router_cost_at_95": round(metrics["router"]["cost_at_95"], 4),
        "threshold_rule_cost_at_95": round(metrics["threshold_rule"]["cost_at_95"], 4),
        "no_information_cost_at_95": round(metrics["baseline"]["cost_at_95"], 4),
        "oracle_cost_at_95": round(metrics["oracle"]["cost_at_95"], 4),
        "calibration_error": round(metrics["calibration_error"], 4),
        "goals": metrics.get("goals", []),
    }


def signal_ceiling(data: Any, ladder: Any) -> float:
    """cost_at_95 on the test split when the per-tier predictions come from the other models'
    outcomes on the same prompt (fitted on train + validation): an upper bound, not a router."""
    from sklearn.linear_model import LogisticRegression

    rows = workflow._dedupe_rows(data)
    data = workflow.subset(data, rows)
    parts = workflow.split(data)
    fit_rows = np.concatenate([parts["train"], parts["validation"]])
    test = parts["test"]
    others = data.others
    seen = np.nanmean(others[fit_rows], axis=0)
    features = np.where(np.isnan(others), seen, others)
    probabilities = np.zeros((len(test), data.scores.shape[1]))
    for k in range(data.scores.shape[1]):
        model = LogisticRegression(max_iter=2000)
        model.fit(features[fit_rows], data.scores[fit_rows, k] >= 0.5)
        probabilities[:, k] = model.predict_proba(features[test])[:, 1]
    held = workflow.subset(data, test)
    m = summarize(probabilities, held.scores, held.costs, ladder.prices)
    return round(float(m["router"]["cost_at_95"]), 4)


def on_validation(data: Any, vectors: Any, ladder: Any, identity: dict[str, str]) -> dict[str, Any]:
    """Each method fitted on train, scored on validation (development figures)."""
    rows = workflow._dedupe_rows(data)
    data, vectors = workflow.subset(data, rows), vectors[rows]
    parts = workflow.split(data)
    tr, va = parts["train"], parts["validation"]
    part = workflow.subset(data, tr)
    held = workflow.subset(data, va)
    out = {}
    for method in METHODS:
        model = train(
            vectors[tr],
            [o.prompt for o in part.outcomes],
            part.scores,
            part.others,
            [t.model_dump() for t in ladder.tiers],
            identity,
            method,
        )
        probabilities = model.predict(vectors[va], [o.prompt for o in held.outcomes])
        m = summarize(probabilities, held.scores, held.costs, ladder.prices)
        out[method] = round(m["router"]["cost_at_95"], 4)
    out["tfidf_logistic"] = tfidf_baseline(part, held, ladder.prices)
    return out


def tfidf_baseline(part: Any, held: Any, prices: Any) -> float:
    """A per-tier logistic regression on a TF-IDF of the prompt (words and word pairs)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vectorizer.fit_transform([o.prompt for o in part.outcomes])
    z = vectorizer.transform([o.prompt for o in held.outcomes])
    probabilities = np.zeros(held.scores.shape)
    for k in range(held.scores.shape[1]):
        y = part.scores[:, k] >= 0.5
        if y.min() == y.max():
            probabilities[:, k] = float(y.mean())
            continue
        probabilities[:, k] = LogisticRegression(max_iter=2000).fit(x, y).predict_proba(z)[:, 1]
    m = summarize(probabilities, held.scores, held.costs, prices)
    return round(float(m["router"]["cost_at_95"]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="the shared outcomes directory")
    parser.add_argument("--minilm", action="store_true", help="also with the MiniLM embedder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/routing.json")
    args = parser.parse_args()

    embedders = ["static-minilm-l6"] + (["minilm-l6-int8"] if args.minilm else [])
    report: dict[str, Any] = {"benchmark": "routing", "split": workflow.SPLIT, "ladders": {}}
    for spec in embedders:
        embedder, identity = open_embedder(spec, default_models_dir(), threads=2)
        cache = workflow.embeddings_cache_dir()
        for name, files in LADDERS.items():
            ladder = load_ladder(ROOT / f"ladders/{name}.yaml")
            paths = [data_file(args.data, f) for f in files]
            data = workflow.load_data(paths, ladder)
            vectors = workflow.embed_all(
                embedder, identity, [o.prompt for o in data.outcomes], cache
            )
            held = workflow.holdout(data, vectors, ladder, identity, "blend", paths)
            row = report["ladders"].setdefault(name, {"split": held["split"]})
            row.setdefault("signal_ceiling_cost_at_95", signal_ceiling(data, ladder))
            row[spec] = {
                "test": figures(held),
                "validation_by_method": on_validation(data, vectors, ladder, identity),
            }
            if spec == embedders[0]:
                workflow.plot_curve(
                    held, args.out.parent / f"routing-{name}.png", f"{name}: held-out test split"
                )
            print(name, spec, json.dumps(row[spec]["test"] | {"goals": "..."}), file=sys.stderr)
            if name == "production":  # served, capped to three tiers, on a family never seen
                model = workflow.fit(data, vectors, ladder, identity, "blend", paths)
                math = load_ladder(ROOT / "ladders/math-l5.yaml")
                unseen = workflow.load_data([data_file(args.data, "math-l5.jsonl")], math)
                unseen_vectors = workflow.embed_all(
                    embedder, identity, [o.prompt for o in unseen.outcomes], cache
                )
                served = workflow.evaluate(model, unseen, unseen_vectors, math)
                report.setdefault("production_on_math_l5", {})[spec] = figures(served)
        # Generalisation: fitted on GSM8K + MMLU-Pro, scored on MATH level 5.
        ladder = load_ladder(ROOT / "ladders/transfer.yaml")
        paths = [data_file(args.data, "gsm8k.jsonl"), data_file(args.data, "mmlu-pro.jsonl")]
        data = workflow.load_data(paths, ladder)
        vectors = workflow.embed_all(embedder, identity, [o.prompt for o in data.outcomes], cache)
        model = workflow.fit(data, vectors, ladder, identity, "blend", paths)
        unseen = workflow.load_data([data_file(args.data, "math-l5.jsonl")], ladder)
        unseen_vectors = workflow.embed_all(
            embedder, identity, [o.prompt for o in unseen.outcomes], cache
        )
        transfer = workflow.evaluate(model, unseen, unseen_vectors, ladder)
        report.setdefault("transfer_to_math_l5", {})[spec] = figures(transfer)
        print("transfer", spec, json.dumps(figures(transfer) | {"goals": "..."}), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
