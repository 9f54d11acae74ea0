"""Real traffic through the openai SDK: conversations that do not bounce down, tiers chosen by
what a request needs (context, tools, images), and a tenant's LoRA adapter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rung.backends.fake_server import Behavior
from rung.tenants.keys import hash_key
from tests.integration.harness import Gateway, client, make_config, tier, wait_until

pytestmark = pytest.mark.integration
ACME, ADMIN = "acme-key-0123456789ab", "admin-key-0123456789"


def ladder(fake: Any, small: dict[str, Any] | None = None, large: dict[str, Any] | None = None,
           **sections: Any) -> tuple[Any, Any, Any]:  # fmt: skip
    s, big = fake("small"), fake("large")
    config = make_config(
        [{**tier("small", s), **(small or {})}, {**tier("large", big), **(large or {})}],
        **sections,
    )
    return s, big, config


def test_a_conversation_that_needed_large_stays_on_large(fake: Any, gateway: Any) -> None:
    small, _large, config = ladder(fake, routing={"length_thresholds": [100_000]})
    gw: Gateway = gateway(config)
    sdk = client(gw)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    served = []
    for turn in range(1, 7):
        if turn == 3:
            small.behavior = Behavior(mode="error", status=502)  # turn 3 needs large
        messages.append({"role": "user", "content": f"question {turn}?"})
        raw = sdk.chat.completions.with_raw_response.create(model="rung", messages=messages)
        served.append((raw.headers["x-rung-tier"], raw.headers["x-rung-route-reason"]))
        messages.append({"role": "assistant", "content": raw.parse().choices[0].message.content})
        if turn == 3:
            small.behavior = Behavior()
            pool = gw.app.state.runtime.pools[0]
            wait_until(pool.available, what="small back in rotation")
        wait_until(lambda: _remembered(gw), what="the conversation's tier stored")
    assert [tier for tier, _ in served] == ["small", "small", "large", "large", "large", "large"]
    assert all("sticky large" in reason for _, reason in served[3:])
    assert "sticky" not in served[0][1]
    # Another conversation (a different opening) is routed on its own.
    fresh = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "question 4?"}]
    )
    assert fresh.headers["x-rung-tier"] == "small"


def _remembered(gw: Gateway) -> bool:
    return len(gw.app.state.runtime.pipeline.conversations._tiers) >= 1


def test_free_conversations_route_each_turn_alone(fake: Any, gateway: Any) -> None:
    small, _large, config = ladder(
        fake, routing={"length_thresholds": [100_000], "conversation": "free"}
    )
    gw = gateway(config)
    assert gw.app.state.runtime.pipeline.conversations is None
    first = [{"role": "user", "content": "hi"}]
    small.behavior = Behavior(mode="error", status=502)
    sdk = client(gw)
    assert sdk.chat.completions.with_raw_response.create(
        model="rung", messages=first).headers["x-rung-tier"] == "large"  # fmt: skip
    small.behavior = Behavior()
    wait_until(gw.app.state.runtime.pools[0].available, what="small back")
    later = [*first, {"role": "assistant", "content": "[large] You said: hi"},
             {"role": "user", "content": "and?"}]  # fmt: skip
    raw = sdk.chat.completions.with_raw_response.create(model="rung", messages=later)
    assert raw.headers["x-rung-tier"] == "small"


def test_a_20k_token_prompt_skips_a_4k_tier(fake: Any, gateway: Any) -> None:
    small, _large, config = ladder(
        fake,
        small={"context_window": 4096},
        large={"context_window": 32768},
        routing={"length_thresholds": [10**7]},  # by length alone, small would serve it
    )
    gw = gateway(config)
    long = "word " * 16_000  # 80,000 characters: ~20,000 tokens
    raw = client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": long}], max_tokens=64
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert "skipped small: context 4096 < ~20064 tokens" in raw.headers["x-rung-route-reason"]
    assert small.stats.requests == 0
    # A short prompt without max_tokens fits small: it is sent what the window has room for.
    short = client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "x" * 8000}]
    )
    assert short.headers["x-rung-tier"] == "small"
    assert small.stats.last_payload["max_tokens"] == 4096 - 2000


def test_tools_skip_a_tier_without_them_and_pinning_it_is_a_400(fake: Any, gateway: Any) -> None:
    small, _large, config = ladder(fake, small={"tools": False})
    gw = gateway(config)
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    raw = client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "time?"}], tools=tools
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert "skipped small: no tools" in raw.headers["x-rung-route-reason"]
    body = {"model": "small", "messages": [{"role": "user", "content": "time?"}], "tools": tools}
    pinned = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10, json=body)
    assert pinned.status_code == 400
    assert pinned.json()["error"]["message"] == (
        "Tier 'small' cannot serve this request: no tools."
    )
    assert small.stats.requests == 0


def test_an_image_reaches_only_the_vision_tier(fake: Any, gateway: Any) -> None:
    small, large, config = ladder(fake, large={"vision": True})
    gw = gateway(config)
    picture = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0K" * 50}},
    ]
    raw = client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": picture}]
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert large.stats.last_payload["messages"][0]["content"][1]["type"] == "image_url"
    assert small.stats.requests == 0
    blind = gateway(make_config([tier("small", fake("blind"))]))
    refused = httpx.post(f"{blind.url}/v1/chat/completions", timeout=10, json={
        "model": "rung", "messages": [{"role": "user", "content": picture}]})  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "no tier can serve this request: small: no vision"
    )


def test_a_tenants_adapter_reaches_the_backend_and_is_accounted_under_it(
    fake: Any, gateway: Any
) -> None:
    adapter_price = {"input_per_mtok": 5.0, "output_per_mtok": 7.0}
    small, _large, config = ladder(
        fake,
        small={"adapters": {"legal-v2": {"model": "small-legal-v2", "price": adapter_price}}},
        server={"admin_key": ADMIN},
        tenants=[
            {
                "name": "acme",
                "keys": [hash_key(ACME)],
                "policy": {"adapters": {"small": "legal-v2"}},
            }
        ],
    )
    small.adapters = {"small-legal-v2"}
    gw = gateway(config)
    sdk = client(gw, api_key=ACME)
    raw = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "Is this clause void?"}]
    )
    assert small.stats.last_payload["model"] == "small-legal-v2"
    assert raw.headers["x-rung-model"] == "small-legal-v2"
    usage = raw.parse().usage
    headers = {"authorization": f"Bearer {ADMIN}"}

    def summary() -> Any:
        return httpx.get(f"{gw.url}/admin/usage", params={"tenant": "acme"}, headers=headers,
                         timeout=5).json()  # fmt: skip

    wait_until(lambda: summary()["today"]["requests"] == 1, what="usage settled")
    by_tier = summary()["today"]["by_tier"]
    assert list(by_tier) == ["small@legal-v2"]
    cost = (usage.prompt_tokens * 5.0 + usage.completion_tokens * 7.0) / 1e6
    assert by_tier["small@legal-v2"]["cost_usd"] == pytest.approx(cost, abs=1e-6)
