"""SemanticCache over the memory store: exact and semantic hits, the near-miss guard, the
stale-tier rule, sharing groups, faults. Vectors are chosen by hand: no embedder needed."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from rung.cache.keys import cache_key
from rung.cache.semantic import SemanticCache
from rung.cache.store import MemoryStore, StoreError
from rung.config import CacheConfig

TIERS = ["small", "large"]
BODY = b'{"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}'


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def key(text: str, **params: Any) -> Any:
    found = cache_key(
        "/chat/completions",
        {"model": "rung", "messages": [{"role": "user", "content": text}], **params},
    )
    assert found is not None
    return found


class Decider:
    """The pipeline's memoised embed+decide, scripted."""

    def __init__(self, vector: np.ndarray, tier: str = "small") -> None:
        self.vector, self.tier, self.calls = vector, tier, 0

    async def __call__(self) -> tuple[np.ndarray, str]:
        self.calls += 1
        return self.vector, self.tier


async def make(groups: dict[str, str] | None = None) -> SemanticCache:
    settings = CacheConfig(similarity_threshold=0.9)
    cache = SemanticCache(MemoryStore(100, 10**8, 3600), settings, TIERS, groups=groups)
    await cache.start()
    return cache


async def put(
    cache: SemanticCache,
    text: str,
    vector: np.ndarray,
    tier: str = "small",
    tenant: str = "acme",
    route: str = "r1",
) -> None:
    stored = await cache.put(
        tenant, key(text), vector, BODY, tier=tier, model=f"m-{tier}", decided=tier, route_key=route
    )
    assert stored


async def test_exact_hit_under_the_same_routing_needs_no_embedding() -> None:
    cache = await make()
    await put(cache, "What is the capital of France?", unit(1, 0, 0))
    decide = Decider(unit(1, 0, 0))
    found = await cache.lookup("acme", key("What is the capital of France?"), "r1", decide)
    assert (found.status, found.similarity, decide.calls) == ("hit-exact", 1.0, 0)
    assert found.entry is not None
    assert found.entry.body == BODY
    await cache.aclose()


async def test_semantic_hit_above_the_threshold_only() -> None:
    cache = await make()
    await put(cache, "What is the capital of France?", unit(1, 0, 0))
    close = await cache.lookup(
        "acme", key("Tell me the capital city of France."), "r1", Decider(unit(1, 0.2, 0))
    )
    assert close.status == "hit-semantic"
    assert close.similarity == pytest.approx(float(unit(1, 0.2, 0) @ unit(1, 0, 0)), abs=1e-4)
    far = await cache.lookup(
        "acme", key("Tell me the capital city of France."), "r1", Decider(unit(1, 1, 0))
    )
    assert (far.status, far.rejected) == ("miss", None)
    stats = await cache.stats("acme")
    assert (stats["hits_semantic"], stats["misses"], stats["entries"]) == (1, 1, 1)
    await cache.aclose()


async def test_near_misses_are_rejected_and_counted() -> None:
    cache = await make()
    await put(cache, "Janet has 16 eggs. How many are left?", unit(1, 0, 0))
    found = await cache.lookup(
        "acme", key("Janet has 17 eggs. How many are left?"), "r1", Decider(unit(1, 0.01, 0))
    )
    assert (found.status, found.rejected) == ("miss", "near-miss:numbers")
    assert (await cache.stats("acme"))["near_miss_rejections"] == 1
    await cache.aclose()


class CountingStore(MemoryStore):
    """The memory store, counting the entries read."""

    def __init__(self) -> None:
        super().__init__(100, 10**8, 3600)
        self.reads: list[str] = []

    async def get(self, tenant: str, key: str) -> Any:
        self.reads.append(key)
        return await super().get(tenant, key)


async def test_candidates_are_judged_in_process_and_only_the_served_one_is_read() -> None:
    store = CountingStore()
    cache = SemanticCache(store, CacheConfig(similarity_threshold=0.9), TIERS)
    await cache.start()
    # Three near misses (other numbers) closer to the question than the one rephrasing.
    for n, lean in [(17, 0.0), (18, 0.001), (19, 0.002)]:
        await put(cache, f"Janet has {n} eggs. How many are left?", unit(1, lean, 0))
    await put(cache, "Janet has 16 eggs. How many eggs are left?", unit(1, 0.05, 0))
    store.reads.clear()
    asked = key("Janet has 16 eggs. How many are left?")
    found = await cache.lookup("acme", asked, "r1", Decider(unit(1, 0.01, 0)))
    assert found.status == "hit-semantic"
    assert found.entry is not None
    assert found.entry.text == "Janet has 16 eggs. How many eggs are left?"
    # The exact key, then the served entry: none of the three rejected candidates.
    assert store.reads == [asked.exact, found.entry.key]
    await cache.aclose()


