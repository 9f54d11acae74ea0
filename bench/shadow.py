"""Shadow checks add no client latency: two gateways side by side, one with `shadow.rate: 1`,
one with shadow off, in front of the same fake tiers (the reference tier answers after 20 ms),
rotated rounds; client p50/p99 at concurrency 1 and 16, and how many answers were checked.

    python bench/shadow.py [--requests 1000] [--rounds 3] [--out bench/results/shadow.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import load, stop

from rung.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-key-0123456789"
RATES = (("shadow off", 0.0), ("shadow rate 0.05", 0.05), ("shadow rate 1.0", 1.0))


def config(port: int, small: int, large: int, rate: float) -> dict[str, Any]:
    def tier(name: str, backend: int) -> dict[str, Any]:
        return {
            "name": name,
            "model": "fake-model",
            "price": {"input_per_mtok": 1, "output_per_mtok": 1},
            "backends": [{"url": f"http://127.0.0.1:{backend}/v1", "max_concurrency": 256}],
        }

    return {
        "server": {"port": port, "log_level": "warning", "admin_key": ADMIN},
        "routing": {"policy": "length"},
        "cache": {"enabled": False},
        "shadow": {"rate": rate, "max_concurrency": 4},
        "tiers": [tier("small", small), {**tier("large", large), "model": "fake-model-2"}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/shadow.json")
    args = parser.parse_args()
    small, large = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for port, extra in (
                (small, []),
                (large, ["--model", "fake-model-2", "--delay", "0.02"]),
            ):
                command = [sys.executable, "-m", "rung.backends.fake_server", "--port", str(port),
                           "--reply", "The answer is 4.", *extra]  # fmt: skip
                procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
                wait_for_port(port)
            for name, rate in RATES:
                port = free_port()
                path = Path(tmp) / f"{rate}.yaml"
                path.write_text(yaml.safe_dump(config(port, small, large, rate)))
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "rung", "serve", "--config", str(path)],
                    stdout=subprocess.DEVNULL))  # fmt: skip
                wait_for_port(port, timeout_s=120)
                urls[name] = f"http://127.0.0.1:{port}"
            report = asyncio.run(measure(urls, args.requests, args.rounds))
        finally:
            stop(procs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


async def measure(urls: dict[str, str], requests: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {name: {} for name in urls}
    names = list(urls)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated
            started = time.perf_counter()
            for concurrency in (1, 16):
                got = await load(f"{urls[name]}/v1/chat/completions", "rung", False, concurrency,
                                 requests)  # fmt: skip
                for key in ("p50_ms", "p99_ms"):
                    runs[name].setdefault(f"c{concurrency}_{key}", []).append(got[key])
            print(f"round {r} {name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    await asyncio.sleep(1)  # the last checks
    out: dict[str, Any] = {"benchmark": "shadow", "requests": requests, "rounds": rounds}
    async with httpx.AsyncClient() as http:
        usages = {
            name: (await http.get(f"{url}/admin/usage", params={"tenant": "default"},
                                  headers={"authorization": f"Bearer {ADMIN}"})).json()
            for name, url in urls.items()
        }  # fmt: skip
    for name in urls:
        med = {k: round(statistics.median(v), 3) for k, v in runs[name].items()}
        usage = usages[name]
        shadow = usage.get("shadow")
        if shadow:
            med["checked"] = shadow["tiers"]["small"]["sampled"]
            med["skipped"] = shadow["skipped"]
            med["agreement"] = shadow["tiers"]["small"]["agreement"]
        out[name] = med
    off = out["shadow off"]
    out["added_p50_ms"] = {
        name: {c: round(out[name][f"{c}_p50_ms"] - off[f"{c}_p50_ms"], 3) for c in ("c1", "c16")}
        for name, _ in RATES[1:]
    }
    return out


if __name__ == "__main__":
    main()
