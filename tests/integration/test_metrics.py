"""`GET /metrics` after scripted traffic: exact counter values, one gateway and two workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rung.backends.fake_server import Behavior
from rung.ports import free_port, wait_for_port
from rung.tenants.keys import hash_key
from tests.integration.harness import Gateway, make_config, tier, wait_until

pytestmark = pytest.mark.integration
ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"


def scrape(url: str, key: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def post(url: str, payload: Any, key: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return httpx.post(f"{url}/v1/chat/completions", content=data, headers=headers, timeout=10)


def chat(text: str, model: str = "rung") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


def test_known_traffic_gives_exact_counters(fake: Any, gateway: Any) -> None:
    small, large = fake("small"), fake("large")
    spare = fake("spare", model=small.model)
    top = tier("large", large)
    top["price"] = {"input_per_mtok": 3.0, "output_per_mtok": 6.0}
    gw: Gateway = gateway(
        make_config(
            [tier("small", small, spare), top],
            server={"admin_key": ADMIN},
            cache={"enabled": True, "semantic": False},
            tenants=[
                {"name": "alice", "keys": [hash_key(ALICE)], "policy": {"requests_per_minute": 4}},
                {"name": "bob", "keys": [BOB]},
            ],
        )
    )
    # Rate limits count in fixed one-minute windows: hold the gate's clock inside one, or five
    # requests that straddle a minute's edge are two windows' worth (seen once in CI).
    inside = (time.time() // 60) * 60 + 1.0
    gw.app.state.runtime.gate.clock = lambda: inside
    answers = [
        post(gw.url, chat("What is 2+2?"), ALICE),  # miss -> small
        post(gw.url, chat("What is 2+2?"), ALICE),  # exact hit
        post(gw.url, chat("Name a prime.", model="large"), ALICE),  # pinned
        post(gw.url, chat("Name a colour."), ALICE),  # miss -> small
        post(gw.url, chat("One more?"), ALICE),  # the fifth in a minute: 429
        post(gw.url, b"{not json", BOB),  # 400
        post(gw.url, chat("Who am I?"), None),  # 401
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 400, 401]
    assert answers[1].headers["x-rung-cache"] == "hit-exact"
    usage = [a.json()["usage"] for a in (answers[0], answers[2], answers[3])]

    def settled() -> bool:  # settlement runs after each answer has gone out
        return value(scrape(gw.url), "rung_requests_total") == 4

    wait_until(settled, what="four settled requests")
    m = scrape(gw.url)
    assert value(m, "rung_requests_total", tenant="alice", tier="small", cache="miss") == 2
    assert value(m, "rung_requests_total", tier="small", cache="hit-exact", reason="cache") == 1
    assert value(m, "rung_requests_total", tier="large", reason="pinned", status="200") == 1
    assert value(m, "rung_requests_total", tenant="bob") == 0
    assert value(m, "rung_http_responses_total", status="200") == 4
    for status in ("429", "400", "401"):
        assert value(m, "rung_http_responses_total", status=status) == 1
    assert value(m, "rung_request_seconds_count") == 7
    prompt = sum(u["prompt_tokens"] for u in usage)
    completion = sum(u["completion_tokens"] for u in usage)
    assert value(m, "rung_tokens_total", kind="prompt") == prompt
    assert value(m, "rung_tokens_total", kind="completion") == completion
    price = [(1.0, 2.0), (3.0, 6.0), (1.0, 2.0)]
    cost = sum((u["prompt_tokens"] * i + u["completion_tokens"] * o) for u, (i, o) in zip(
        usage, price, strict=True)) / 1e6  # fmt: skip
    top_cost = sum(u["prompt_tokens"] * 3.0 + u["completion_tokens"] * 6.0 for u in usage) / 1e6
    assert value(m, "rung_cost_usd_total", tenant="alice") == pytest.approx(cost, abs=2e-6)
    assert value(m, "rung_top_tier_cost_usd_total") == pytest.approx(top_cost, abs=2e-6)
    assert value(m, "rung_stage_seconds_count", stage="admit") == 4
    assert value(m, "rung_stage_seconds_count", stage="cache") == 4
    assert value(m, "rung_stage_seconds_count", stage="backend") == 3
    assert value(m, "rung_backend_up", tier="small") == 2
    assert value(m, "rung_store_available", store="limits") == 1

    # A replica that goes away is seen by the next health check, and in the next scrape.
    gw.loop.run(spare.stop())
    wait_until(lambda: value(scrape(gw.url), "rung_backend_up", tier="small") == 1, what="down")


def test_metrics_can_sit_behind_the_admin_key_or_be_off(fake: Any, gateway: Any) -> None:
    small = fake("small")
    locked = gateway(make_config([tier("small", small)], server={"admin_key": ADMIN,
                                                                "metrics": "admin"}))  # fmt: skip
    assert httpx.get(f"{locked.url}/metrics").status_code == 401
    assert (
        "rung_requests_total"
        in httpx.get(f"{locked.url}/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    )
    off = gateway(make_config([tier("small", small)], server={"metrics": "off"}))
    assert off.app.state.metrics is None  # records nothing either
    assert httpx.get(f"{off.url}/metrics").status_code == 404


def test_two_workers_expose_one_sum(fake: Any, tmp_path: Path, redis_server: Any) -> None:
    small, large = fake("small"), fake("large")
    small.behavior = Behavior(reply="The answer is 4.")
    large.behavior = Behavior(reply="4")
    port = free_port()
    path = tmp_path / "rung.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server": {"port": port, "log_level": "warning", "admin_key": ADMIN},
                "routing": {"policy": "length", "length_thresholds": [1000]},
                "cache": {"enabled": False},
                "shadow": {"rate": 1.0},  # every routed answer checked against large
                "limits": {"store": "redis", "redis_url": redis_server.url},
                "tiers": [tier("small", small), tier("large", large)],
            }
        )
    )
    shared = tmp_path / "metrics"  # serve honours a directory set by the operator
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rung", "serve", "--config", str(path), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout_s=60)
        wait_until(lambda: _ready(url), timeout=60, what="both workers ready")
        for i in range(30):  # each on a new connection: the kernel spreads them over workers
            assert post(url, chat(f"question {i}"), None).status_code == 200
        # Both workers write into the one directory a scrape sums (not each its own registry).
        writers = {f.stem.split("_")[-1] for f in shared.glob("*.db")}
        assert len(writers) == 2, sorted(f.name for f in shared.glob("*.db"))
        # A worker applies its updates a second after they happen (rung.router.tally), so the
        # other worker's last requests can take that long to reach a scrape.
        wait_until(
            lambda: value(scrape(url), "rung_requests_total", tier="small", status="200") == 30,
            timeout=10,
            what="both workers' updates applied",
        )
        for _ in range(6):  # whichever worker answers the scrape reports both workers' sums
            m = scrape(url)
            assert value(m, "rung_http_responses_total", status="200") == 30
            assert value(m, "rung_requests_total", tier="small", status="200") == 30
        # Each worker keeps its own shadow estimate; the check counter sums both workers'.
        wait_until(
            lambda: (
                value(scrape(url), "rung_shadow_checks_total", tier="small", agreed="yes") == 30
            ),
            timeout=10,
            what="both workers' checks counted",
        )
        assert large.stats.requests == 30
        # With the limits' Redis the estimate is pooled: any worker reports all 30 checks.
        for _ in range(6):
            view = httpx.get(
                f"{url}/admin/usage",
                params={"tenant": "default"},
                headers={"authorization": f"Bearer {ADMIN}"},
                timeout=5,
            ).json()["shadow"]
            assert view["tiers"]["small"]["sampled"] == 30
            assert view["tiers"]["small"]["agreement"] == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
