"""`rung train | eval | label | calibrate` commands (argv is parsed in rung.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _embedded_data(args: argparse.Namespace) -> tuple[Any, list[Path], Any, dict[str, str], Any]:
    """What train and eval both start from: ladder, files, their outcomes, the embedder's
    identity and the prompts' embeddings (cached)."""
    from rung.classifiers import workflow
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.outcomes import load_ladder

    ladder = load_ladder(args.ladder)
    files = [Path(f) for f in args.data]
    data = workflow.load_data(files, ladder)
    embedder, identity = open_embedder(args.embedder, Path(args.models_dir), threads=args.threads)
    texts = [o.prompt for o in data.outcomes]
    vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
    return ladder, files, data, identity, vectors


def run_train(args: argparse.Namespace) -> int:
    from rung.classifiers import workflow

    ladder, files, data, identity, vectors = _embedded_data(args)
    model = workflow.fit(data, vectors, ladder, identity, args.method, files, args.calibrator)
    model.save(Path(args.out))
    split = model.training["split"]
    accuracy = ", ".join(
        f"{t.name} {a:.2f}" for t, a in zip(ladder.tiers, data.scores.mean(0), strict=True)
    )
    print(
        f"trained on {split['train']} prompts ({accuracy}); goals are fitted on their "
        f"{split['validation']} out-of-fold predictions; classifier in {args.out}"
    )
    if "test" in model.held:
        print(f"held out ({split['test']} test prompts, never fitted or tuned on):")
        print(workflow.headline(workflow.held_out_report(model, ladder.prices)))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from rung.classifiers import workflow
    from rung.classifiers.model import load

    ladder, files, data, identity, vectors = _embedded_data(args)
    if args.classifier:
        model = load(Path(args.classifier), identity)
        metrics = workflow.evaluate(model, data, vectors, ladder)
        left = metrics["left_out_as_trained_on"]
        if left:
            print(f"left out {left} prompts the classifier was trained on", file=sys.stderr)
    elif args.cv:
        metrics = workflow.cross_validate(
            data, vectors, ladder, identity, args.method, args.cv, args.repeats, files
        )
    else:
        metrics = workflow.holdout(
            data, vectors, ladder, identity, args.method, files, args.calibrator
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "ladder": ladder.name,
        "data": [f.name for f in files],
        "embedder": identity,
        **metrics,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if "cross_validation" in metrics:
        cv = metrics["cross_validation"]
        print(
            f"cross-validation on train + validation ({cv['held_out_runs']} folds; a "
            f"development aid): router cost_at_95 {cv['router_cost_at_95']['mean']:.3f} ± "
            f"{cv['router_cost_at_95']['std']:.3f}, baseline "
            f"{cv['baseline_cost_at_95']['mean']:.3f}; router better in "
            f"{cv['router_beats_baseline_in']}"
        )
        print(f"wrote {out / 'metrics.json'}")
        return 0
    workflow.plot_curve(metrics, out / "curve.png", f"{ladder.name}: cost vs quality (held out)")
    print(workflow.headline(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'curve.png'}")
    return 0


def run_label(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from rung.classifiers.label import Endpoint, label, select

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    endpoint = Endpoint(args.url, args.model, key)
    judge = Endpoint(args.judge_url, args.judge_model, key) if args.judge_url else None
    prompts = select([Path(f) for f in args.data], args.limit, args.datasets)
    summary = asyncio.run(
        label(
            prompts,
            endpoint,
            Path(args.out),
            name=args.name or args.model,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            grader=args.grader,
            judge=judge,
            logprobs=not args.no_logprobs,
        )
    )
    print(summary.text(args.name or args.model))
    return 1 if summary.failed and not summary.labelled else 0


def run_calibrate(args: argparse.Namespace) -> int:
    import json

    from rung.classifiers.outcomes import load_ladder, read_rows
    from rung.confidence.fit import fit

    ladder = load_ladder(args.ladder)
    tiers: dict[str, str] = {}
    for tier in ladder.tiers:
        if not isinstance(tier.model, str):
            print(
                f"error: tier {tier.name} names a model per data set; use one model",
                file=sys.stderr,
            )
            return 2
        tiers[tier.name] = tier.model
    rows = [row for path in args.data for row in read_rows(Path(path))]
    try:
        calibrator = fit(rows, tiers, args.probe_tokens)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    calibrator.save(Path(args.out))
    print(json.dumps({k: v for k, v in calibrator.metrics.items() if k != "features"}, indent=2))
    print(f"wrote {args.out}")
    return 0
