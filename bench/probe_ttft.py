"""What the escalation stream probe costs in time to first token, on the real local ladder.

Starts the llama.cpp tiers of config/local.yaml and two gateways in front of the same servers:
one without escalation, one with escalation on streams and a threshold of 0 (it probes every
stream, holds back the first `probe_tokens` tokens, and never escalates), so the difference is
the probe alone. Alternating requests, medians, JSON.

    python bench/probe_ttft.py [--requests 10] [--out bench/results/probe_ttft.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from rung.backends.local.launcher import LocalLadder
from rung.config import CacheConfig, EscalationConfig, GoalConfig, load_config
from rung.ports import free_port
from rung.router.app import create_app
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Explain in three sentences why the sky is blue.",
    "Write a short paragraph about the history of bread.",
    "Describe how a bicycle works in a few sentences.",
]


async def ttft(url: str, question: str) -> float:
    body = {
        "model": "rung",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
    }
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.post(url, json=body) as response:
            async for line in response.content:
                if b'"content"' in line and b'"content": ""' not in line:
                    first = time.perf_counter() - started
                    async for _ in response.content:
                        pass
                    return first
    raise RuntimeError("no content streamed")


async def serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    return server


async def run(config: Any, requests: int) -> dict[str, Any]:
    base = config.model_copy(
        update={
            "cache": CacheConfig(enabled=False),
            # the cheapest goal: the classifier picks the small tier
            "routing": config.routing.model_copy(update={"goal": GoalConfig(max_cost_share=0.01)}),
        }
    )
    probing = base.model_copy(update={"escalation": EscalationConfig(enabled=True, threshold=0.0)})
    ports = [free_port(), free_port()]
    servers = [await serve(create_app(c), p) for c, p in zip((base, probing), ports, strict=True)]
    urls = [f"http://127.0.0.1:{p}/v1/chat/completions" for p in ports]
    times: dict[str, list[float]] = {"plain": [], "probe": []}
    for i in range(requests):
        question = QUESTIONS[i % len(QUESTIONS)]
        for name, url in zip(times, urls, strict=True):
            times[name].append(await ttft(url, question))
    for server in servers:
        server.should_exit = True
    await asyncio.sleep(0.5)
    plain, probe = statistics.median(times["plain"]), statistics.median(times["probe"])
    return {
        "ttft_p50_s": {"plain": round(plain, 3), "probe": round(probe, 3)},
        "probe_adds_s": round(probe - plain, 3),
        "probe_tokens": probing.escalation.probe_tokens or 24,
        "runs": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/probe_ttft.json")
    args = parser.parse_args()
    config = load_config(ROOT / "config/local.yaml")
    with LocalLadder(config, default_models_dir(), ROOT / ".rung/bench-logs") as ladder:
        ready = ladder.start()  # returns once every server answers
        report = {"benchmark": "probe_ttft", **asyncio.run(run(ready, args.requests))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2), file=sys.stdout)


if __name__ == "__main__":
    main()
