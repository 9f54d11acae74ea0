"""What rung adds to a request: the same requests straight to a backend and through rung,
measured side by side in one run (alternating rounds), printed as JSON.

The backend is rung's fake OpenAI-compatible server answering instantly, so every millisecond
measured is HTTP + gateway, not model time. rung runs as `rung serve` with one worker.

    python bench/overhead.py [--requests 2000] [--rounds 3] [--out bench/results/overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from rung.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "model": "MODEL",
    "messages": [{"role": "user", "content": "What is 2+2?"}],
    "max_tokens": 16,
}


TENANT_KEY = "bench-tenant-key-0123456789"


async def one(
    session: aiohttp.ClientSession, url: str, body: bytes, stream: bool, key: str | None = None
) -> float:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {await r.text()}")
        if stream:
            async for _ in r.content.iter_any():
                pass
        else:
            await r.read()
    return time.perf_counter() - started


async def load(
    url: str, model: str, stream: bool, concurrency: int, n: int, key: str | None = None
) -> dict[str, float]:
    body = json.dumps({**BODY, "model": model, "stream": stream}).encode()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(50, n)):  # warm connections and caches
            await one(session, url, body, stream, key)
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                latencies.append(await one(session, url, body, stream, key))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "rps": n / elapsed,
    }


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 20) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after `timeout_s`)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


SCENARIOS = ("json_c1", "json_c64", "stream_c1", "stream_c64")


async def measure(
    direct: str, via: str, requests: int, rounds: int, only: list[str], tenants: str | None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in only:
        stream, concurrency = name.startswith("stream"), int(name.rsplit("_c", 1)[1])
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "rung": [], "tenants": []}
        for _ in range(rounds):  # alternate so all see the same machine noise
            runs["direct"].append(await load(direct, "fake-model", stream, concurrency, requests))
            runs["rung"].append(await load(via, "rung", stream, concurrency, requests))
            if tenants is not None:
                runs["tenants"].append(
                    await load(tenants, "rung", stream, concurrency, requests, TENANT_KEY)
                )
        d, r = median_of(runs["direct"]), median_of(runs["rung"])
        results[name] = {
            "direct": d,
            "rung": r,
            "added_p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
            "added_p99_ms": round(r["p99_ms"] - d["p99_ms"], 3),
            "rps_ratio": round(r["rps"] / d["rps"], 3),
        }
        if tenants is not None:
            t = median_of(runs["tenants"])
            results[name]["with_tenants"] = t
            results[name]["tenants_add_p50_ms"] = round(t["p50_ms"] - r["p50_ms"], 3)
            results[name]["tenants_add_p99_ms"] = round(t["p99_ms"] - r["p99_ms"], 3)
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--tenants",
        action="store_true",
        help="also a gateway with a tenant (key auth + memory ledger with a budget + rate limits)",
    )
    args = parser.parse_args()

    backend_port, rung_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    tenants_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        base = {
            "server": {"port": rung_port, "log_level": "warning"},
            # The gateway's own cost; bench/classifier.py measures the classifier's and
            # bench/cache.py the cache's (every request here is the same one).
            "routing": {"policy": "length"},
            "cache": {"enabled": False},
            "tiers": [
                {
                    "name": "small",
                    "model": "fake-model",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "backends": [
                        {"url": f"http://127.0.0.1:{backend_port}/v1", "max_concurrency": 256}
                    ],
                }
            ],
        }
        config = Path(tmp) / "rung.yaml"
        config.write_text(yaml.safe_dump(base))
        # The same gateway with a tenant: key auth, a budget (ledger reserve + settle per
        # request, memory store) and rate limits high enough never to refuse.
        limited = {
            **base,
            "server": {"port": tenants_port, "log_level": "warning"},
            "tenants": [
                {
                    "name": "bench",
                    "keys": [TENANT_KEY],
                    "policy": {
                        "daily_budget_usd": 1e6,
                        "requests_per_minute": 10**8,
                        "tokens_per_minute": 10**12,
                    },
                }
            ],
        }
        tenants_config = Path(tmp) / "tenants.yaml"
        tenants_config.write_text(yaml.safe_dump(limited))
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
            wait_for_port(rung_port)
            tenants_url = None
            if args.tenants:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "rung", "serve", "--config", str(tenants_config)],
                        stdout=subprocess.DEVNULL,
                    )
                )
                wait_for_port(tenants_port)
                tenants_url = f"http://127.0.0.1:{tenants_port}/v1/chat/completions"
            results = asyncio.run(
                measure(
                    f"http://127.0.0.1:{backend_port}/v1/chat/completions",
                    f"http://127.0.0.1:{rung_port}/v1/chat/completions",
                    args.requests,
                    args.rounds,
                    args.only,
                    tenants_url,
                )
            )
        finally:
            stop(procs)
    report = {
        "benchmark": "overhead",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requests_per_measurement": args.requests,
        "rounds": args.rounds,
        "rung_workers": 1,
        "targets": {"added_p50_ms_c1": 2, "added_p99_ms_c1": 8, "rung_rps_c64": 1500},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
