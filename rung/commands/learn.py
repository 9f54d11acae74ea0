"""`rung learn`: the loop from live traffic to a better classifier. Shadow records (with prompt
text) are split by prompt, the newest held out; a candidate is fitted on the operator's outcome
files plus the older records, judged against the serving classifier on the held-out recent
prompts, and promoted (`--apply`, `--reload`) only as `rung promote` would."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rung.commands.promote import act, judge
from rung.errors import RungError


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return path


def run_learn(args: argparse.Namespace) -> int:
    from rung.classifiers import workflow
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.learn import slice_records
    from rung.classifiers.outcomes import load_ladder, read_rows

    rows = [row for path in args.records for row in read_rows(Path(path))]
    slices = slice_records(rows, args.holdout)
    if slices.without_text:
        print(
            f"{slices.without_text} of {len(rows)} records carry no prompt (recorded without "
            "shadow.record_text) and cannot train a classifier"
        )
    ladder = load_ladder(args.ladder)
    candidate = Path(args.out or f"{args.serving}.candidate")
    with tempfile.TemporaryDirectory() as tmp:
        held_file = _write(slices.held_out, Path(tmp) / "recent-heldout.jsonl")
        train_file = _write(slices.train, Path(tmp) / "records.jsonl")
        held = workflow.load_data([held_file], ladder) if slices.held_out else None
        if held is None or len(held.outcomes) < args.min_heldout:
            have = 0 if held is None else len(held.outcomes)
            raise RungError(
                f"only {have} recent prompts with an outcome for every tier of the ladder to "
                f"judge on (--min-heldout {args.min_heldout}): record more traffic (and set "
                "shadow.explore_rate, or label a recent slice with `rung label`)"
            )
        files = [Path(f) for f in args.data or []] + [train_file]
        data = workflow.load_data(files, ladder)
        embedder, identity = open_embedder(
            args.embedder, Path(args.models_dir), threads=args.threads
        )
        texts = [o.prompt for o in data.outcomes]
        vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
        model = workflow.fit(data, vectors, ladder, identity, args.method, files, args.calibrator)
        model.save(candidate)
        print(
            f"candidate fitted on {len(data.outcomes)} prompts ({len(slices.train)} records "
            f"and {', '.join(Path(f).name for f in args.data or []) or 'no other files'}) in "
            f"{candidate}; judged on {len(held.outcomes)} recent held-out prompts"
        )
        verdict = judge(args, candidate, [held_file])
        if args.heldout_out:  # so a later `rung promote --data` judges on the same prompts
            _write(slices.held_out, Path(args.heldout_out))
    return act(args, verdict, candidate)
