"""Redis capacity (issue 32): what each kind of request costs Redis, on one primary and on a
3-primary cluster measured side by side in one run, where one primary saturates, and what the
in-process semantic index costs each gateway replica at 100k and 1M entries.

Both topologies keep a replica per primary (the single primary's is what Sentinel would fail
over to), so replication is in both figures. Per request kind (pinned, routed, metered, exact
hit, semantic hit, miss with store) a real `rung serve` on a fake backend sends `--requests`
requests one at a time; Redis' own counters (`INFO commandstats`, `INFO stats`, `INFO cpu`,
`INFO memory`), summed over the primaries, are read before and after, less what the same
gateway does idle for as long (health checks, the cache's subscription). Calls made inside
rung's Lua scripts are counted by Redis as commands too: `scripts` is the round trips that ran
a script, `commands` everything Redis executed.

Saturation: Redis runs commands on one core, so one primary serves about
1 / (Redis CPU per request) requests a second; `redis-benchmark` on the same primary is the
yardstick (its GET rate, and its Redis CPU per GET measured the same way).

    python bench/redis_capacity.py [--requests 300] [--index-sizes 100000 1000000]
                                   [--out bench/results/redis_capacity.json]

Needs `redis-server`, `redis-cli` and `redis-benchmark` on PATH (Debian's redis-server
package); every server started here is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rung.cache.index import ScopeIndex  # noqa: E402
from rung.ports import free_port, wait_for_port  # noqa: E402
from rung.tenants.keys import hash_key  # noqa: E402
from tests.redis_cluster import RedisCluster  # noqa: E402

FREE, PAID = "free-key-0123456789", "paid-key-0123456789"
KINDS = ("pinned", "routed", "metered", "miss_store", "exact_hit", "semantic_hit")
DIM = 384


# -- Redis counters -------------------------------------------------------------------------


def cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30
    ).stdout


def info(port: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in cli(port, "info", "everything").splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def snapshot(ports: list[int]) -> dict[str, float]:
    """Counters summed over `ports`: calls per command, bytes, CPU seconds, memory."""
    total: dict[str, float] = {}
    for port in ports:
        for name, value in info(port).items():
            if name.startswith("cmdstat_"):
                calls = int(value.split("calls=", 1)[1].split(",", 1)[0])
                key = "cmd:" + name.removeprefix("cmdstat_")
                total[key] = total.get(key, 0) + calls
            elif name in (
                "total_net_input_bytes", "total_net_output_bytes", "used_cpu_sys",
                "used_cpu_user", "used_memory", "total_commands_processed",
                "total_net_repl_output_bytes",
            ):  # fmt: skip
                total[name] = total.get(name, 0) + float(value)
    return total


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


# -- the gateway ----------------------------------------------------------------------------


def start_redis(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    home = tmp / str(port)
    home.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(home), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return proc, port


def start_primary_with_replica(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], int]:
    """One primary and its replica (what Sentinel runs), like each shard of the cluster."""
    primary, port = start_redis(tmp)
    replica, _ = start_redis(tmp, "--replicaof", "127.0.0.1", str(port))
    deadline = time.monotonic() + 30
    while "state=online" not in cli(port, "info", "replication"):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not come online")
        time.sleep(0.1)
    return [primary, replica], port


def write_config(path: Path, backend_ports: list[int], url: str) -> int:
    port = free_port()
    tiers = [
        {"name": name, "model": f"fake-{name}",
         "backends": [{"url": f"http://127.0.0.1:{backend}/v1", "max_concurrency": 64}],
         "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
        for name, backend in zip(("small", "large"), backend_ports, strict=True)
    ]  # fmt: skip
    config = {
        "server": {"port": port, "log_level": "warning"},
        "routing": {"policy": "length", "length_thresholds": [2000]},
        "tiers": tiers,
        "cache": {"store": "redis", "redis_url": url},
        "limits": {"store": "redis", "redis_url": url},
        "tenants": [
            {"name": "free", "keys": [hash_key(FREE)]},
            {
                "name": "paid",
                "keys": [hash_key(PAID)],
                "policy": {"daily_budget_usd": 1000.0, "requests_per_minute": 1_000_000},
            },
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return port


def request(kind: str, i: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of request `i` of one kind."""
    key = PAID if kind == "metered" else FREE
    headers = {"authorization": f"Bearer {key}"}
    text = {
        "miss_store": f"How far is city {i} from the coast?",
        "exact_hit": "What is 2+2?",
        "semantic_hit": "What's 2+2?",
    }.get(kind, f"Say hello to visitor {i}.")
    if kind in ("pinned", "routed", "metered"):
        headers["cache-control"] = "no-store"  # the cache is measured in its own kinds
    body = {
        "model": "rung" if kind == "routed" else "small",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
        "temperature": 0,
    }
    return body, headers


