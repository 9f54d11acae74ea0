"""rung beside other proxies, in one run, against one instant backend: JSON with medians and
ratios.

Targets (each its own process, one worker): the backend directly; a minimal aiohttp proxy (the
floor: read the body, forward it, stream the answer back); rung with a pinned tier (no
classification, cache off); rung routed by its shipped `local` classifier on the static
embedder (cache off); and the LiteLLM proxy when its `litellm` command is there (`--litellm`;
it needs `litellm[proxy]`). Rounds are rotated so every target sees the same machine noise; per
target and scenario the median over rounds.

"rung routed, metrics off" is the same with `server.metrics: off`: the cost of the Prometheus
metrics per request. With `--workers N` (default 2) also rung routed with N worker processes
(CPU and RSS summed over the workers). On a 2-core machine the load generator and the stub share
those cores.

Per target: added p50 over the direct call at concurrency 1 (JSON and a 20-chunk stream),
requests/s at concurrency 64, gateway CPU per request at concurrency 1 (from /proc), RSS after.

    python bench/compare.py [--requests 2000] [--rounds 3] [--workers 2] [--out ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import load, stop

from rung.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
PROXY = """
import sys
from aiohttp import ClientSession, TCPConnector, web

BACKEND = sys.argv[2]

async def forward(request):
    body = await request.read()
    async with request.app["session"].post(
        BACKEND + "/chat/completions", data=body, headers={"content-type": "application/json"}
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status, headers={"content-type": upstream.content_type}
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

async def start(app):
    app["session"] = ClientSession(connector=TCPConnector(limit=256))

async def stop(app):
    await app["session"].close()

app = web.Application()
app.on_startup.append(start)
app.on_cleanup.append(stop)
app.router.add_post("/v1/chat/completions", forward)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def family(pid: int) -> list[int]:
    """The process and its children (a multi-worker server's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def metrics_cost_us(requests: int = 5000, rounds: int = 5) -> float:
    """In process: median microseconds to record one routed request's metrics (a response,
    four stages, one settled request, and its share of the flush that applies them), the
    per-request work `server.metrics: off` skips."""
    from rung.router.metrics import Metrics
    from rung.tenants.usage import UsageRecord

    metrics = Metrics(lambda: {})
    record = UsageRecord("default", 0.0, ["small"], ["m"], 12, 30, 123, 999, "miss", None, 1.0,
                         200, "small")  # fmt: skip
    reason = "classifier small=0.90 large=0.96 goal=keep:0.95 lambda=0.371 best-value"

    def one() -> None:
        metrics.response("/v1/chat/completions", 200, 0.0012)
        for stage in ("admit", "decide", "cache", "backend"):
            metrics.stage(stage, 0.0002)
        metrics.settled(record, reason)

    async def measure() -> list[float]:  # on a loop, as served: updates batch until a flush
        for _ in range(requests):
            one()
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                one()
            metrics.tally.flush()  # the batch's share of the work is counted too
            samples.append((time.perf_counter() - started) / requests * 1e6)
        return samples

    return round(statistics.median(asyncio.run(measure())), 2)


def tier(name: str, model: str, backend: int) -> dict[str, Any]:
    return {
        "name": name,
        "model": model,
        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
        "backends": [{"url": f"http://127.0.0.1:{backend}/v1", "max_concurrency": 256}],
    }


def rung_config(port: int, backend: int, routed: bool, metrics: bool = True) -> dict[str, Any]:
    # Two tiers named as the shipped `local` classifier knows them; the fake serves both.
    return {
        "server": {"port": port, "log_level": "warning", "metrics": "open" if metrics else "off"},
        "routing": {"policy": "classifier", "classifier": "local"}
        if routed
        else {"policy": "length"},
        "cache": {"enabled": False},
        "tiers": [tier("small", "fake-model", backend), tier("large", "fake-model-2", backend)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=2, help="also rung routed with this many workers (1: not)"
    )
    parser.add_argument(
        "--litellm", help="the LiteLLM proxy's `litellm` command (default: the one on PATH)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/compare.json")
    args = parser.parse_args()

    backend = free_port()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, tuple[str, str]] = {}  # target -> (url, model)
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            procs["backend"] = subprocess.Popen(
                [sys.executable, "-m", "rung.backends.fake_server", "--port", str(backend),
                 "--reply", "Two plus two is four, " * 4],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_port(backend)
            direct = f"http://127.0.0.1:{backend}/v1/chat/completions"
            port = free_port()
            procs["aiohttp proxy (floor)"] = subprocess.Popen(
                [sys.executable, "-c", PROXY, str(port), f"http://127.0.0.1:{backend}/v1"]
            )
            urls["aiohttp proxy (floor)"] = (f"http://127.0.0.1:{port}/v1/chat/completions", "m")
            rungs = [
                ("rung pinned", False, 1, True),
                ("rung routed", True, 1, True),
                ("rung routed, metrics off", True, 1, False),
            ]
            if args.workers > 1:
                rungs.append((f"rung routed, {args.workers} workers", True, args.workers, True))
            for name, routed, workers, metrics in rungs:
                port = free_port()
                path = Path(tmp) / f"{name.replace(' ', '-').replace(',', '')}.yaml"
                path.write_text(yaml.safe_dump(rung_config(port, backend, routed, metrics)))
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "rung", "serve", "--config", str(path),
                     "--workers", str(workers)],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                model = "rung" if routed else "small"
                urls[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", model)
            litellm = args.litellm or shutil.which("litellm")
            if litellm is not None:
                port = free_port()
                path = Path(tmp) / "litellm.yaml"
                model = {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/fake-model",
                        "api_key": "x",
                        "api_base": f"http://127.0.0.1:{backend}/v1",
                    },
                }
                # A loopback-only benchmark: no master key.
                unlocked = {"dangerously_permit_weak_or_unset_master_key": True}
                path.write_text(
                    yaml.safe_dump({"model_list": [model], "general_settings": unlocked})
                )
                procs["litellm proxy"] = subprocess.Popen(
                    [
                        litellm,
                        "--config",
                        str(path),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--num_workers",
                        "1",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                urls["litellm proxy"] = (f"http://127.0.0.1:{port}/v1/chat/completions", "m")
            for name, (url, _) in list(urls.items()):
                try:
                    wait_for_port(int(url.split(":")[2].split("/")[0]), timeout_s=120)
                except TimeoutError:
                    if name != "litellm proxy":
                        raise
                    # `litellm` without its proxy extra installed: say so, measure the rest.
                    skipped.append("litellm proxy: did not start (pip install 'litellm[proxy]')")
                    del urls[name]
                    stop([procs.pop(name)])
            results = asyncio.run(measure(direct, urls, procs, args.requests, args.rounds))
        finally:
            stop(procs.values())
    report = {
        "benchmark": "compare",
        "machine": {"cpus": os.cpu_count()},
        "requests": args.requests,
        "rounds": args.rounds,
        "targets": results,
        "skipped": skipped,
        "metrics_record_us_per_request": metrics_cost_us(),
        "escalation_signals_us_per_answer": signals_cost_us(),
        "answer_verifier_us_per_answer": verifier_cost_us(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def signals_cost_us(rounds: int = 5) -> dict[str, float]:
    """In process: median microseconds to read an answer's confidence signals (what escalation
    judges every routed answer on), for answers of 20 and 200 tokens with the five alternatives
    per token that rung asks a backend for."""
    from rung.router.escalate import TOP_LOGPROBS, body_signals

    out = {}
    for tokens in (20, 200):
        content = [
            {"token": f"t{i}", "logprob": -0.01 * (i % 7), "bytes": [116, 49],
             "top_logprobs": [{"token": f"a{k}", "logprob": -0.5 * k, "bytes": [97, 49]}
                              for k in range(TOP_LOGPROBS)]}
            for i in range(tokens)
        ]  # fmt: skip
        choice = {"message": {"content": "four " * tokens}, "logprobs": {"content": content},
                  "finish_reason": "stop"}  # fmt: skip
        body = {"choices": [choice]}
        repeat = max(1, 20_000 // tokens)
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(repeat):
                body_signals(body, False)
            samples.append((time.perf_counter() - started) / repeat * 1e6)
        out[f"{tokens}_tokens"] = round(statistics.median(samples), 1)
    return out


def verifier_cost_us(rounds: int = 5) -> dict[str, float]:
    """In process: median microseconds to judge one answer with the cascade's answer verifier
    (read the answer, one logistic), for a short and a long answer in GSM8K's JSON shape and a
    multiple-choice one, with the shipped production classifier."""
    from rung.classifiers.answers import read
    from rung.classifiers.model import load, resolve
    from rung.classifiers.verifier import inputs

    verifier = load(resolve("production")).verifier
    if verifier is None:
        return {}
    prompt = "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest at $2 each."
    step = "16 - 3 - 4 = 9 eggs are left, and 9 * 2 = 18 dollars. "
    choices = (
        prompt
        + "\n\nOptions:\n"
        + "".join(f"{k}. ${v}\n" for k, v in zip("ABCD", (9, 18, 16, 7), strict=True))
    )
    answers = {
        "json_400_chars": ('{"reasoning": "' + step * 7 + '", "answer": "18"}', prompt),
        "json_2000_chars": ('{"reasoning": "' + step * 36 + '", "answer": "18"}', prompt),
        "choice_600_chars": (step * 10 + "The answer is (B).", choices),
    }
    out = {}
    for name, (text, prompt) in answers.items():
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(500):
                reading = read(text, prompt, "stop")
                verifier.probability(0, inputs(reading.features, 0.7, None))
            samples.append((time.perf_counter() - started) / 500 * 1e6)
        out[name] = round(statistics.median(samples), 1)
    return out


async def measure(
    direct: str,
    urls: dict[str, tuple[str, str]],
    procs: dict[str, subprocess.Popen[bytes]],
    requests: int,
    rounds: int,
) -> dict[str, Any]:
    names = list(urls)
    runs: dict[str, dict[str, list[float]]] = {n: {} for n in [*names, "direct"]}

    def keep(name: str, key: str, value: float) -> None:
        runs[name].setdefault(key, []).append(value)

    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotated
        for name in ["direct", *order]:
            url, model = (direct, "fake-model") if name == "direct" else urls[name]
            pid = procs["backend"].pid if name == "direct" else procs[name].pid
            before = cpu_seconds(pid)
            started = time.perf_counter()
            json_c1 = await load(url, model, False, 1, requests)
            keep(name, "cpu_ms_per_request_c1", 1000 * (cpu_seconds(pid) - before) / requests)
            keep(name, "json_c1_p50_ms", json_c1["p50_ms"])
            stream_c1 = await load(url, model, True, 1, requests)
            keep(name, "stream_c1_p50_ms", stream_c1["p50_ms"])
            keep(name, "json_c64_rps", (await load(url, model, False, 64, requests))["rps"])
            keep(name, "rss_mb", rss_mb(pid))
            print(f"round {r} {name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    out: dict[str, Any] = {}
    base = {k: statistics.median(v) for k, v in runs["direct"].items()}
    for name in ["direct", *names]:
        med = {k: round(statistics.median(v), 3) for k, v in runs[name].items()}
        if name != "direct":
            med["added_json_c1_p50_ms"] = round(med["json_c1_p50_ms"] - base["json_c1_p50_ms"], 3)
            med["added_stream_c1_p50_ms"] = round(
                med["stream_c1_p50_ms"] - base["stream_c1_p50_ms"], 3
            )
            med["rps_ratio_to_direct"] = round(med["json_c64_rps"] / base["json_c64_rps"], 3)
        out[name] = med
    floor = out.get("aiohttp proxy (floor)")
    if floor:
        for name in names:
            out[name]["rps_ratio_to_floor"] = round(
                out[name]["json_c64_rps"] / floor["json_c64_rps"], 3
            )
            out[name]["cpu_ratio_to_floor"] = round(
                out[name]["cpu_ms_per_request_c1"] / floor["cpu_ms_per_request_c1"], 3
            )
    for name in ["direct", *names]:  # each round's figures, to show the run's own noise
        out[name]["per_round"] = {k: [round(x, 3) for x in v] for k, v in runs[name].items()}
    return out


if __name__ == "__main__":
    main()
