"""What the shadow guard buys, printed as JSON: the production classifier served at `keep: 0.95`
to a stream of prompts, with shadow checks at `--rate` and the guard (rung.router.guard) holding
back tiers as the gateway would, replayed on recorded answers.

Two streams: MATH level 5 (a task family the classifier never saw, served by small, medium
and xlarge, where the goal is not kept without the guard) and the production test split
(prompts like the fitting ones, where a guard should stay out of the way). The judge is the
gateway's: a checked answer agrees when its final answer equals the reference tier's. For
each stream, with and without the guard: realised keep (served score over the top tier's),
cost share (every call of the cascade, over the top tier's cost), the reference calls the
checks paid, and when each tier was held back. Nothing here is fitted or tuned: the classifier
and its goal parameters are the shipped ones, the guard's settings are the defaults. One
simplification: a hold lasts to the end of the replay (the gateway's ends after
`guard_hold_s` and the tier is judged afresh), so `keep_last_pass` is the settled state.

    python bench/guard.py ../shared/data/answers [--rate 0.05] [--seeds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rung.classifiers import cascade, workflow
from rung.classifiers.cascade_report import policy_held
from rung.classifiers.embedder import open_embedder
from rung.classifiers.model import DifficultyModel, Held, load, resolve
from rung.classifiers.outcomes import load_ladder
from rung.config import GoalConfig, ShadowConfig
from rung.router.cascading import Policies
from rung.router.guard import next_hold
from rung.router.shadow import Tally
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
GOAL = GoalConfig(keep=0.95)


def math_stream(model: DifficultyModel, answers: Path) -> tuple[Held, list[int]]:
    """MATH level 5 as the production classifier serves it (rung.classifiers.workflow.served,
    what `rung eval` reads): (held, classifier tier per column)."""
    ladder = load_ladder(ROOT / "ladders/math-l5.yaml")
    path = answers / "math-l5.jsonl.gz"
    data = workflow.load_data([path if path.exists() else answers / "math-l5.jsonl"], ladder)
    embedder, identity = open_embedder(model.embedder["name"], default_models_dir(), threads=2)
    texts = [o.prompt for o in data.outcomes]
    vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
    held, tiers, _ = workflow.served(model, data, vectors, ladder)
    assert held.verified is not None  # the answer texts were read
    return held, tiers


def served_by_subset(
    policies: Policies, held: Held, tiers: list[int]
) -> dict[tuple[int, ...], tuple[Any, Any]]:
    """For every set of columns with the top one: (served column, cost of all calls) per prompt
    under the policy fitted to GOAL over those tiers."""
    top = len(tiers) - 1
    out = {}
    for size in range(len(tiers)):
        for lower in itertools.combinations(range(top), size):
            columns = (*lower, top)
            subset = tuple(tiers[c] for c in columns)
            params = policies.fitted(GOAL, subset).params
            prices = np.array([policies.prices[k] for k in subset])
            chars = [policies.model.answer_chars[k] for k in subset]
            part = policy_held(held.columns(list(columns)), prices, chars)
            served, spent, _ = cascade.simulate(params, part)
            out[columns] = (np.asarray(columns)[served], spent)
    return out


def replay(
    held: Held,
    names: list[str],
    by_subset: dict[tuple[int, ...], tuple[Any, Any]],
    prices: Any,
    shadow: ShadowConfig,
    guard: bool,
    seed: int,
    passes: int,
    expected: dict[str, float],
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n, width = held.scores.shape
    top = width - 1
    keys = held.keys
    assert keys is not None
    tallies: dict[str, Tally] = {}
    held_back: set[str] = set()
    when: dict[str, int] = {}
    got = spent = reference_calls = 0.0
    last = np.zeros(n)  # what the last pass served: the state the guard settled in
    stream = np.concatenate([rng.permutation(n) for _ in range(passes)])
    for step, i in enumerate(stream):
        columns = tuple(c for c in range(width) if names[c] not in held_back)
        served, cost = by_subset[columns]
        tier = int(served[i])
        got += held.scores[i, tier]
        last[i] = held.scores[i, tier]
        spent += cost[i]
        tally = tallies.setdefault(names[tier], Tally())
        tally.served += 1
        if tier != top and rng.random() < shadow.rate:
            tally.sampled += 1
            tally.agreed += bool(keys[i, tier] >= 0 and keys[i, tier] == keys[i, top])
            reference_calls += 1
            if guard:
                keep, checks = GOAL.keep or 1.0, shadow.guard_min_checks
                hold = next_hold(tallies, names[top], keep, checks, held_back, expected)
                if hold is not None:
                    held_back.add(hold)
                    when[hold] = step + 1
    top_total = float(held.scores[:, top].sum()) * passes
    cost_top = float(held.costs(prices)[:, top].sum()) * passes
    return {
        "keep": got / top_total if top_total else 1.0,
        "cost_share": spent / cost_top if cost_top else 0.0,
        "keep_last_pass": float(last.sum() / held.scores[:, top].sum()) if top_total else 1.0,
        "reference_calls_per_prompt": reference_calls / len(stream),
        "held_back_after": when,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("keep", "keep_last_pass", "cost_share", "reference_calls_per_prompt"):
        values = [r[k] for r in runs]
        out[k] = {"median": round(statistics.median(values), 4),
                  "range": [round(min(values), 4), round(max(values), 4)]}  # fmt: skip
    held = [r["held_back_after"] for r in runs]
    out["held_back_after_prompts"] = held
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("answers", type=Path, help="the shared answers directory")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.05], help="shadow.rate")
    parser.add_argument("--seeds", type=int, default=5, help="stream orders replayed")
    parser.add_argument(
        "--passes", type=int, default=10, help="each stream is its prompts this many times over"
    )
    parser.add_argument("--only", nargs="*", help="streams whose name holds one of these words")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/guard.json")
    args = parser.parse_args()

    model = load(resolve("production"))
    prices = [float(t["price"]) for t in model.tiers]
    policies = Policies(model, prices, verifying=True)
    streams: dict[str, tuple[Held, list[int]]] = {
        "math-l5 (never trained on)": math_stream(model, args.answers),
        "production validation split (out of fold; the goal was met on it)": (
            model.held["validation"],
            list(range(len(model.tiers))),
        ),
        "production test split": (model.held["test"], list(range(len(model.tiers)))),
    }
    report: dict[str, Any] = {
        "benchmark": "guard",
        "goal": "keep:0.95",
        "guard_min_checks": ShadowConfig().guard_min_checks,
        "passes": args.passes,
        "streams": {},
    }
    for name, (held, tiers) in streams.items():
        if args.only and not any(word in name for word in args.only):
            continue
        names = [model.tier_names[k] for k in tiers]
        column_prices = np.array([prices[k] for k in tiers])
        by_subset = served_by_subset(policies, held, tiers)
        found = policies.agreement(GOAL, tuple(tiers))
        expected = {model.tier_names[k]: rate for k, rate in found.items()}
        row = {"prompts": len(held.scores), "requests": len(held.scores) * args.passes,
               "tiers": names, "expected_agreement": expected}  # fmt: skip
        for rate in args.rates:
            shadow = ShadowConfig(rate=rate)
            for guard in (False, True):
                runs = [
                    replay(
                        held, names, by_subset, column_prices, shadow, guard, seed,
                        args.passes, expected,
                    )
                    for seed in range(args.seeds)
                ]  # fmt: skip
                row[f"rate {rate:g}, {'guard' if guard else 'no guard'}"] = summary(runs)
        report["streams"][name] = row
        print(name, json.dumps(row), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