async def drive(url: str, kind: str, n: int, offset: int) -> dict[str, int]:
    """n requests of one kind, one at a time; the x-rung-cache values they got."""
    seen: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(n):
            body, headers = request(kind, offset + i)
            got = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            label = f"{got.status_code}:{got.headers.get('x-rung-cache', '-')}"
            seen[label] = seen.get(label, 0) + 1
    return seen


def entry_memory(ports: list[int], sample: int = 100) -> dict[str, int]:
    """`MEMORY USAGE` of stored cache entries (hash, vector, question, answer) and of their
    answers alone, medians over a sample: what a cached answer costs Redis."""
    totals, answers = [], []
    for port in ports:
        keys = cli(port, "--scan", "--pattern", "rung:cache:*").split()
        for key in keys[: sample // len(ports) + 1]:
            totals.append(int(cli(port, "memory", "usage", key, "samples", "0") or 0))
            fields = cli(port, "hkeys", key).split()
            body = next((f for f in fields if f in ("body", "response")), None)
            if body:
                answers.append(int(cli(port, "hstrlen", key, body) or 0))
    return {
        "entry_bytes": int(statistics.median(totals)) if totals else 0,
        "answer_bytes": int(statistics.median(answers)) if answers else 0,
        "entries_sampled": len(totals),
    }


def measure(url: str, ports: list[int], n: int) -> dict[str, Any]:
    """Each kind's Redis cost per request, less the idle gateway's over the same time."""
    asyncio.run(drive(url, "miss_store", 1, 10**6))  # warm: connections, scripts loaded
    body, headers = request("exact_hit", 0)
    httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    time.sleep(0.5)  # stored after the response
    idle_before = snapshot(ports)
    idle_started = time.perf_counter()
    time.sleep(5)
    idle = delta(snapshot(ports), idle_before)
    idle_s = time.perf_counter() - idle_started
    results: dict[str, Any] = {}
    for kind in KINDS:
        before = snapshot(ports)
        started = time.perf_counter()
        seen = asyncio.run(drive(url, kind, n, 0))
        time.sleep(0.3)  # the last store lands after its response
        elapsed = time.perf_counter() - started
        moved = delta(snapshot(ports), before)
        net = {k: v - idle.get(k, 0) * elapsed / idle_s for k, v in moved.items()}
        calls = {k[4:]: round(v / n, 2) for k, v in sorted(net.items())
                 if k.startswith("cmd:") and v / n >= 0.05}  # fmt: skip
        cpu = net.get("used_cpu_sys", 0) + net.get("used_cpu_user", 0)
        results[kind] = {
            "responses": seen,
            "scripts_per_request": round(
                sum(v for k, v in calls.items() if k.startswith(("evalsha", "eval", "fcall"))),
                2,
            ),
            "commands_per_request": round(sum(calls.values()), 2),
            "calls_per_request": calls,
            "bytes_in_per_request": round(net.get("total_net_input_bytes", 0) / n),
            "bytes_out_per_request": round(net.get("total_net_output_bytes", 0) / n),
            "replication_bytes_per_request": round(net.get("total_net_repl_output_bytes", 0) / n),
            "redis_cpu_us_per_request": round(1e6 * cpu / n, 1),
            "used_memory_delta_per_request": round(net.get("used_memory", 0) / n),
        }
    results["cached_answer_memory"] = entry_memory(ports)
    results["idle_per_s"] = {
        "commands": round(sum(v for k, v in idle.items() if k.startswith("cmd:")) / idle_s, 1),
        "cpu_ms": round(
            1000 * (idle.get("used_cpu_sys", 0) + idle.get("used_cpu_user", 0)) / idle_s, 2
        ),
    }
    return results


def topology(name: str, url: str, ports: list[int], backend_ports: list[int], n: int) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "rung.yaml"
        port = write_config(config, backend_ports, url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "rung", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, timeout_s=120)
            print(f"measuring {name}", file=sys.stderr)
            return measure(f"http://127.0.0.1:{port}", ports, n)
        finally:
            proc.terminate()
            proc.wait(20)


# -- saturation yardstick -------------------------------------------------------------------


def yardstick(port: int, n: int = 200_000) -> dict[str, Any]:
    """redis-benchmark's GET and SET rates on the primary (50 clients, no pipelining), and the
    Redis CPU it spent per GET, measured like the request kinds'."""
    before = snapshot([port])
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50", "-t", "get,set",
         "--csv"],
        capture_output=True, text=True, timeout=600,
    ).stdout  # fmt: skip
    moved = delta(snapshot([port]), before)
    rates = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] in ("GET", "SET"):
            rates[cells[0].lower() + "_ops_per_s"] = float(cells[1])
    cpu = moved.get("used_cpu_sys", 0) + moved.get("used_cpu_user", 0)
    return {**rates, "redis_cpu_us_per_op": round(1e6 * cpu / (2 * n), 2)}


