"""What judging a stream costs in time to first token, on the real local ladder, for each
`escalation.streams` mode.

Starts the llama.cpp tiers of config/local.yaml and three gateways in front of the same
servers: `off` (streams are not judged), `probe` (escalation on with a threshold of 0: every
stream's first `probe_tokens` tokens are held back and judged, and it never escalates) and
`hold` (the same, but the whole answer is produced and judged before its first byte goes out).
The differences are the judging alone. Alternating requests, medians, JSON.

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
    holding = base.model_copy(
        update={"escalation": EscalationConfig(enabled=True, threshold=0.0, streams="hold")}
    )
    configs = (base, probing, holding)
    ports = [free_port() for _ in configs]
    servers = [await serve(create_app(c), p) for c, p in zip(configs, ports, strict=True)]
    urls = [f"http://127.0.0.1:{p}/v1/chat/completions" for p in ports]
    times: dict[str, list[float]] = {"off": [], "probe": [], "hold": []}
    for i in range(requests):
        question = QUESTIONS[i % len(QUESTIONS)]
        for name, url in zip(times, urls, strict=True):
            times[name].append(await ttft(url, question))
    for server in servers:
        server.should_exit = True
    await asyncio.sleep(0.5)
    median = {name: statistics.median(runs) for name, runs in times.items()}
    return {
        "ttft_p50_s": {name: round(value, 3) for name, value in median.items()},
        "probe_adds_s": round(median["probe"] - median["off"], 3),
        "hold_adds_s": round(median["hold"] - median["off"], 3),
        "answer_tokens": 48,
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
