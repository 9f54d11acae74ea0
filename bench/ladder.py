"""What the local tiers can do: GSM8K questions sent to each local tier directly (not through
rung), graded against the reference. Prints JSON: accuracy, latency, tokens/s per tier, plus the
prompt and generation speeds behind config/local.yaml's prices (CPU-microseconds per token).

    python bench/ladder.py --data labels/local-small.jsonl [--n 50]   (any outcomes file)
           [--config config/local.yaml] [--out bench/results/ladder.json]

It starts the config's llama.cpp servers itself (one thread each) and stops them at the end.
The tiers are measured one after the other, so each has the machine to itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from rung.backends.local.launcher import LocalLadder
from rung.classifiers.grading import extract_number, grade_number
from rung.config import load_config
from rung.weights.fetch import default_models_dir

PROMPT = (
    "{question}\n\nSolve the problem step by step. End with a line of the form 'Answer: <number>'."
)


def load_questions(path: Path, n: int, seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # GSM8K questions only (graded by their number): an outcomes file of several data sets,
    # such as the repository's own labels/local-small.jsonl, works too.
    rows = [r for r in rows if str(r.get("dataset", "gsm8k")).startswith("gsm8k")]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def ask(
    client: httpx.Client, url: str, model: str, content: str, max_tokens: int
) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.post(
        url + "/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 0,
        },
    )
    response.raise_for_status()
    body = response.json()
    return {"body": body, "seconds": time.perf_counter() - started}


def prompt_speed(client: httpx.Client, url: str, model: str) -> float:
    """Prompt tokens per second: a long prompt, one generated token."""
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 60)
    speeds = []
    for i in range(3):
        result = ask(client, url, model, f"{i} {text}", 1)
        speeds.append(result["body"]["usage"]["prompt_tokens"] / result["seconds"])
    return statistics.median(speeds)


def measure_tier(
    client: httpx.Client,
    url: str,
    model: str,
    questions: list[dict[str, Any]],
    max_tokens: int,
    name: str,
) -> dict[str, Any]:
    rows = []
    for q in tqdm(questions, desc=f"{name:6}", unit="q", file=sys.stderr):
        result = ask(client, url, model, PROMPT.format(question=q["prompt"]), max_tokens)
        choice = result["body"]["choices"][0]
        answer = choice["message"]["content"] or ""
        usage = result["body"]["usage"]
        extracted = extract_number(answer)
        rows.append(
            {
                "id": q["id"],
                "correct": grade_number(answer, q["reference"]),
                "extracted": None if extracted is None else str(extracted),
                "seconds": result["seconds"],
                "completion_tokens": usage["completion_tokens"],
                "prompt_tokens": usage["prompt_tokens"],
                "finish_reason": choice["finish_reason"],
            }
        )
    seconds = [r["seconds"] for r in rows]
    tokens = sum(r["completion_tokens"] for r in rows)
    return {
        "accuracy": round(statistics.mean(r["correct"] for r in rows), 3),
        "mean_latency_s": round(statistics.mean(seconds), 2),
        "p50_latency_s": round(statistics.median(seconds), 2),
        "tokens_per_s": round(tokens / sum(seconds), 1),
        "mean_completion_tokens": round(tokens / len(rows), 1),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "cpu_seconds_total": round(sum(seconds), 1),  # one thread per server
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="outcomes JSONL with GSM8K rows (e.g. labels/local-small.jsonl)",
    )
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--config", type=Path, default=Path("config/local.yaml"))
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    config = load_config(args.config)
    questions = load_questions(args.data, args.n, args.seed)
    tiers: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as logs,
        LocalLadder(config, args.models_dir, Path(logs)) as ladder,
        httpx.Client(timeout=600) as client,
    ):
        ready = ladder.start()
        for tier in ready.tiers:
            url = tier.backends[0].url
            result = measure_tier(client, url, tier.model, questions, args.max_tokens, tier.name)
            result["prompt_tokens_per_s"] = round(prompt_speed(client, url, tier.model), 1)
            result["cpu_us_per_output_token"] = round(1e6 / result["tokens_per_s"])
            result["cpu_us_per_prompt_token"] = round(1e6 / result["prompt_tokens_per_s"])
            tiers[tier.name] = {"model": tier.model, **result}
            print(
                f"{tier.name}: accuracy {result['accuracy']}, {result['tokens_per_s']} tok/s",
                file=sys.stderr,
            )
    report = {
        "benchmark": "ladder",
        "data": args.data.name,
        "n": len(questions),
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "prompt_template": PROMPT,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "threads_per_server": 1,
        },
        "tiers": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in tiers.items()},
        "per_question": {k: v["rows"] for k, v in tiers.items()},
    }
    text = json.dumps(report, indent=2)
    print(json.dumps(report["tiers"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
