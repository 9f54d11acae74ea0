"""The cache through the gateway, with the openai SDK: hits and misses, streams, bypass headers,
what is not stored, admin stats and purge; two gateways on one real Redis; Redis outages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.harness import Gateway, client, make_config, tier

pytestmark = pytest.mark.integration
ADMIN = "admin-secret"
FRANCE = "What is the capital of France?"


def config(small: Any, large: Any, **cache: Any) -> Any:
    return make_config(
        [tier("small", small), tier("large", large)],
        server={"admin_key": ADMIN},
        cache={"enabled": True, "similarity_threshold": 0.8, **cache},
    )


def ask(gw: Gateway, text: str, **params: Any) -> Any:
    messages = [{"role": "user", "content": text}]
    return client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=messages, **{"temperature": 0, **params}
    )


def admin(gw: Gateway, path: str, method: str = "GET", tenant: str = "default") -> Any:
    headers = {"authorization": f"Bearer {ADMIN}"}
    url = f"{gw.url}/admin/{path}?tenant={tenant}"
    return httpx.request(method, url, headers=headers, timeout=5)


def wait_stored(gw: Gateway, count: int) -> None:
    """Answers are stored after the response has gone out: wait for the store."""
    for _ in range(100):
        if admin(gw, "cache/stats").json()["stored"] >= count:
            return
        time.sleep(0.02)
    raise AssertionError("answer was not stored")


def test_repeat_and_paraphrase_hit_near_miss_does_not(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(config(small, large))
    first = ask(gw, FRANCE)
    assert first.headers["x-rung-cache"] == "miss"
    wait_stored(gw, 1)
    again = ask(gw, FRANCE)
    assert again.headers["x-rung-cache"] == "hit-exact"
    assert "x-rung-cache-similarity" not in again.headers  # a cosine only for semantic hits
    assert again.headers["x-rung-tier"] == "small"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    rephrased = ask(gw, "What's the capital of France?")
    assert rephrased.headers["x-rung-cache"] == "hit-semantic"
    assert 0.8 <= float(rephrased.headers["x-rung-cache-similarity"]) < 1
    assert rephrased.parse().choices[0].message.content == f"[small] You said: {FRANCE}"
    assert small.stats.requests == 1
    other = ask(gw, "What is the capital of Germany?")  # another entity
    assert other.headers["x-rung-cache"] == "miss"
    ask(gw, "Janet has 16 eggs and eats 3. How many are left?")
    wait_stored(gw, 3)
    near = ask(gw, "Janet has 17 eggs and eats 3. How many are left?")  # cosine ~0.98
    assert near.headers["x-rung-cache"] == "miss"
    assert (
        near.parse().choices[0].message.content.endswith("17 eggs and eats 3. How many are left?")
    )
    assert small.stats.requests == 4
    stats = admin(gw, "cache/stats").json()
    assert (stats["hits_exact"], stats["hits_semantic"], stats["entries"]) == (1, 1, 4)
    assert stats["near_miss_rejections"] == 1


def test_a_hit_streams_like_a_model_answer(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(config(small, large))
    ask(gw, FRANCE)
    wait_stored(gw, 1)
    with client(gw).chat.completions.with_streaming_response.create(
        model="rung",
        messages=[{"role": "user", "content": FRANCE}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-rung-cache"] == "hit-exact"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[small] You said: {FRANCE}"
    assert chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert small.stats.requests == 1


def test_a_streamed_answer_is_stored_and_served_as_json(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(config(small, large))
    stream = client(gw).chat.completions.create(
        model="rung", messages=[{"role": "user", "content": FRANCE}], temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    wait_stored(gw, 1)
    hit = ask(gw, FRANCE)
    assert hit.headers["x-rung-cache"] == "hit-exact"
    assert hit.parse().choices[0].message.content == streamed
    assert small.stats.requests == 1


def test_cache_control_and_what_is_never_stored(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(config(small, large))
    sdk = client(gw)
    messages = [{"role": "user", "content": FRANCE}]
    no_store = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=messages, temperature=0, extra_headers={"cache-control": "no-store"}
    )
    assert no_store.headers["x-rung-cache"] == "bypass"
    hot = ask(gw, "Tell me a story.", temperature=1.5)  # above max_temperature 1.0
    small.behavior.finish_reason = "length"
    ask(gw, "Write an essay.")
    small.behavior.finish_reason = "stop"
    time.sleep(0.2)
    stats = admin(gw, "cache/stats").json()
    assert (stats["stored"], stats["entries"], stats["not_stored"]) == (0, 0, 2)
    assert hot.headers["x-rung-cache"] == "miss"
    ask(gw, FRANCE)
    wait_stored(gw, 1)
    fresh = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=messages, temperature=0, extra_headers={"cache-control": "no-cache"}
    )
    assert fresh.headers["x-rung-cache"] == "bypass"
    assert small.stats.requests == 5


def test_admin_purge_and_keys(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(config(small, large))
    ask(gw, FRANCE)
    wait_stored(gw, 1)
    assert admin(gw, "cache/purge", "POST").json() == {"tenant": "default", "purged": 1}
    assert ask(gw, FRANCE).headers["x-rung-cache"] == "miss"
    wrong = httpx.get(f"{gw.url}/admin/cache/stats", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"
    missing = httpx.get(f"{gw.url}/admin/cache/stats")
    assert missing.status_code == 401


def test_two_gateways_on_one_redis_serve_each_others_entries(fake, gateway, redis_server):
    small, large = fake("small"), fake("large")
    cfg = config(small, large, store="redis", redis_url=redis_server.url, redis_timeout_ms=500)
    one, two = gateway(cfg), gateway(cfg)
    ask(one, FRANCE)
    wait_stored(one, 1)
    for _ in range(50):  # the other replica's index hears of it through pub/sub
        if httpx.get(two.url + "/readyz").json()["cache"]["indexed"] == 1:
            break
        time.sleep(0.05)
    assert ask(two, FRANCE).headers["x-rung-cache"] == "hit-exact"
    assert ask(two, "What's the capital of France?").headers["x-rung-cache"] == "hit-semantic"
    assert small.stats.requests == 1
    # A third gateway started later rebuilds its index from Redis.
    three = gateway(cfg)
    assert ask(three, "What's the capital of France?").headers["x-rung-cache"] == "hit-semantic"


def test_redis_outage_bypasses_the_cache_and_recovers(fake, gateway, redis_server):
    small, large = fake("small"), fake("large")
    cfg = config(small, large, store="redis", redis_url=redis_server.url, redis_timeout_ms=200)
    gw = gateway(cfg)
    ask(gw, FRANCE)
    wait_stored(gw, 1)
    redis_server.stop()
    during = [ask(gw, FRANCE) for _ in range(3)]
    assert [r.headers["x-rung-cache"] for r in during] == ["bypass"] * 3
    assert all(r.parse().choices[0].message.content for r in during)  # still answered
    assert httpx.get(gw.url + "/readyz").status_code == 200
    redis_server.start()  # back on the same port, empty; the fixture stops it
    time.sleep(1.1)  # the cache retries the store after a second
    statuses = []
    for _ in range(20):
        statuses.append(ask(gw, FRANCE).headers["x-rung-cache"])
        if statuses[-1] == "hit-exact":
            break
        time.sleep(0.1)
    assert statuses[-1] == "hit-exact"


def test_tenants_never_see_each_others_entries_across_gateways(fake, gateway, redis_server):
    small, large = fake("small"), fake("large")
    alice, bob, carol = "alice-key-0123456789", "bob-key-0123456789ab", "carol-key-0123456789"
    cfg = make_config(
        [tier("small", small), tier("large", large)],
        server={"admin_key": ADMIN},
        cache={
            "enabled": True,
            "store": "redis",
            "redis_url": redis_server.url,
            "redis_timeout_ms": 500,
        },
        tenants=[
            {"name": "alice", "keys": [alice]},
            {"name": "bob", "keys": [bob], "policy": {"cache_group": "lab"}},
            {"name": "carol", "keys": [carol], "policy": {"cache_group": "lab"}},
        ],
    )
    one, two = gateway(cfg), gateway(cfg)

    def ask_as(gw: Gateway, key: str) -> str:
        raw = openai_client(gw, key).chat.completions.with_raw_response.create(
            model="rung", messages=[{"role": "user", "content": FRANCE}], temperature=0
        )
        return str(raw.headers["x-rung-cache"])

    assert ask_as(one, alice) == "miss"
    assert ask_as(one, bob) == "miss"  # alice's entry is not bob's
    for tenant in ("alice", "bob"):
        for _ in range(100):
            if admin(one, "cache/stats", tenant=tenant).json()["stored"] >= 1:
                break
            time.sleep(0.02)
    for _ in range(50):
        if httpx.get(two.url + "/readyz").json()["cache"]["indexed"] == 2:
            break
        time.sleep(0.05)
    assert ask_as(two, alice) == "hit-exact"
    assert ask_as(two, carol) == "hit-exact"  # carol shares bob's group
    assert small.stats.requests == 2


def openai_client(gw: Gateway, key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def test_a_conversation_is_cached_on_its_last_message_not_on_the_routing_text(fake, gateway):
    """The routing text of a later turn carries earlier turns too; the cache must embed what
    it matches (the last user message), or cosines compare texts its verifier never sees."""
    gw = gateway(config(fake("small"), fake("large")))
    pipeline = gw.app.state.runtime.pipeline
    real, seen = pipeline.cache_embed, []

    async def recording(text):  # the real embedder, with the texts it was given noted
        seen.append(text)
        return await real(text)

    pipeline.cache_embed = recording
    messages = [
        {"role": "user", "content": "Tell me about France."},
        {"role": "assistant", "content": "It is a country in Europe."},
        {"role": "user", "content": FRANCE},
    ]
    client(gw).chat.completions.create(model="rung", messages=messages, temperature=0)
    assert seen == [FRANCE]