async def test_a_stored_question_is_read_for_its_salient_parts_once_and_the_memo_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rung.cache.semantic as semantic

    read: list[str] = []
    real = semantic.salient

    def counting(text: str) -> Any:
        read.append(text)
        return real(text)

    monkeypatch.setattr(semantic, "salient", counting)
    monkeypatch.setattr(semantic, "SALIENT_MEMO", 4)
    cache = await make()
    for n in range(17, 22):  # five near misses of one question, other numbers each
        await put(cache, f"Janet has {n} eggs. How many are left?", unit(1, 0.001 * n, 0))
    for asked in ("Janet has 16 eggs. How many are left?", "Janet has 15 eggs. How many are left?"):
        found = await cache.lookup("acme", key(asked), "r1", Decider(unit(1, 0.0, 0)))
        assert (found.status, found.rejected) == ("miss", "near-miss:numbers")
    stored = [t for t in read if not t.startswith(("Janet has 16", "Janet has 15"))]
    assert len(stored) == 4  # the CANDIDATES judged, each read once over both lookups
    for n in range(30, 35):  # another question's near misses take the memo's places
        await put(cache, f"Tom has {n} apples. How many are left?", unit(0, 1, 0.001 * n))
    await cache.lookup("acme", key("Tom has 29 apples. How many are left?"), "r1",
                       Decider(unit(0, 1, 0)))  # fmt: skip
    assert len(cache._salient) == 4  # bounded: the least recently judged went
    assert all(text.startswith("Tom") for text in cache._salient)
    await cache.aclose()


async def test_a_candidate_gone_from_the_store_is_dropped_and_the_next_one_served() -> None:
    store = CountingStore()
    cache = SemanticCache(store, CacheConfig(similarity_threshold=0.9), TIERS)
    await cache.start()
    await put(cache, "What is the capital of France?", unit(1, 0, 0))
    await put(cache, "Which city is the capital of France?", unit(1, 0.1, 0))
    gone = key("What is the capital of France?").exact
    await store.delete("tenant:acme", gone)  # as another replica's eviction would
    asked = key("Tell me the capital city of France.")
    found = await cache.lookup("acme", asked, "r1", Decider(unit(1, 0.01, 0)))
    assert found.status == "hit-semantic"
    assert found.entry is not None
    assert found.entry.text == "Which city is the capital of France?"
    assert cache.health()["indexed"] == 1  # the gone entry left the index
    await cache.aclose()


async def test_the_verifier_has_the_last_word_and_is_counted() -> None:
    seen: list[tuple[str, str, float]] = []

    def verify(query: str, cached: str, cosine: float) -> bool:
        seen.append((query, cached, round(cosine, 3)))
        return "lower" not in query

    cache = SemanticCache(
        MemoryStore(100, 10**8, 3600), CacheConfig(similarity_threshold=0.9), TIERS, verify=verify
    )
    await cache.start()
    await put(cache, "What foods raise blood pressure?", unit(1, 0, 0))
    near = await cache.lookup(
        "acme", key("What foods lower blood pressure?"), "r1", Decider(unit(1, 0.01, 0))
    )
    assert (near.status, near.rejected) == ("miss", "verifier")
    same = await cache.lookup(
        "acme", key("Which foods raise blood pressure?"), "r1", Decider(unit(1, 0.01, 0))
    )
    assert same.status == "hit-semantic"
    assert seen[0] == ("What foods lower blood pressure?", "What foods raise blood pressure?", 1.0)
    assert (await cache.stats("acme"))["verifier_rejections"] == 1
    await cache.aclose()


async def test_a_cheaper_answer_is_not_served_to_a_query_now_judged_harder() -> None:
    cache = await make()
    await put(cache, "Prove it.", unit(1, 0, 0), tier="small")
    # Same text, but routing changed (another fingerprint) and now decides `large`.
    exact = await cache.lookup("acme", key("Prove it."), "r2", Decider(unit(1, 0, 0), "large"))
    assert (exact.status, exact.rejected) == ("miss", "stale-tier")
    semantic = await cache.lookup(
        "acme", key("Prove it!"), "r1", Decider(unit(1, 0.05, 0), "large")
    )
    assert (semantic.status, semantic.rejected) == ("miss", "stale-tier")
    # An answer from the large tier may serve a query judged easy.
    await put(cache, "Prove this.", unit(0, 1, 0), tier="large")
    ok = await cache.lookup("acme", key("Prove this!"), "r1", Decider(unit(0, 1, 0.05), "small"))
    assert ok.status == "hit-semantic"
    assert (await cache.stats("acme"))["stale_tier_rejections"] == 2
    await cache.aclose()


