"""Memory under a soak: unique prompts through `rung serve` with the cache on, RSS sampled.

A fake instant backend answers; rung runs one worker with the memory cache capped at
`--entries` entries, so after the first `--entries` requests every new answer evicts an old
one. RSS is sampled every `--every` requests; memory must level off once the cache is full.
JSON out: the samples and the growth over the last half.

    python bench/soak.py [--requests 50000] [--entries 10000] [--out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from overhead import stop

from rung.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(url: str, pid: int, requests: int, every: int, concurrency: int) -> list[Any]:
    samples: list[Any] = [{"requests": 0, "rss_mb": round(rss_mb(pid), 1)}]
    done, failed = 0, 0
    todo = iter(range(requests))
    started = time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, failed
        for i in todo:
            body = {
                "model": "rung",
                "temperature": 0,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Soak question {i}: what is {i} + 1?"}],
            }
            async with session.post(url, json=body) as r:
                await r.read()
                failed += r.status != 200
            done += 1
            if done % every == 0:
                samples.append(
                    {
                        "requests": done,
                        "rss_mb": round(rss_mb(pid), 1),
                        "seconds": round(time.perf_counter() - started, 1),
                        "failed": failed,
                    }
                )

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=2_500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/soak.json")
    args = parser.parse_args()
    backend, port = free_port(), free_port()
    config = {
        "server": {"port": port, "log_level": "warning"},
        "routing": {"policy": "length"},
        "cache": {"enabled": True, "max_entries_per_tenant": args.entries},
        "tiers": [
            {
                "name": "small",
                "model": "fake-model",
                "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                "backends": [{"url": f"http://127.0.0.1:{backend}/v1", "max_concurrency": 256}],
            }
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rung.yaml"
        path.write_text(yaml.safe_dump(config))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "rung.backends.fake_server", "--port", str(backend)],
                stdout=subprocess.DEVNULL,
            )
        ]
        try:
            wait_for_port(backend)
            procs.append(subprocess.Popen([sys.executable, "-m", "rung", "serve", "--config",
                                           str(path)]))  # fmt: skip
            wait_for_port(port, timeout_s=120)
            samples = asyncio.run(
                soak(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    procs[1].pid,
                    args.requests,
                    args.every,
                    args.concurrency,
                )
            )
        finally:
            stop(procs)
    half = [s for s in samples if s["requests"] >= args.requests // 2]
    growth = (half[-1]["rss_mb"] - half[0]["rss_mb"]) / half[0]["rss_mb"] if half else None
    report = {
        "benchmark": "soak",
        "requests": args.requests,
        "cache_entries": args.entries,
        "concurrency": args.concurrency,
        "samples": samples,
        "rss_growth_over_last_half": round(growth, 4) if growth is not None else None,
        "target": "growth within 10% over the last half",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
