"""Embedding speed side by side: the static table that serves by default (rung.classifiers.static)
against the MiniLM transformer it was distilled from, one query at a time on one thread, on the
test fixture's real prompts. JSON out. Routing quality with each is bench/routing.py --minilm.

    python bench/static_embedder.py [--out bench/results/static_embedder.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rung.classifiers.embedder import open_embedder
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]


def speed(embedder: Any, texts: list[str], seconds: float = 5.0) -> float:
    """Single queries, one after another: queries per second (median of 3 rounds)."""
    rates = []
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            embedder.embed([texts[done % len(texts)]])
            done += 1
        rates.append(done / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/static_embedder.json")
    args = parser.parse_args()
    rows = (ROOT / "tests/data/outcomes-fixture.jsonl").open()
    sample = [json.loads(line)["prompt"] for line in rows]
    report: dict[str, Any] = {"benchmark": "static_embedder", "queries_per_s_one_thread": {}}
    for spec in ("static-minilm-l6", "minilm-l6-int8"):
        embedder, _ = open_embedder(spec, default_models_dir(), threads=1)
        report["queries_per_s_one_thread"][spec] = round(speed(embedder, sample), 1)
    rates = report["queries_per_s_one_thread"]
    report["ratio"] = round(rates["static-minilm-l6"] / rates["minilm-l6-int8"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