async def test_scopes_and_tenants_never_mix_but_groups_share() -> None:
    cache = await make(groups={"acme": "shared", "initech": "shared"})
    await put(cache, "What is 2+2?", unit(1, 0, 0))
    v = Decider(unit(1, 0, 0))
    assert (await cache.lookup("globex", key("What is 2+2?"), "r1", v)).status == "miss"
    assert (await cache.lookup("initech", key("What is 2+2?"), "r1", v)).status == "hit-exact"
    hotter = key("What is 2+2?", temperature=0.3)  # another scope: neither exact nor semantic
    assert (await cache.lookup("acme", hotter, "r1", v)).status == "miss"
    await cache.aclose()


async def test_purge_empties_the_tenant_and_its_index() -> None:
    cache = await make()
    await put(cache, "What is 2+2?", unit(1, 0, 0))
    assert await cache.purge("acme") == 1
    found = await cache.lookup("acme", key("What is two plus two?"), "r1", Decider(unit(1, 0, 0)))
    assert found.status == "miss"
    assert cache.health()["indexed"] == 0
    await cache.aclose()


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(100, 10**8, 3600)
        self.down = False
        self.calls = 0

    async def get(self, tenant: str, key: str) -> Any:
        self.calls += 1
        if self.down:
            raise StoreError("connection refused")
        return await super().get(tenant, key)


async def test_a_failing_store_is_bypassed_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    store = FlakyStore()
    cache = SemanticCache(store, CacheConfig(), TIERS, clock=lambda: now[0])
    await cache.start()
    await cache.put(
        "acme",
        key("hi"),
        unit(1, 0),
        BODY,
        tier="small",
        model="m",
        decided="small",
        route_key="r1",
    )
    store.down = True
    statuses = [
        (await cache.lookup("acme", key("hi"), "r1", Decider(unit(1, 0)))).status for _ in range(5)
    ]
    assert statuses == ["bypass"] * 5
    assert store.calls == 3  # after three failures in a row the store is left alone a while
    assert sum("unavailable" in r.message for r in caplog.records) == 1  # logged once
    store.down = False
    now[0] += 2.0
    assert (await cache.lookup("acme", key("hi"), "r1", Decider(unit(1, 0)))).status == "hit-exact"
    assert sum("is back after" in r.message for r in caplog.records) == 1
    assert (await cache.stats("acme"))["bypassed"] == 5
    await cache.aclose()


async def test_single_slow_replies_are_bypasses_not_outages(caplog: pytest.LogCaptureFixture):
    """Issue 13, defect 5: every blip marked the store down and rebuilt the whole index."""
    now = [0.0]
    store = FlakyStore()
    cache = SemanticCache(store, CacheConfig(), TIERS, clock=lambda: now[0])
    await cache.start()
    await put(cache, "hi", unit(1, 0))
    rebuilt = count_rebuilds(cache)
    statuses = []
    for i in range(30):
        store.down = i % 5 == 0  # one failure in five calls: a flapping, live store
        statuses.append((await cache.lookup("acme", key("hi"), "r1", Decider(unit(1, 0)))).status)
    assert statuses.count("bypass") == 6
    assert statuses.count("hit-exact") == 24
    assert cache.health()["available"] is True
    assert rebuilt[0] == 0
    assert not any("unavailable" in r.message for r in caplog.records)
    await cache.aclose()


class SubscribedStore(FlakyStore):
    """A flaky store with a change subscription: it breaks `breaks` times, then holds."""

    def __init__(self, breaks: int = 0) -> None:
        super().__init__()
        self.breaks = breaks

    async def watch(self, on_change: Any, on_subscribed: Any = None) -> None:
        if on_subscribed is not None:
            on_subscribed()
        if self.breaks:
            self.breaks -= 1
            raise StoreError("subscription connection reset")
        await asyncio.Event().wait()  # holds until cancelled


def count_rebuilds(cache: SemanticCache) -> list[int]:
    rebuilt = [0]
    original = cache._rebuild

    async def counting() -> None:
        rebuilt[0] += 1
        await original()

    cache._rebuild = counting  # type: ignore[method-assign]
    return rebuilt


