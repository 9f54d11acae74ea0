"""`rung cache fit` commands: what the parsed arguments (rung.cli) ask for."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rung.errors import RungError


def run_cache_fit(args: argparse.Namespace) -> int:
    import json

    from rung.cache.fit import build_sets, fit_verifier, served_by_kind
    from rung.classifiers import static
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.outcomes import read_rows

    pairs = [
        (str(r["a"]), str(r["b"]), bool(r["same"]), f"pairs-{r.get('kind', 'labelled')}")
        for path in args.pairs
        for r in read_rows(Path(path))
    ]
    if not pairs:
        raise RungError(f"no pairs in {', '.join(args.pairs)}")
    from rung.classifiers import workflow

    embedder, identity = open_embedder(args.embedder, Path(args.models_dir), threads=2)
    words, _ = open_embedder(static.NAME, Path(args.models_dir))
    sets = build_sets(pairs, args.generated)

    def embed(texts: list[str]) -> Any:
        return workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())

    verifier, x = fit_verifier(sets, embed, words.embed, identity)
    threshold = verifier.calibration.threshold(args.floor, args.budget)
    report = {
        "pairs": {name: len(items) for name, items in sets.items()},
        "floor": args.floor,
        "budget": args.budget,
        "threshold": threshold,
        "test": served_by_kind(verifier, sets["test"], x["test"], args.floor, threshold),
    }
    verifier = type(verifier)(verifier.trees, verifier.calibration, identity, report)
    verifier.save(Path(args.out))
    print(json.dumps(report, indent=2))
    if threshold is None:
        print(
            f"warning: no threshold keeps wrong hits under {args.budget:g} at floor "
            f"{args.floor:g}: a gateway with these settings would serve exact repeats only",
            file=sys.stderr,
        )
    print(f"wrote {args.out} (test split above: questions never fitted or calibrated on)")
    return 0
