"""One contract, two stores: the in-memory store and the Redis store (a real redis-server)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from rung.cache.entry import Entry
from rung.cache.redis_store import ANNOUNCE_MAX_TEXT, RedisStore, announced_in
from rung.cache.store import CacheStore, Change, MemoryStore, StoreError
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration
TTL = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(key: str, tenant: str = "acme", created: float = 1_000_000.0, **kw: Any) -> Entry:
    rng = np.random.default_rng(abs(hash(key)) % 2**32)
    vector = rng.normal(size=8).astype(np.float32)
    fields: dict[str, Any] = {
        "key": key,
        "tenant": tenant,
        "scope": "s1",
        "text": f"question {key}?",
        "body": b'{"object": "chat.completion", "choices": [{"message": {"content": "42"}}]}',
        "tier": "small",
        "model": "m-small",
        "decided": "small",
        "route_key": "r1",
        "vector": vector / np.linalg.norm(vector),
        "confidence": 0.9,
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        "created": created,
    }
    return Entry(**{**fields, **kw})


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., CacheStore]]:
    made: list[CacheStore] = []

    def make(max_entries: int = 100, clock: Clock | None = None) -> CacheStore:
        store: CacheStore
        if request.param == "memory":
            store = MemoryStore(max_entries, 10**9, TTL, clock or Clock())
        else:
            url = (
                request.getfixturevalue("redis_cluster").url
                if request.param == "cluster"
                else request.getfixturevalue("redis_server").url
            )
            store = RedisStore(url, max_entries, TTL, 1.0, 8, clock or Clock())
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def same(a: Entry | None, b: Entry) -> bool:
    assert a is not None
    assert a.vector is not None
    assert b.vector is not None
    return (
        a.key == b.key
        and a.body == b.body
        and a.text == b.text
        and a.usage == b.usage
        and a.confidence == b.confidence
        and np.array_equal(a.vector, b.vector)
    )


async def test_put_get_round_trip_and_tenant_isolation(make_store: Callable[..., CacheStore]):
    store = make_store()
    await store.start()
    first = entry("k1")
    assert await store.put(first) == []
    assert same(await store.get("acme", "k1"), first)
    assert await store.get("globex", "k1") is None  # another tenant never sees it
    assert await store.get("acme", "nope") is None
    assert await store.usage("acme") == (1, first.size)
    assert await store.usage("globex") == (0, 0)


async def test_entries_expire_after_the_ttl(make_store: Callable[..., CacheStore]):
    clock = Clock()
    store = make_store(clock=clock)
    await store.put(entry("old", created=clock.now))
    clock.now += TTL + 1
    new = entry("new", created=clock.now)
    await store.put(new)
    assert await store.get("acme", "old") is None
    assert await store.get("acme", "new") is not None
    assert await store.usage("acme") == (1, new.size)  # its size is no longer counted
    assert [e.key async for e in store.entries()] == ["new"]


async def test_the_oldest_entries_are_evicted_beyond_max_entries(
    make_store: Callable[..., CacheStore],
):
    store = make_store(max_entries=2)
    await store.put(entry("a", created=1_000_000.0))
    await store.put(entry("b", created=1_000_001.0))
    evicted = await store.put(entry("c", created=1_000_002.0))
    assert evicted == ["a"]
    assert await store.get("acme", "a") is None
    assert await store.usage("acme") == (2, entry("b").size + entry("c").size)
    assert {e.key async for e in store.entries()} == {"b", "c"}


async def test_purge_removes_one_tenant_only(make_store: Callable[..., CacheStore]):
    store = make_store()
    for key in ("a", "b"):
        await store.put(entry(key))
    await store.put(entry("x", tenant="globex"))
    assert await store.purge("acme") == 2
    assert await store.get("acme", "a") is None
    assert await store.get("globex", "x") is not None
    assert await store.usage("acme") == (0, 0)


async def test_memory_store_is_lru_and_bounded_by_bytes() -> None:
    one = entry("a")
    store = MemoryStore(100, one.size * 2 + 10, TTL, Clock())
    await store.put(one)
    await store.put(entry("b"))
    assert await store.get("acme", "a") is not None  # a is now the most recently used
    assert await store.put(entry("c")) == ["b"]
    assert await store.usage("acme") == (2, one.size * 2)


async def test_redis_skips_corrupt_and_foreign_entries(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, 100, TTL, 1.0, 8, Clock())
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await raw.hset("rung:cache:acme:bad", mapping={"meta": b"{not json", "body": b"{}"})
        assert await store.get("acme", "bad") is None
        assert not await raw.exists("rung:cache:acme:bad")  # and deleted
        # An entry of globex's written under acme's key: foreign, never served.
        await raw.hset("rung:cache:acme:k9", mapping=entry("k9", tenant="globex").encode())
        assert await store.get("acme", "k9") is None
        # A vector of the wrong size is corrupt too.
        wrong = entry("k8", vector=np.ones(4, dtype=np.float32) / 2)
        await raw.hset("rung:cache:acme:k8", mapping=wrong.encode())
        assert await store.get("acme", "k8") is None
    finally:
        await raw.aclose()
        await store.aclose()


async def test_redis_replicas_hear_each_others_changes(redis_url: str) -> None:
    one = RedisStore(redis_url, 100, TTL, 1.0, 8, Clock())
    two = RedisStore(redis_url, 100, TTL, 1.0, 8, Clock())
    heard: list[Change] = []

    async def on_change(change: Change) -> None:
        heard.append(change)

    watcher = asyncio.create_task(two.watch(on_change))
    try:
        await asyncio.sleep(0.3)  # subscribed
        first = entry("k1")
        await one.put(first)
        await two.put(entry("own"))  # a replica does not hear itself
        await one.put(entry("k2", text="x" * (ANNOUNCE_MAX_TEXT + 1)))  # too long to carry
        await one.purge("acme")
        for _ in range(50):
            if len(heard) >= 3:
                break
            await asyncio.sleep(0.05)
        assert [(c.tenant, c.key) for c in heard] == [
            ("acme", "k1"),
            ("acme", "k2"),
            ("acme", None),
        ]
        carried = heard[0].announced  # what the other replicas' indexes need, sent with it
        assert carried is not None
        assert (carried.scope, carried.text, carried.tier) == (first.scope, first.text, first.tier)
        assert first.vector is not None
        assert np.array_equal(carried.vector, first.vector)
        assert heard[1].announced is None  # a long question is read from Redis instead
        assert heard[2].announced is None
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await one.aclose()
        await two.aclose()


async def test_redis_down_raises_store_error_quickly() -> None:
    from rung.ports import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", 100, TTL, 0.05, 8)
    try:
        with pytest.raises(StoreError):
            await store.get("acme", "k")
        with pytest.raises(StoreError):
            await store.put(entry("k"))
    finally:
        await store.aclose()


class ReadCountingStore(RedisStore):
    """The real Redis store, counting the entries it reads."""

    reads = 0

    async def get(self, tenant: str, key: str) -> Entry | None:
        self.reads += 1
        return await super().get(tenant, key)


async def test_two_replicas_on_one_redis_share_entries_but_never_across_tenants(
    redis_url: str,
) -> None:
    """Two gateway replicas' caches (each with its own in-process index) on one real Redis, or
    on one real Redis Cluster."""
    from rung.cache.keys import cache_key
    from rung.cache.semantic import SemanticCache
    from rung.config import CacheConfig

    # this test is about sharing, not latency: a loaded CI machine may take longer than the
    # production default (50 ms) to open the first pooled connection
    config = CacheConfig(store="redis", similarity_threshold=0.9, redis_timeout_ms=2000)
    groups = {"ann": "lab", "bob": "lab"}
    stores = [ReadCountingStore(redis_url, 100, TTL, 1.0, 8) for _ in range(2)]
    replicas = [SemanticCache(store, config, ["small"], groups=groups) for store in stores]
    for replica in replicas:
        await replica.start()
    await asyncio.sleep(0.3)  # both subscribed
    text = "What is the capital of France?"
    key = cache_key(
        "/chat/completions", {"model": "rung", "messages": [{"role": "user", "content": text}]}
    )
    assert key is not None
    vector = entry("v").vector
    assert vector is not None

    async def decide() -> tuple[Any, str]:
        return vector, "small"

    body = entry("x").body
    for tenant in ("acme", "ann"):
        stored = await replicas[0].put(tenant, key, vector, body, tier="small", model="m",
                                       decided="small", route_key="r")  # fmt: skip
        assert stored
    for _ in range(50):  # replica 2's index hears about both through pub/sub
        if replicas[1].health()["indexed"] == 2:
            break
        await asyncio.sleep(0.05)
    assert stores[1].reads == 0  # indexed from the announcements, no entry read
    paraphrase = type(key)(key.scope, "Tell me the capital of France.")
    seen = {
        tenant: (await replicas[1].lookup(tenant, paraphrase, "r", decide)).status
        for tenant in ("acme", "globex", "ann", "bob", "carol")
    }
    assert seen == {
        "acme": "hit-semantic",
        "globex": "miss",  # another tenant: never
        "ann": "hit-semantic",
        "bob": "hit-semantic",  # shares the `lab` group with ann
        "carol": "miss",
    }
    for replica in replicas:
        await replica.aclose()


async def test_conversation_tiers_in_redis_are_shared_and_only_go_up(redis_url: str) -> None:
    from rung.ports import free_port
    from rung.router.conversations import RedisConversations

    one = RedisConversations(redis_url, ttl_s=60)
    two = RedisConversations(redis_url, ttl_s=60)  # another replica
    ladder = ("small", "large")
    try:
        assert await two.floor("c") is None
        await one.raise_to("c", "large", ladder)
        await two.raise_to("c", "small", ladder)
        assert await two.floor("c") == "large"
        assert await one.floor("c") == "large"
        # At the same moment on two replicas: a read-then-write let the later write lower it.
        for turn in range(20):
            await asyncio.gather(
                one.raise_to(f"race{turn}", "large", ladder),
                two.raise_to(f"race{turn}", "small", ladder),
            )
            assert await one.floor(f"race{turn}") == "large"
        # A tier stored under an older config and no longer served ranks below every tier.
        await one.raise_to("d", "retired", ("retired", "small", "large"))
        await two.raise_to("d", "small", ladder)
        assert await one.floor("d") == "small"
    finally:
        await one.aclose()
        await two.aclose()
    gone = RedisConversations(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    assert await gone.floor("c") is None  # no Redis: the turn is routed alone, nothing raised
    await gone.raise_to("c", "large", ladder)
    await gone.aclose()


@pytest.mark.parametrize(
    "broken",
    [
        {"vector": "not base64!"},
        {"vector": ""},
        {"text": 42},
        {"scope": None},
        {"vector": "AAAAAA=="},  # one float where the store expects 8
    ],
)
def test_a_malformed_announcement_is_read_from_redis_instead(broken: dict[str, Any]) -> None:
    vector = np.arange(8, dtype="<f4")
    event: dict[str, Any] = {"scope": "s", "text": "q?", "tier": "small",
                             "vector": base64.b64encode(vector.tobytes()).decode()}  # fmt: skip
    whole = announced_in(event, 8)
    assert whole is not None
    assert np.array_equal(whole.vector, vector)
    assert announced_in({**event, **broken}, 8) is None