async def test_an_outage_with_the_subscription_held_keeps_the_index(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store marked down while its change subscription held (a busy loop late reading
    replies) missed nothing: the index is kept, not re-read."""
    now = [0.0]
    store = SubscribedStore()
    cache = SemanticCache(store, CacheConfig(similarity_threshold=0.9), TIERS, clock=lambda: now[0])
    await cache.start()
    rebuilt = count_rebuilds(cache)
    await put(cache, "What is the capital of France?", unit(1, 0, 0))
    store.down = True
    for _ in range(3):
        await cache.lookup("acme", key("hi"), "r1", Decider(unit(0, 1, 0)))
    assert cache.health()["available"] is False
    store.down = False
    now[0] += 2.0
    found = await cache.lookup(
        "acme", key("Tell me the capital city of France."), "r1", Decider(unit(1, 0.01, 0))
    )
    assert found.status == "hit-semantic"
    await asyncio.sleep(0.05)
    assert rebuilt[0] == 0
    assert sum("is back after" in r.message for r in caplog.records) == 1
    await cache.aclose()


async def test_a_broken_subscription_rereads_the_index_once_it_is_back() -> None:
    store = SubscribedStore(breaks=1)
    cache = SemanticCache(store, CacheConfig(), TIERS)
    await cache.start()  # reads the index, then watches: the first watch breaks at once
    rebuilt = count_rebuilds(cache)
    await asyncio.sleep(0.2)
    assert rebuilt[0] == 0  # not while the subscription is down
    await asyncio.sleep(1.1)  # the retry a second later subscribes again: one re-read
    assert rebuilt[0] == 1
    await cache.aclose()


async def test_an_outage_backs_off_exponentially() -> None:
    now = [0.0]
    store = FlakyStore()
    cache = SemanticCache(store, CacheConfig(), TIERS, clock=lambda: now[0])
    await cache.start()
    store.down = True
    for _ in range(3):
        await cache.lookup("acme", key("hi"), "r1", Decider(unit(1, 0)))
    waits = []
    for _ in range(4):
        calls = store.calls
        step = 0.0
        while store.calls == calls:  # advance until the cache tries the store again
            step += 0.5
            now[0] += 0.5
            await cache.lookup("acme", key("hi"), "r1", Decider(unit(1, 0)))
        waits.append(step)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    await cache.aclose()


class AnnouncingStore(MemoryStore):
    """The memory store as another replica's change feed sees it: an entry announced without
    its index data (a long question), whose first `failing` reads time out."""

    def __init__(self, failing: int) -> None:
        super().__init__(100, 10**8, 3600)
        self.failing = failing
        self.reads = 0
        self.changes: asyncio.Queue[Any] = asyncio.Queue()

    async def get(self, tenant: str, key: str) -> Any:
        self.reads += 1
        if self.reads <= self.failing:
            raise TimeoutError("redis: no reply within 0.05s")
        return await super().get(tenant, key)

    async def watch(self, on_change: Any, on_subscribed: Any = None) -> None:
        if on_subscribed is not None:
            on_subscribed()
        while True:
            await on_change(await self.changes.get())


@pytest.mark.parametrize(("failing", "indexed", "errors"), [(2, 1, 0), (3, 0, 1)])
async def test_an_announced_entry_is_read_again_before_the_subscription_counts_as_broken(
    failing: int, indexed: int, errors: int
) -> None:
    """Reading an announced entry shares the request path's tight deadline: a busy moment is
    waited out (two timeouts, then the read); only a store that keeps failing breaks the
    subscription (counted as an error; the index is then re-read once it is back)."""
    from rung.cache.entry import Entry
    from rung.cache.store import Change

    store = AnnouncingStore(failing)
    cache = SemanticCache(store, CacheConfig(similarity_threshold=0.9), TIERS)
    await cache.start()
    asked = key("What is the capital of France?")
    await store.put(Entry(asked.exact, "tenant:acme", asked.scope, asked.text, BODY, "small",
                          "m", "small", "r1", vector=unit(1, 0, 0)))  # fmt: skip
    await store.changes.put(Change("tenant:acme", asked.exact))  # another replica stored it
    await asyncio.sleep(0.3)  # the retries wait 0.05 s, then 0.1 s
    assert store.reads == min(failing + 1, 3)
    assert cache.health()["indexed"] == indexed
    assert cache.health()["errors"] == errors
    await cache.aclose()
