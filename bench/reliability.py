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

Charging scenarios (`charging`; memory and Redis ledgers, a small daily budget each): streams
longer than their reservation's lease in two waves a lease apart, a backend that ignores
max_tokens, backends that report negative and absurd usage, clients that hang up mid-stream.
Each reports spend against the budget and records written against requests admitted (0 lost).

    python bench/reliability.py [--requests 2000] [--only charging] [--out ...]
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
    limits: dict[str, Any] = {"store": "memory", "reservation_lease_s": 10}
    if redis is not None:
        limits = {"store": "redis", "redis_url": redis, "on_store_failure": "fail_open",
                  "reservation_lease_s": 10}  # fmt: skip
    return {
        **config,
        "limits": limits,
        "tenants": [{"name": "bench", "keys": [KEY], "policy": {"daily_budget_usd": budget}}],
    }


async def streams(
    url: str, count: int, concurrency: int, hang_up_after: int | None = None, **extra: Any
) -> dict[str, int]:
    """`count` streamed requests; each read to its end (or dropped after `hang_up_after`
    content events). Counts: ok, error (an error event), the HTTP status otherwise, hung_up."""
    counts: dict[str, int] = {}
    todo = iter(range(count))
    headers = {"authorization": f"Bearer {KEY}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in todo:
            body = {"model": "rung", "stream": True,
                    "messages": [{"role": "user", "content": f"stream {i} {time.time()}"}],
                    **extra}  # fmt: skip
            try:
                async with session.post(url, json=body, headers=headers) as r:
                    if r.status != 200:
                        key = str(r.status)
                    else:
                        seen, data = 0, b""
                        async for line in r.content:
                            data += line
                            seen += b'"content"' in line
                            if hang_up_after is not None and seen >= hang_up_after:
                                break
                        key = (
                            "hung_up"
                            if hang_up_after is not None and seen >= hang_up_after
                            else "error"
                            if b'"error"' in data
                            else "ok"
                        )
            except aiohttp.ClientError as exc:
                key = type(exc).__name__
            counts[key] = counts.get(key, 0) + 1

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts


async def waves(url: str, size: int, pause_s: float, extra: dict[str, Any]) -> dict[str, int]:
    """Two waves of `size` streams, `pause_s` apart (the second starts while the first runs)."""
    first = asyncio.create_task(streams(url, size, size, **extra))
    await asyncio.sleep(pause_s)
    second = await streams(url, size, size, **extra)
    counts = await first
    return {k: counts.get(k, 0) + second.get(k, 0) for k in {*counts, *second}}


def charging(
    tmp: Path, procs: list[subprocess.Popen[bytes]], redis: str | None, n: int
) -> dict[str, Any]:
    """The charging scenarios on one ledger (memory, or Redis at `redis`)."""
    out: dict[str, Any] = {}
    words = " ".join(f"w{i}" for i in range(80))
    scenarios: list[tuple[str, dict[str, Any], dict[str, Any], float]] = [
        # name, backend behaviour, request extras, daily budget (USD)
        ("stream_past_lease", {"chunk_delay_s": 0.1}, {"max_tokens": 40}, 0.004),
        ("runaway_backend", {"ignore_max_tokens": True, "stream_usage": False},
         {"max_tokens": 20}, 0.02),
        ("negative_usage", {"usage": {"prompt_tokens": -10**6, "completion_tokens": -10**6}},
         {"max_tokens": 20}, 0.02),
        ("absurd_usage", {"usage": {"prompt_tokens": 10**12, "completion_tokens": 10**12}},
         {"max_tokens": 20}, 0.02),
        ("client_hangs_up", {"chunk_delay_s": 0.02}, {"max_tokens": 60}, 0.05),
    ]  # fmt: skip
    for name, behavior, extra, budget in scenarios:
        backend = free_port()
        procs.append(fake(backend, "--reply", words, "--behavior", json.dumps(behavior)))
        gw = free_port()
        config = with_tenant(base(gw, [backend], [backend]), redis, budget)
        config["tenants"][0]["name"] = name  # each scenario its own ledger, also in one Redis
        config["server"]["request_timeout_s"] = 30
        config["limits"]["reservation_lease_s"] = 1.0
        proc = gateway(tmp, config)
        procs.append(proc)
        url = f"http://127.0.0.1:{gw}/v1/chat/completions"
        started = time.monotonic()
        if name == "stream_past_lease":  # two waves a lease and more apart
            counts = asyncio.run(waves(url, 30, 1.6, extra))
        elif name == "client_hangs_up":
            counts = asyncio.run(streams(url, min(n, 200), 16, hang_up_after=3, **extra))
        else:
            counts = asyncio.run(streams(url, min(n, 500), 16, **extra))
        time.sleep(2)  # settlements after the last byte
        spent = usage(gw, name)
        admitted = sum(v for k, v in counts.items() if k in ("ok", "error", "hung_up"))
        out[name] = {
            "statuses": counts,
            "seconds": round(time.monotonic() - started, 1),
            "budget_usd": budget,
            "spent_usd": spent["budget"]["spent_today_usd"],
            "reserved_after_usd": spent["budget"]["reserved_usd"],
            "within_budget": spent["budget"]["spent_today_usd"] <= budget,
            "admitted": admitted,
            "records": spent["today"]["requests"],
            "lost_records": admitted - spent["today"]["requests"],
            "saved_usd": spent["today"]["saved_usd"],
        }
        stop([proc])
    return out


def faults(
    tmp: Path,
    procs: list[subprocess.Popen[bytes]],
    binary: str | None,
    n: int,
    report: dict[str, Any],
) -> None:
    """The fault scenarios (replicas and tiers killed, bad backends, Redis paused and killed,
    the two-gateway budget race), into `report`."""
    ports = [free_port() for _ in range(4)]
    backends = [fake(p) for p in ports]
    procs += backends
    port = free_port()
    procs.append(gateway(tmp, base(port, ports[:2], ports[2:])))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--only", choices=["charging"], help="run only these scenarios")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/reliability.json")
    args = parser.parse_args()
    binary = find_redis_server()
    report: dict[str, Any] = {"benchmark": "reliability", "requests": args.requests}
    if args.only and args.out.exists():  # keep the other scenarios' last figures
        report = {**json.loads(args.out.read_text()), **report}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            n = args.requests
            report["charging"] = {"memory": charging(tmp, procs, None, n)}
            if binary is not None:
                redis = RedisServer(binary).start()
                try:
                    report["charging"]["redis"] = charging(tmp, procs, redis.url, n)
                finally:
                    redis.stop()
            if args.only is None:
                faults(tmp, procs, binary, n, report)
        finally:
            stop(procs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
