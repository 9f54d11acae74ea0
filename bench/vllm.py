"""rung in front of a real vLLM server, side by side with calling vLLM directly, in one run.

Starts one vLLM tier (SmolLM2-135M converted from its packaged GGUF, vLLM's CPU build from
`make vllm`) with rung's own launcher and a gateway in front of it (the tier pinned, cache off,
one worker), then alternates the same requests straight to vLLM and through rung: latency at
concurrency 1 (medians, and what rung adds), and requests per second at concurrency 8, JSON and
streamed. Prints JSON; keeps it in bench/results/vllm.json.

    python bench/vllm.py [--requests 40] [--out bench/results/vllm.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from rung.backends.local.launcher import LocalLadder
from rung.config import parse_config
from rung.ports import free_port
from rung.router.app import create_app
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]


async def one(session: aiohttp.ClientSession, url: str, model: str, stream: bool, i: int) -> float:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Count to three. ({i})"}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": stream,
    }
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def run(direct: str, gateway: str, model: str, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i in range(4):  # warm both paths (vLLM's first requests are slow)
            await one(session, direct, model, False, i)
            await one(session, gateway, "small", False, i)
        for stream in (False, True):
            kind = "stream" if stream else "json"
            times: dict[str, list[float]] = {"direct": [], "rung": []}
            for i in range(requests):  # alternating, concurrency 1
                times["direct"].append(await one(session, direct, model, stream, i))
                times["rung"].append(await one(session, gateway, "small", stream, i))
            p50 = {k: statistics.median(v) for k, v in times.items()}
            out[f"{kind}_c1_p50_ms"] = {k: round(v * 1000, 1) for k, v in p50.items()}
            out[f"{kind}_c1_rung_adds_ms"] = round((p50["rung"] - p50["direct"]) * 1000, 1)
            for name, url, target in (("direct", direct, model), ("rung", gateway, "small")):
                started = time.perf_counter()
                await asyncio.gather(
                    *(one(session, url, target, stream, i) for i in range(requests))
                )
                rate = requests / (time.perf_counter() - started)
                out.setdefault(f"{kind}_c{requests}_req_per_s", {})[name] = round(rate, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/vllm.json")
    args = parser.parse_args()
    config = parse_config(
        {
            "server": {"request_timeout_s": 300},
            "routing": {"policy": "length"},
            "cache": {"enabled": False},
            "tiers": [
                {
                    "name": "small",
                    "model": "smollm2",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "local": {"engine": "vllm", "weights": "smollm2-135m", "n_ctx": 2048},
                }
            ],
        },
        "<bench>",
    )
    with (
        tempfile.TemporaryDirectory() as logs,
        LocalLadder(config, default_models_dir(), Path(logs)) as ladder,
    ):
        ready = ladder.start()
        direct = ladder.servers[0].url + "/chat/completions"
        port = free_port()

        async def serve_and_run() -> dict[str, Any]:
            app = create_app(ready)
            server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
            task = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.05)
            try:
                return await run(
                    direct, f"http://127.0.0.1:{port}/v1/chat/completions", "smollm2",
                    args.requests,
                )  # fmt: skip
            finally:
                server.should_exit = True
                await task

        report = {"benchmark": "vllm", "requests": args.requests, **asyncio.run(serve_and_run())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2), file=sys.stdout)


if __name__ == "__main__":
    main()
