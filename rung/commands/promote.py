"""`rung promote`: replace the serving classifier by a candidate only when it is better on
held-out outcomes, log every decision with its figures, hot-reload the gateway, roll back."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rung.errors import RungError


def run_promote(args: argparse.Namespace) -> int:
    serving = Path(args.serving)
    if args.rollback:
        _rollback(serving)
        log_decision(args, {"action": "rollback", "serving": str(serving)})
        print(f"rolled back {serving} to the classifier it replaced")
        return reload_gateway(args)
    if not args.candidate or not args.data or not args.ladder:
        raise RungError("rung promote needs --candidate, --data and --ladder (or --rollback)")
    verdict = judge(args, Path(args.candidate), [Path(f) for f in args.data])
    return act(args, verdict, Path(args.candidate))


def act(args: argparse.Namespace, verdict: Any, candidate: Path) -> int:
    """Say the verdict, swap the candidate in (`--apply`) when it wins, log it, reload: 0 when
    promoted, 3 when refused, 4 when the gateway refused the reload."""
    serving = Path(args.serving)
    record = {"action": "promote" if verdict.promote else "refuse", **verdict.to_dict(),
              "serving_dir": str(serving), "candidate_dir": str(candidate)}  # fmt: skip
    print(
        f"on {verdict.prompts} prompts neither was fitted on, at {args.goal}: serving keeps "
        f"{verdict.serving.keep:.3f} at {verdict.serving.cost_share:.3f} of the top tier's cost "
        f"(cost_at_95 {verdict.serving.cost_at_95:.3f}); candidate keeps "
        f"{verdict.candidate.keep:.3f} at {verdict.candidate.cost_share:.3f} "
        f"(cost_at_95 {verdict.candidate.cost_at_95:.3f}): {verdict.reason}"
    )
    if verdict.promote and args.apply:
        _swap(serving, candidate)
        record["applied"] = True
        print(f"promoted: {serving} now holds the candidate ({serving}.previous the old one)")
    log_decision(args, record)
    if not verdict.promote:
        return 3
    return reload_gateway(args) if args.apply else 0


def judge(args: argparse.Namespace, candidate_dir: Path, files: list[Path]) -> Any:
    """Both classifiers scored on the prompts of `files` that neither was fitted on."""
    from rung.classifiers import workflow
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.model import load
    from rung.classifiers.outcomes import load_ladder
    from rung.classifiers.promote import figures, verdict

    ladder = load_ladder(args.ladder)
    data = workflow.load_data(files, ladder)
    embedder, identity = open_embedder(args.embedder, Path(args.models_dir), threads=args.threads)
    vectors = workflow.embed_all(
        embedder, identity, [o.prompt for o in data.outcomes], workflow.embeddings_cache_dir()
    )
    serving, candidate = load(Path(args.serving), identity), load(candidate_dir, identity)
    fresh = workflow.unseen_rows(data, [serving, candidate])
    if len(fresh) == 0:
        raise RungError("every prompt judged on was used to train one of the classifiers")
    part, part_vectors = workflow.subset(data, fresh), vectors[fresh]
    served = workflow.evaluate(serving, part, part_vectors, ladder)
    tried = workflow.evaluate(candidate, part, part_vectors, ladder)
    return verdict(figures(served, args.goal), figures(tried, args.goal), len(fresh))


def _swap(serving: Path, candidate: Path) -> None:
    """serving <- candidate, the old one kept as serving.previous; each step a rename."""
    staged = serving.with_name(serving.name + ".incoming")
    previous = serving.with_name(serving.name + ".previous")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(candidate, staged)
    shutil.rmtree(previous, ignore_errors=True)
    if serving.exists():
        serving.rename(previous)
    staged.rename(serving)


def _rollback(serving: Path) -> None:
    previous = serving.with_name(serving.name + ".previous")
    if not previous.exists():
        raise RungError(f"nothing to roll back to: {previous} does not exist")
    replaced = serving.with_name(serving.name + ".rolled-back")
    shutil.rmtree(replaced, ignore_errors=True)
    serving.rename(replaced)
    previous.rename(serving)


def log_decision(args: argparse.Namespace, record: dict[str, Any]) -> None:
    if args.log:
        with Path(args.log).open("a") as out:
            out.write(json.dumps({"time": time.time(), **record}) + "\n")


def reload_gateway(args: argparse.Namespace) -> int:
    """POST /admin/reload on the gateway (`--reload URL`, key in $RUNG_ADMIN_KEY)."""
    if not args.reload:
        return 0
    import httpx

    key = os.environ.get("RUNG_ADMIN_KEY", "")
    response = httpx.post(
        args.reload.rstrip("/") + "/admin/reload",
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )
    if response.status_code != 200:
        print(f"reload refused ({response.status_code}): {response.text}", file=sys.stderr)
        return 4
    print("gateway reloaded")
    return 0