# -- the in-process index -------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def index_cost(size: int, queries: int = 2000) -> dict[str, Any]:
    """One scope's index of `size` entries as a replica builds it at start (one add per
    entry, HNSW from 4,096 on): its memory, the time to build it, and search latency."""
    rng = np.random.default_rng(0)
    gc.collect()
    base = rss_bytes()
    index = ScopeIndex(DIM, ann_min=4096, background=False)
    started = time.perf_counter()
    chunk = 50_000
    with tqdm(total=size, desc=f"index {size}", unit="entry", file=sys.stderr) as bar:
        for start in range(0, size, chunk):
            block = rng.normal(size=(min(chunk, size - start), DIM)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            for offset, vector in enumerate(block):
                index.add(f"rung:cache:t:{start + offset:040x}", vector)
            bar.update(len(block))
    built_s = time.perf_counter() - started
    memory = rss_bytes() - base
    latencies = []
    for _ in range(queries):
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        t = time.perf_counter()
        index.search(query, 4)
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    result = {
        "entries": size,
        "rss_bytes": memory,
        "bytes_per_entry": round(memory / size),
        "build_s": round(built_s, 1),
        "search_p50_ms": round(1000 * statistics.median(latencies), 3),
        "search_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 3),
    }
    del index
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--index-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/redis_capacity.json")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli", "redis-benchmark"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (apt install redis-server)")
    procs: list[subprocess.Popen[bytes]] = []
    cluster = RedisCluster(shutil.which("redis-server") or "redis-server")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            backend_ports = [free_port(), free_port()]
            for name, backend_port in zip(("small", "large"), backend_ports, strict=True):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "rung.backends.fake_server", "--port",
                         str(backend_port), "--model", f"fake-{name}", "--reply",
                         "Two plus two is four."],
                        stdout=subprocess.DEVNULL,
                    )
                )  # fmt: skip
                wait_for_port(backend_port)
            pair, single_port = start_primary_with_replica(Path(tmp))
            procs += pair
            cluster.start()
            cluster.replicas_in_sync()
            single_url = f"redis://127.0.0.1:{single_port}/0"
            results["one_primary"] = topology(
                "one primary", single_url, [single_port], backend_ports, args.requests
            )
            results["cluster_3_primaries"] = topology(
                "cluster", cluster.url, cluster.primaries(), backend_ports, args.requests
            )
            results["yardstick"] = yardstick(single_port)
        finally:
            cluster.stop()
            for proc in procs:
                proc.terminate()
                proc.wait(20)
    per_core = results["yardstick"]
    saturation = {}
    for kind in KINDS:
        cpu = results["one_primary"][kind]["redis_cpu_us_per_request"]
        saturation[kind] = round(1e6 / cpu) if cpu > 0 else None
    results["one_primary_saturation_rps"] = saturation
    results["one_primary_saturation_note"] = (
        "1 / Redis CPU per request (Redis runs commands on one core); redis-benchmark GET on "
        f"the same primary: {per_core.get('get_ops_per_s')} ops/s at "
        f"{per_core['redis_cpu_us_per_op']} us of Redis CPU each"
    )
    results["index"] = [index_cost(size) for size in args.index_sizes]
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    report = {
        "benchmark": "redis_capacity",
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "redis": redis_version,
        },
        "requests_per_kind": args.requests,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
