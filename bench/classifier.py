"""Routing cost: one classification (embed + predict + decide) at concurrency 1, and throughput
at concurrency 64, side by side: the static embedder that serves by default (inline, with the
shipped production classifier) and MiniLM through the micro-batcher for a few settings
(embedding only: no shipped classifier is fitted on MiniLM vectors). JSON out.

    python bench/classifier.py [--requests 600] [--out bench/results/classifier.json]

Queries are real prompts: a fixed mix of GSM8K and MMLU-Pro questions from the test fixture
(short ones and long ones, as a gateway sees them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.decision import choose_tier
from rung.classifiers.embedder import open_embedder
from rung.classifiers.model import load, resolve
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]


def queries() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "tests/data/outcomes-fixture.jsonl").open()]
    return [r["prompt"] for r in rows]


async def run(
    batcher: MicroBatcher, model: Any, texts: list[str], concurrency: int, n: int
) -> dict[str, float]:
    prices = [float(t["price"]) for t in model.tiers] if model is not None else []
    latencies: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            text = texts[i % len(texts)]
            started = time.perf_counter()
            vector = await batcher.embed(text)
            if model is not None:
                probabilities = model.predict(vector[None, :], [text])[0]
                choose_tier(list(probabilities), prices, 0.2)
            latencies.append(time.perf_counter() - started)

    for text in texts[:20]:  # warm up the session and the allocator
        await batcher.embed(text)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "per_s": round(n / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=600,
        help="per measurement; the same query mix at both concurrencies",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = queries()
    model = load(resolve("production"))
    results: dict[str, Any] = {}
    static, _ = open_embedder("static-minilm-l6", default_models_dir())
    inline = MicroBatcher(static)
    results["static_inline"] = {
        "c1": asyncio.run(run(inline, model, texts, 1, args.requests)),
        "c64": asyncio.run(run(inline, model, texts, 64, args.requests)),
    }
    print("static_inline", json.dumps(results["static_inline"]), flush=True)
    for threads in (1, 2):
        embedder, _ = open_embedder("minilm-l6-int8", default_models_dir(), threads=threads)
        for wait_ms in (0.0, 2.0):
            batcher = MicroBatcher(embedder, max_batch=32, max_wait_s=wait_ms / 1000)
            try:
                name = f"minilm_threads{threads}_wait{wait_ms:g}ms_embed_only"
                results[name] = {
                    "c1": asyncio.run(run(batcher, None, texts, 1, args.requests)),
                    "c64": asyncio.run(run(batcher, None, texts, 64, args.requests)),
                }
                results[name]["mean_group"] = round(batcher.embedded / batcher.batches, 1)
                print(name, json.dumps(results[name]), flush=True)
            finally:
                batcher.close()
    lengths = [len(t) for t in texts]
    report = {
        "benchmark": "classifier",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "queries": {
            "count": len(texts),
            "median_chars": int(np.median(lengths)),
            "max_chars": max(lengths),
        },
        "targets": {"p50_ms_c1": 3, "per_s_c64": 300},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
