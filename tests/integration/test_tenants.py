"""Tenants through the gateway: keys, policy caps, budgets exact under concurrency (memory, and
two `rung serve` processes on one real Redis), downshift, rate limits, store failure modes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest
import yaml

from rung.ports import free_port
from rung.tenants.keys import hash_key
from rung.tenants.policy import prompt_token_bound, request_cost
from tests.integration.harness import Gateway, make_config, tier
from tests.integration.test_cli import wait_http

pytestmark = pytest.mark.integration
ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}  # the harness's tier price


def tenants_config(small: Any, large: Any, alice: dict[str, Any], **sections: Any) -> Any:
    return make_config(
        [tier("small", small), tier("large", large)],
        server={"admin_key": ADMIN},
        tenants=[
            {"name": "alice", "keys": [hash_key(ALICE)], "policy": alice},
            {"name": "bob", "keys": [BOB]},  # a raw key (as from ${ENV}) works too
        ],
        **sections,
    )


def body(text: str = "What is 2+2?", model: str = "rung", max_tokens: int = 5) -> bytes:
    payload = {"model": model, "messages": [{"role": "user", "content": text}]}
    return orjson.dumps({**payload, "max_tokens": max_tokens})


def post(gw: Gateway, data: bytes, key: str | None = ALICE) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{gw.url}/v1/chat/completions", content=data, headers=headers, timeout=10)


def admin(gw: Gateway, path: str, tenant: str = "alice") -> Any:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.get(f"{gw.url}/admin/{path}", params={"tenant": tenant}, headers=headers).json()


def reservation(
    data: bytes, max_tokens: int, price: dict[str, float] = PRICE, choices: int = 1
) -> int:
    bound = prompt_token_bound(len(data), 1) * choices
    return request_cost(
        bound, max_tokens * choices, price["input_per_mtok"], price["output_per_mtok"]
    )


def test_keys_name_tenants_and_bad_keys_get_401(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(tenants_config(small, large, {}))
    assert post(gw, body()).status_code == 200
    assert post(gw, body(), BOB).status_code == 200
    for key in (None, "wrong-key-0123456789"):
        refused = post(gw, body(), key)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.json()["error"]["type"] == "invalid_request_error"
    # A tenant key is not an admin key.
    forbidden = httpx.get(f"{gw.url}/admin/config", headers={"authorization": f"Bearer {ALICE}"})
    assert forbidden.status_code == 403
    effective = admin(gw, "config")
    assert effective["tenants"][0]["keys"] == ["**********"]
    assert effective["server"]["admin_key"] == "**********"
    assert small.stats.requests == 2


def test_an_open_tenant_serves_requests_without_a_key(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(tenants_config(small, large, {}, auth={"open_tenant": "bob"}))
    assert post(gw, body(), None).status_code == 200
    assert post(gw, body(), "wrong-key-0123456789").status_code == 401


def test_policy_caps_the_tier_and_max_tokens(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(tenants_config(small, large, {"max_tier": "small", "max_tokens": 3}))
    long = post(gw, body("x" * 500, max_tokens=50))  # the length rule would pick large
    assert long.status_code == 200
    assert long.headers["x-rung-tier"] == "small"
    assert "capped by tenant policy" in long.headers["x-rung-route-reason"]
    assert small.stats.last_payload["max_tokens"] == 3
    pinned = post(gw, body(model="large"))
    assert pinned.status_code == 403
    assert "not allowed for tenant alice" in pinned.json()["error"]["message"]
    assert post(gw, body(model="large"), BOB).status_code == 200  # bob has no cap


def fifty(gw_urls: list[str], data: bytes) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        headers = {"content-type": "application/json", "authorization": f"Bearer {ALICE}"}
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{gw_urls[i % len(gw_urls)]}/v1/chat/completions",
                        content=data,
                        headers=headers,
                    )
                    for i in range(50)
                )
            )

    return asyncio.run(run())


def check_exactly_ten(responses: list[httpx.Response], spent_usd: float, reserved: float) -> None:
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(served), len(refused)) == (10, 40)
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    actual = sum(
        request_cost(
            r.json()["usage"]["prompt_tokens"],
            r.json()["usage"]["completion_tokens"],
            PRICE["input_per_mtok"],
            PRICE["output_per_mtok"],
        )
        for r in served
    )
    assert round(spent_usd * 1e6) == actual  # the ledger is exactly the sum, nothing twice
    assert reserved == 0


def test_fifty_concurrent_requests_against_a_budget_for_ten(fake, gateway):
    small, large = fake("small"), fake("large")
    small.behavior.delay_s = 0.5  # all fifty reserve before any settles
    data = body(max_tokens=5)
    budget = (11 * reservation(data, 5) - 1) / 1e6  # room for 10 reservations, not 11
    gw = gateway(tenants_config(small, large, {"daily_budget_usd": budget, "on_budget": "reject"}))
    responses = fifty([gw.url], data)
    usage = admin(gw, "usage")
    check_exactly_ten(
        responses, usage["budget"]["spent_today_usd"], usage["budget"]["reserved_usd"]
    )
    assert usage["today"]["requests"] == 10
    assert small.stats.requests == 10


def test_n_choices_are_reserved_so_a_budget_is_never_overspent(fake, gateway):
    """Issue 13, defect 1: `n` (up to 128) was accepted and one answer reserved; a backend
    honouring it (vLLM does) then overspent the budget five times over."""
    small, large = fake("small"), fake("large")
    for server in (small, large):
        server.behavior.honour_n = True
        server.behavior.delay_s = 0.3  # all fifty reserve before any settles
    payload = {"model": "large", "messages": [{"role": "user", "content": "budget race"}]}
    data = orjson.dumps({**payload, "max_tokens": 7, "n": 16})
    one_answer = reservation(data, 7)
    # 16 answers of max_tokens, and the prompt 16 times (a fan-out tier reads it each time)
    sixteen = reservation(data, 7, choices=16)
    budget = 20 * one_answer / 1e6
    gw = gateway(tenants_config(small, large, {"daily_budget_usd": budget, "on_budget": "reject"}))
    responses = fifty([gw.url], data)
    served = [r for r in responses if r.status_code == 200]
    assert len(served) == 20 * one_answer // sixteen < 20  # before: 20 served, 16x the cost
    assert len(served[0].json()["choices"]) == 16
    usage = admin(gw, "usage")
    assert usage["budget"]["spent_today_usd"] <= budget
    assert usage["budget"]["reserved_usd"] == 0


def test_settlement_never_exceeds_the_reservation(fake, gateway, caplog):
    small, large = fake("small"), fake("large")
    large.behavior.usage_scale = 1000  # reports far more tokens than max_tokens allows
    data = body(model="large", max_tokens=5)
    gw = gateway(tenants_config(small, large, {"daily_budget_usd": 10.0}))
    assert post(gw, data).status_code == 200
    usage = admin(gw, "usage")
    for _ in range(50):
        if usage["budget"]["reserved_usd"] == 0:
            break
        time.sleep(0.05)
        usage = admin(gw, "usage")
    assert round(usage["budget"]["spent_today_usd"] * 1e6) == reservation(data, 5)
    assert "reported usage no request could have" in caplog.text


def test_fifty_concurrent_requests_across_two_processes_on_one_redis(fake, redis_server, tmp_path):
    small = fake("small")
    small.behavior.delay_s = 0.5
    data = body(max_tokens=5)
    budget = (11 * reservation(data, 5) - 1) / 1e6
    config = {
        "server": {"admin_key": ADMIN},
        "routing": {"policy": "length"},
        "cache": {"enabled": False},
        "limits": {"store": "redis", "redis_url": redis_server.url},
        "tenants": [
            {
                "name": "alice",
                "keys": [hash_key(ALICE)],
                "policy": {"daily_budget_usd": budget, "on_budget": "reject"},
            },
        ],
        "tiers": [{**tier("small", small), "price": PRICE}],
    }
    path = tmp_path / "rung.yaml"
    path.write_text(yaml.safe_dump(config))
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rung", "serve", "--config", str(path), "--port", str(p)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=60)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        responses = fifty(urls, data)
        headers = {"authorization": f"Bearer {ADMIN}"}
        usage = httpx.get(
            f"{urls[1]}/admin/usage", params={"tenant": "alice"}, headers=headers
        ).json()
        check_exactly_ten(
            responses, usage["budget"]["spent_today_usd"], usage["budget"]["reserved_usd"]
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=30)


def test_downshift_makes_routing_cheaper_then_the_budget_refuses(fake, gateway):
    small, large = fake("small"), fake("large")
    data = body("y" * 300, max_tokens=5)  # the length rule sends it to large
    large_price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    budget = 6 * reservation(data, 5, large_price) / 1e6
    policy = {"daily_budget_usd": budget, "on_budget": "downshift", "downshift_from": 0.3}
    gw = gateway(tenants_config(small, large, policy))
    tiers, shifts = [], []
    for _ in range(40):
        r = post(gw, data)
        if r.status_code != 200:
            break
        tiers.append(r.headers["x-rung-tier"])
        shifts.append(float(r.headers.get("x-rung-budget-downshift", 0)))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "insufficient_quota"
    assert tiers[0] == "large"
    assert "small" in tiers
    assert tiers.index("small") > 0
    assert all(t == "small" for t in tiers[tiers.index("small") :])  # never back up
    assert shifts == sorted(shifts)  # the band deepens as spend grows
    assert shifts[0] == 0
    assert max(shifts) > 0


def test_rate_limits_at_the_edge_of_the_window(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(tenants_config(small, large, {"requests_per_minute": 3}))
    gate = gw.app.state.runtime.gate
    now = [60_000.0 + 57.5]  # 2.5 s before a minute boundary
    gate.clock = lambda: now[0]
    codes = [post(gw, body()) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in codes] == ["2", "1", "0", "0"]
    assert codes[0].headers["x-ratelimit-limit-requests"] == "3"
    refused = codes[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["retry-after"] == "3"
    assert refused.headers["x-ratelimit-reset-requests"] == "2s"  # rounded 2.5 s
    now[0] += 2.5  # the next window
    again = post(gw, body())
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining-requests"] == "2"
    assert post(gw, body(), BOB).status_code == 200  # bob has no limit


def test_tokens_per_minute_count_the_bound_then_the_actual(fake, gateway):
    small, large = fake("small"), fake("large")
    data = body(max_tokens=50)
    bound = prompt_token_bound(len(data), 1) + 50
    # The fake backend reports 11 prompt + 5 completion tokens for this request.
    gw = gateway(tenants_config(small, large, {"tokens_per_minute": bound + 20}))
    first = post(gw, data)
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 20
    assert first.json()["usage"]["total_tokens"] == 16
    # After the answer (settled just after it went out) the window holds only what was
    # actually used, so a second one fits.
    time.sleep(0.2)
    second = post(gw, data)
    assert second.status_code == 200, second.text
    too_big = post(gw, body(max_tokens=10_000))
    assert too_big.status_code == 429
    assert "more than the" in too_big.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_redis_down_follows_the_configured_mode(fake, gateway, redis_server, mode):
    small, large = fake("small"), fake("large")
    limits = {"store": "redis", "redis_url": redis_server.url, "on_store_failure": mode}
    gw = gateway(tenants_config(small, large, {"daily_budget_usd": 10.0}, limits=limits))
    assert post(gw, body()).status_code == 200
    time.sleep(0.3)  # its settlement (just after the answer went out) reaches Redis first
    redis_server.stop()
    during = post(gw, body())
    ready = httpx.get(gw.url + "/readyz").json()
    assert ready["limits"]["available"] is False
    assert post(gw, body(), BOB).status_code == 200  # unmetered tenants never wait on Redis
    if mode == "fail_closed":
        assert during.status_code == 503
        assert ready["status"] == "degraded"
        # Issue 13, defect 7: readiness recovers with Redis, before any metered request.
        redis_server.start()
        ready = httpx.get(gw.url + "/readyz").json()
        assert ready["limits"]["available"] is True
        assert ready["status"] == "ready"
        return
    assert during.status_code == 200
    assert ready["limits"]["pending_settlements"] == 1
    redis_server.start()  # back on the same port, empty; the fixture stops it
    gate = gw.app.state.runtime.gate
    assert gw.loop.run(gate.reconcile()) == 0  # the outage's cost reaches the ledger
    usage = admin(gw, "usage")
    cost = during.json()["usage"]
    expected = request_cost(cost["prompt_tokens"], cost["completion_tokens"], 1.0, 2.0)
    assert round(usage["budget"]["spent_today_usd"] * 1e6) == expected


def test_models_needs_a_key_when_tenants_are_configured(fake, gateway):
    gw = gateway(tenants_config(fake("small"), fake("large"), {}))
    assert httpx.get(gw.url + "/v1/models").status_code == 401
    listed = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {BOB}"})
    assert [m["id"] for m in listed.json()["data"]] == ["rung", "small", "large"]


def test_usage_export_as_csv_and_json(fake, gateway, monkeypatch, capsys):
    from rung.cli import main

    small, large = fake("small"), fake("large")
    gw = gateway(tenants_config(small, large, {"daily_budget_usd": 5.0}))
    for _ in range(2):
        assert post(gw, body()).status_code == 200
    assert post(gw, body(), BOB).status_code == 200
    time.sleep(0.2)  # settled just after the answers went out
    monkeypatch.setenv("RUNG_ADMIN_KEY", ADMIN)
    args = ["usage", "--tenant", "alice", "--since", "2020-01-01", "--url", gw.url]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("time,tenant,tier,tiers,models,prompt_tokens")
    assert len(lines) == 3  # alice's two requests, not bob's
    assert all(",alice,small,small," in line for line in lines[1:])
    assert "What is 2+2" not in "\n".join(lines)  # never prompt text
    assert main([*args, "--format", "json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == [200, 200]
    assert sum(r["cost"] for r in rows) == round(admin(gw, "usage")["today"]["cost_usd"] * 1e6)
    monkeypatch.setenv("RUNG_ADMIN_KEY", "wrong")
    assert main(args) == 1
