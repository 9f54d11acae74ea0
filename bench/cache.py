"""Cache speed: lookup latency at 1k, 10k and 100k entries in one tenant (memory and Redis
stores), and a cache hit end to end through the gateway next to the backend answering directly.

Lookups go through `SemanticCache.lookup` as the gateway calls it: an exact-key miss, then the
vector search in the request's scope (exact numpy below `ann_min`, HNSW above), the near-miss
guard and the store read of the match. Vectors are random unit vectors; each query is a stored
vector plus noise (cosine ~0.95), so every lookup is a semantic hit.

    python bench/cache.py [--sizes 1000 10000 100000] [--out bench/results/cache.json]

Redis needs `redis-server` on PATH (a private one is started on a free port and stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from overhead import load, stop  # type: ignore[import-not-found]
from tqdm import tqdm

from rung.cache.keys import cache_key
from rung.cache.semantic import SemanticCache
from rung.cache.store import CacheStore, MemoryStore
from rung.cache.stores import STORES
from rung.config import CacheConfig
from rung.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
BODY = b'{"object": "chat.completion", "choices": [{"message": {"content": "42"}}]}'


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def key_for(i: int) -> Any:
    payload = {"model": "rung", "messages": [{"role": "user", "content": f"question number {i}"}]}
    return cache_key("/chat/completions", payload)


async def lookups(store: CacheStore, size: int, queries: int, rng: np.random.Generator) -> Any:
    config = CacheConfig(similarity_threshold=0.8, max_entries_per_tenant=size + 10)
    cache = SemanticCache(store, config, ["small"])
    await cache.start()
    vectors = unit(rng.normal(size=(size, DIM)))
    for i in tqdm(range(size), desc=f"filling {size}", unit="entry", file=sys.stderr):
        await cache.put(
            "bench",
            key_for(i),
            vectors[i],
            BODY,
            tier="small",
            model="m",
            decided="small",
            route_key="r",
        )
    stored = cache.stats_of("bench").stored
    if stored != size:  # a put timed out (a loaded machine): say so rather than measure bypasses
        print(f"warning: {size - stored} of {size} puts failed", file=sys.stderr)
    while not cache.health()["available"]:  # let the store recover first
        await asyncio.sleep(1.1)
        await cache.lookup("bench", key_for(0), "r", lambda: _noop())
    index = next(iter(cache._indexes.values()))
    while index._building:  # noqa: ASYNC110 - the HNSW graph is built on a thread: wait
        await asyncio.sleep(0.1)
    latencies, hits = [], 0
    for _ in range(queries):
        target = int(rng.integers(size))
        query = unit(vectors[target] + rng.normal(size=DIM).astype(np.float32) * 0.017)
        # Same words as the target (the guard passes), another exact key (a semantic lookup).
        text = f"question number {target}"
        key = type(key_for(target))(key_for(target).scope, text + " ")

        async def decide(vector: np.ndarray = query) -> tuple[np.ndarray, str]:
            return vector, "small"

        started = time.perf_counter()
        found = await cache.lookup("bench", key, "r", decide)
        latencies.append(time.perf_counter() - started)
        hits += found.status == "hit-semantic"
    bypassed = cache.stats_of("bench").bypassed
    await cache.aclose()
    latencies.sort()
    return {
        "bypassed": bypassed,
        "p50_ms": round(1000 * statistics.median(latencies), 3),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 3),
        "semantic_hit_share": round(hits / queries, 3),
        "search": "hnsw" if index._graph is not None else "exact",
    }


async def _noop() -> tuple[None, str]:
    return None, "small"


def gateway_hits(requests: int) -> dict[str, Any]:
    """p50 of an exact hit and of a semantic hit through `rung serve`, vs the backend direct."""
    backend_port, rung_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "rung.yaml"
        backend = {"url": f"http://127.0.0.1:{backend_port}/v1", "max_concurrency": 256}
        config.write_text(
            yaml.safe_dump(
                {
                    "server": {"port": rung_port, "log_level": "warning"},
                    "routing": {"policy": "length"},
                    "tiers": [
                        {
                            "name": "small",
                            "model": "fake-model",
                            "backends": [backend],
                            "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                        }
                    ],
                }
            )
        )
        try:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rung.backends.fake_server",
                        "--port",
                        str(backend_port),
                        "--reply",
                        "Two plus two is four.",
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            wait_for_port(backend_port)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "rung", "serve", "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                )
            )
            wait_for_port(rung_port, timeout_s=120)
            via = f"http://127.0.0.1:{rung_port}/v1/chat/completions"
            direct = f"http://127.0.0.1:{backend_port}/v1/chat/completions"
            return asyncio.run(_hits(direct, via, requests))
        finally:
            stop(procs)


async def _hits(direct: str, via: str, requests: int) -> dict[str, Any]:
    import aiohttp

    async def post(text: str, temperature: float = 0) -> Any:
        body = {
            "model": "rung",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            "temperature": temperature,
        }
        async with aiohttp.ClientSession() as session, session.post(via, json=body) as r:
            return r.headers.get("x-rung-cache"), await r.read()

    assert (await post("What is 2+2?"))[0] == "miss"
    await asyncio.sleep(0.2)  # stored after the response
    assert (await post("What is 2+2?"))[0] == "hit-exact"
    assert (await post("What's 2+2?"))[0] == "hit-semantic"
    runs: dict[str, list[dict[str, float]]] = {
        "direct": [], "exact_hit": [], "semantic_hit": [], "miss": []}  # fmt: skip
    for r in range(3):  # alternating rounds: all four see the same machine noise
        runs["direct"].append(await load(direct, "fake-model", False, 1, requests))
        runs["exact_hit"].append(await _load_text(via, lambda _: "What is 2+2?", requests))
        runs["semantic_hit"].append(await _load_text(via, lambda _: "What's 2+2?", requests))
        # A new question each time: embedded, searched, answered by the backend, then stored.
        runs["miss"].append(
            await _load_text(
                via, lambda i, r=r: f"How far is city {r}-{i} from the coast?", requests, "miss"
            )
        )
    return {
        name: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        for name, rs in runs.items()
    }


async def _load_text(
    url: str, text: Callable[[int], str], n: int, status: str = "hit"
) -> dict[str, float]:
    import aiohttp

    latencies = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            body = json.dumps(
                {
                    "model": "rung",
                    "messages": [{"role": "user", "content": text(i)}],
                    "max_tokens": 16,
                    "temperature": 0,
                }
            ).encode()
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"content-type": "application/json"}
            ) as r:
                await r.read()
                assert r.headers["x-rung-cache"].startswith(status), r.headers["x-rung-cache"]
            latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--requests", type=int, default=500, help="gateway requests per round")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/cache.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"memory": {}, "redis": {}}
    redis_binary = shutil.which("redis-server")
    for size in args.sizes:
        store = MemoryStore(size + 10, 10**11, 86_400)
        results["memory"][str(size)] = asyncio.run(lookups(store, size, args.queries, rng))
        print("memory", size, results["memory"][str(size)], file=sys.stderr)
        if redis_binary is None:
            continue
        port = free_port()
        server = subprocess.Popen(
            [
                redis_binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            config = CacheConfig(
                store="redis",
                redis_url=f"redis://127.0.0.1:{port}/0",
                max_entries_per_tenant=size + 10,
                redis_timeout_ms=1000,
            )
            store = STORES["redis"](config, DIM)
            results["redis"][str(size)] = asyncio.run(lookups(store, size, args.queries, rng))
            print("redis", size, results["redis"][str(size)], file=sys.stderr)
        finally:
            server.terminate()
            server.wait(10)
    results["gateway_hit"] = gateway_hits(args.requests)
    report = {
        "benchmark": "cache",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"lookup_p50_ms_at_100k": 1.0, "gateway_semantic_hit_p50_ms": 5.0},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
