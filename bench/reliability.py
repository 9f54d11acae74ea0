"""Reliability under faults, with real processes on loopback: counts, printed as JSON.

Every scenario runs `rung serve` processes in front of fake backend processes, drives load
with unique prompts, injects a fault mid-run and reports what clients saw:

- `replica_killed`: tier small has two replicas; one is SIGKILLed under load;
- `tier_killed`: both replicas of small are killed under load (large answers);
- `redis_paused`: the limits and cache store is SIGSTOPped for 5 s, then continued, under load
  (limits fail_open): afterwards the reservations must be back to 0;
- `hanging_backend`, `garbage_backend`, `dropping_backend`: the small tier's only replica hangs
  past its read timeout, answers garbage, or drops connections (large answers);
- `redis_killed`: the store SIGKILLed under load and restarted empty on the same port;
- `budget_race`: two gateways on one Redis, 100 concurrent `n: 4` requests against a budget
  for 10 single answers: spend must stay within the budget, reservations back to 0.

    python bench/reliability.py [--requests 2000] [--out bench/results/reliability.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from overhead import stop  # noqa: E402

from rung.ports import free_port, wait_for_port  # noqa: E402
from tests.redis_server import RedisServer, find_redis_server  # noqa: E402

ADMIN = "reliability-admin-key-0123"
KEY = "reliability-tenant-key-0123"


def fake(port: int, *flags: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rung.backends.fake_server", "--port", str(port),
         "--reply", "fine", *flags],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return proc


def gateway(tmp: Path, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = tmp / f"rung-{config['server']['port']}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rung", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(config["server"]["port"], timeout_s=120)
    return proc


def tier(name: str, ports: list[int]) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"{name}-model",
        "price": {"input_per_mtok": 1, "output_per_mtok": 2},
        "backends": [{"url": f"http://127.0.0.1:{p}/v1", "read_timeout_s": 5} for p in ports],
    }


def base(port: int, small: list[int], large: list[int]) -> dict[str, Any]:
    return {
        "server": {"port": port, "log_level": "error", "admin_key": ADMIN},
        "health": {"interval_s": 0.5, "failure_threshold": 1, "cooldown_s": 5},
        "routing": {"policy": "length"},
        "cache": {"enabled": False},
        "tiers": [tier("small", small), tier("large", large)],
    }


async def drive(
    urls: list[str],
    count: int,
    concurrency: int,
    fault: Any = None,
    at: float = 0.3,
    **extra: Any,
) -> dict[str, int]:
    """`count` unique requests; `fault()` runs once `at` of them are done. Counts by status."""
    counts: dict[str, int] = {}
    todo = iter(range(count))
    done = [0]
    fired = [False]
    headers = {"authorization": f"Bearer {KEY}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in todo:
            body = {"model": "rung", "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": f"reliability {i} {time.time()}"}],
                    **extra}  # fmt: skip
            try:
                async with session.post(urls[i % len(urls)], json=body, headers=headers) as r:
                    await r.read()
                    key = str(r.status)
            except aiohttp.ClientError as exc:
                key = type(exc).__name__
            counts[key] = counts.get(key, 0) + 1
            done[0] += 1
            if fault is not None and not fired[0] and done[0] >= at * count:
                fired[0] = True
                await asyncio.get_running_loop().run_in_executor(None, fault)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts


def usage(port: int, tenant: str = "bench") -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/usage?tenant={tenant}",
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def with_tenant(config: dict[str, Any], redis: str | None, budget: float) -> dict[str, Any]:
    limits: dict[str, Any] = {"store": "memory"}
    if redis is not None:
        limits = {"store": "redis", "redis_url": redis, "on_store_failure": "fail_open",
                  "reservation_lease_s": 10}  # fmt: skip
    return {
        **config,
        "limits": limits,
        "tenants": [{"name": "bench", "keys": [KEY], "policy": {"daily_budget_usd": budget}}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/reliability.json")
    args = parser.parse_args()
    binary = find_redis_server()
    report: dict[str, Any] = {"benchmark": "reliability", "requests": args.requests}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            ports = [free_port() for _ in range(4)]
            backends = [fake(p) for p in ports]
            procs += backends
            port = free_port()
            procs.append(gateway(tmp, base(port, ports[:2], ports[2:])))
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            n = args.requests
            report["replica_killed"] = asyncio.run(
                drive([url], n, 16, lambda: backends[0].send_signal(signal.SIGKILL))
            )
            report["tier_killed"] = asyncio.run(
                drive([url], n, 16, lambda: backends[1].send_signal(signal.SIGKILL))
            )
            # Bad backends in front of a good one: a hanging one (past its 5 s read timeout),
            # one that answers garbage, one that drops the connection.
            for label, flags in (
                ("hanging_backend", ("--delay", "30")),
                ("garbage_backend", ("--mode", "garbage")),
                ("dropping_backend", ("--mode", "drop")),
            ):
                bad = free_port()
                procs.append(fake(bad, *flags))
                gw = free_port()
                procs.append(gateway(tmp, base(gw, [bad], ports[3:])))
                report[label] = asyncio.run(
                    drive([f"http://127.0.0.1:{gw}/v1/chat/completions"], n // 4, 16)
                )
            if binary is not None:
                redis = RedisServer(binary).start()
                try:
                    gw = free_port()
                    config = with_tenant(base(gw, ports[2:3], ports[3:]), redis.url, 1e6)
                    config["cache"] = {"enabled": True, "store": "redis", "redis_url": redis.url,
                                       "semantic": False}  # fmt: skip
                    procs.append(gateway(tmp, config))
                    gurl = f"http://127.0.0.1:{gw}/v1/chat/completions"
                    pid = redis.process.pid if redis.process else 0

                    def pause() -> None:
                        os.kill(pid, signal.SIGSTOP)
                        time.sleep(5)
                        os.kill(pid, signal.SIGCONT)

                    report["redis_paused"] = asyncio.run(drive([gurl], n, 16, pause))

                    time.sleep(3)  # reconciliation runs every second
                    spent = usage(gw)
                    paused = report["redis_paused"]
                    paused["reserved_3s_after_usd"] = spent["budget"]["reserved_usd"]
                    time.sleep(10)  # the lease (10 s here) of a reservation lost in the pause
                    spent = usage(gw)
                    paused["reserved_after_lease_usd"] = spent["budget"]["reserved_usd"]
                    paused["requests_recorded"] = spent["today"]["requests"]

                    def kill_and_restart() -> None:
                        assert redis.process is not None
                        redis.process.send_signal(signal.SIGKILL)
                        redis.process.wait()
                        time.sleep(3)
                        redis.start()  # same port, empty

                    report["redis_killed"] = asyncio.run(drive([gurl], n, 16, kill_and_restart))
                    # Two gateways on one Redis, n=4 each, against a budget for 10 answers.
                    race_ports = [free_port(), free_port()]
                    one = 4 * (40 + 8 * 2)  # bound of the prompt (bytes) + 4 x 8 tokens x 2 $
                    budget = 10 * one / 4 / 1e6
                    for p in race_ports:
                        cfg = with_tenant(base(p, ports[2:3], ports[3:]), redis.url, budget)
                        cfg["tenants"][0]["name"] = "race"
                        procs.append(gateway(tmp, cfg))
                    race_urls = [f"http://127.0.0.1:{p}/v1/chat/completions" for p in race_ports]
                    counts = asyncio.run(drive(race_urls, 100, 50, n=4))
                    time.sleep(1)
                    after = usage(race_ports[0], "race")["budget"]
                    report["budget_race"] = {
                        "budget_usd": budget,
                        "statuses": counts,
                        "spent_usd": after["spent_today_usd"],
                        "reserved_after_usd": after["reserved_usd"],
                        "within_budget": after["spent_today_usd"] <= budget,
                    }
                finally:
                    redis.stop()
        finally:
            stop(procs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
