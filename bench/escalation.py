"""Escalation on the local ladder, replayed on real labelled outputs: accuracy and cost of
always-small, always-large, classifier only, escalation only (small first) and classifier +
escalation, across quality targets and confidence thresholds. JSON and a plot.

Every prompt was answered by both llama.cpp tiers (`rung label`, labels/local-*.jsonl) with the
small tier's token logprobs recorded, so each strategy's decisions replay exactly: an escalated
prompt costs the small answer plus the large one. Decisions use held-out predictions only: the
classifier's and the calibrator's for a prompt come from models fitted on the other folds.
Costs are in the local ladder's price units (its prices are CPU-microseconds per token, so the
`cost` is CPU-seconds estimated from the answers' lengths) and in the CPU-seconds the answers
took when labelled (`cpu_s`).

    python bench/escalation.py [--data labels/local-small.jsonl labels/local-large.jsonl]
                               [--datasets gsm8k] [--out bench/results/escalation.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from rung.classifiers import workflow
from rung.classifiers.decision import choose_tiers_by_threshold
from rung.classifiers.embedder import open_embedder
from rung.classifiers.outcomes import ladder_data, load_ladder, read_outcomes, read_rows
from rung.confidence.fit import auroc, calibration_error, examples, held_out
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [round(t, 2) for t in np.arange(0.0, 1.01, 0.05)]
THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 1.01, 0.05)]


def classifier_out_of_fold(data: Any, ladder: Any, folds: int = 5) -> np.ndarray:
    embedder, identity = open_embedder("static-minilm-l6", default_models_dir())
    texts = [o.prompt for o in data.outcomes]
    vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
    return workflow.out_of_fold(data, vectors, ladder, identity, "blend", folds)


def point(ok: np.ndarray, cost: np.ndarray, cpu: np.ndarray, **what: Any) -> dict[str, Any]:
    return {
        **what,
        "accuracy": float(ok.mean()),
        "cost": float(cost.sum()),
        "cpu_s": float(cpu.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=[ROOT / "labels/local-small.jsonl", ROOT / "labels/local-large.jsonl"],
    )
    parser.add_argument("--ladder", type=Path, default=ROOT / "ladders/local.yaml")
    parser.add_argument("--datasets", nargs="+", help="only these data sets (e.g. gsm8k)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/escalation.json")
    args = parser.parse_args()

    ladder = load_ladder(args.ladder)
    small, large = (str(t.model) for t in ladder.tiers)
    rows: dict[str, dict[str, Any]] = {}
    for path in args.data:
        for row in read_rows(path):
            merged = rows.setdefault(row["id"], {**row, "results": {}})
            merged["results"].update(row.get("results", {}))
    wanted = [
        r
        for r in rows.values()
        if small in r["results"]
        and large in r["results"]
        and "signals" in r["results"][small]
        and (not args.datasets or r.get("dataset") in args.datasets)
    ]
    if len(wanted) < 20:
        raise SystemExit(f"only {len(wanted)} prompts have both tiers and the small tier's signals")
    ids = [r["id"] for r in wanted]
    keep = set(ids)
    data = ladder_data((o for o in read_outcomes(args.data) if o.id in keep), ladder)
    order = {o.id: i for i, o in enumerate(data.outcomes)}
    wanted.sort(key=lambda r: order[r["id"]])
    ok = data.scores >= 0.5
    # price (CPU-microseconds per token) x (prompt + output chars) / 4 / 1e6: estimated CPU-s.
    cost = data.costs
    cpu = np.array([[r["results"][m]["latency_s"] for m in (small, large)] for r in wanted])

    probs = classifier_out_of_fold(data, ladder)
    confidence = held_out(examples(wanted, small, None))
    prices = ladder.prices
    curves: dict[str, list[dict[str, Any]]] = {"classifier": [], "escalation": [], "both": []}
    for target in TARGETS:
        tier = choose_tiers_by_threshold(probs, prices, target)
        idx = np.arange(len(tier))
        curves["classifier"].append(
            point(ok[idx, tier], cost[idx, tier], cpu[idx, tier], target=target)
        )
        for threshold in THRESHOLDS:
            up = confidence < threshold
            if target == TARGETS[0]:  # escalation only: everything starts small
                curves["escalation"].append(
                    point(
                        np.where(up, ok[:, 1], ok[:, 0]),
                        cost[:, 0] + up * cost[:, 1],
                        cpu[:, 0] + up * cpu[:, 1],
                        threshold=threshold,
                    )
                )
            both = (tier == 0) & up
            final = np.where(both, 1, tier)
            curves["both"].append(
                point(
                    ok[idx, final],
                    cost[idx, tier] + both * cost[:, 1],
                    cpu[idx, tier] + both * cpu[:, 1],
                    target=target,
                    threshold=threshold,
                )
            )
    always = {
        "small": point(ok[:, 0], cost[:, 0], cpu[:, 0]),
        "large": point(ok[:, 1], cost[:, 1], cpu[:, 1]),
    }
    goal = 0.95 * always["large"]["accuracy"]
    best: dict[str, Any] = {}
    for name, curve in {**curves, "always-large": [always["large"]]}.items():
        meeting = [p for p in curve if p["accuracy"] >= goal]
        if meeting:
            best[name] = min(meeting, key=lambda p: p["cost"])
    labels = np.array([int(r["results"][small]["score"] >= 0.5) for r in wanted])
    report = {
        "benchmark": "escalation",
        "prompts": len(wanted),
        "datasets": sorted({r.get("dataset") for r in wanted}),
        "confidence_small": {
            "auroc_held_out": round(auroc(confidence, labels), 4),
            "calibration_error": round(calibration_error(confidence, labels), 4),
        },
        "always": always,
        "goal_accuracy": goal,
        "cheapest_reaching_95pct_of_large": best,
        "winner": min(best, key=lambda k: best[k]["cost"]) if best else None,
        "curves": curves,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "prompts",
                    "confidence_small",
                    "always",
                    "cheapest_reaching_95pct_of_large",
                    "winner",
                )
            },
            indent=2,
        )
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = report["always"]["large"]["cost"]
    for name, style in (("classifier", "o-"), ("escalation", "s-"), ("both", ".")):
        pts = sorted(report["curves"][name], key=lambda p: p["cost"])
        ax.plot(
            [p["cost"] / top for p in pts],
            [p["accuracy"] for p in pts],
            style,
            label=name,
            alpha=0.5 if name == "both" else 1,
            markersize=4,
        )
    for name, p in report["always"].items():
        ax.plot(p["cost"] / top, p["accuracy"], "k*", markersize=10)
        ax.annotate(f"always {name}", (p["cost"] / top, p["accuracy"]), fontsize=8)
    ax.axhline(report["goal_accuracy"], color="grey", ls=":", label="95% of large")
    ax.set_xlabel("cost (share of always-large)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Local ladder, {report['prompts']} prompts: routing and escalation")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
