"""One contract, three stores: ledger, rate limiter and usage log in memory, in a real Redis and
in a real Redis Cluster (3 primaries)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from rung.config import LimitsConfig
from rung.tenants.counters import Hold
from rung.tenants.stores import build_stores
from rung.tenants.usage import UsageRecord, summarize
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer, find_redis_server

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis", "cluster"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        limits = LimitsConfig(store="redis", redis_url=cluster.url)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        limits = LimitsConfig(store=request.param, redis_url=server.url)
    built = build_stores(limits)
    yield built
    for store in built:
        await store.aclose()


async def test_reservations_never_exceed_a_budget_and_settle_exactly(stores: Any) -> None:
    ledger, _, _ = stores
    holds = [Hold("acme", "2026-11-29", "2026-11", 40) for _ in range(5)]
    results = await asyncio.gather(*(ledger.reserve(h, 100, 1000) for h in holds))
    assert sorted(results) == [False, False, False, True, True]  # 2 x 40 fit in 100
    spend = await ledger.spend("acme", "2026-11-29", "2026-11")
    assert (spend.day_spent, spend.day_reserved, spend.month_reserved) == (0, 80, 80)
    first, second = (h for h, ok in zip(holds, results, strict=True) if ok)
    await ledger.settle(first, 25)
    await ledger.settle(second, 0)  # a failed call releases all of its reservation
    spend = await ledger.spend("acme", "2026-11-29", "2026-11")
    assert (spend.day_spent, spend.day_reserved, spend.month_spent) == (25, 0, 25)
    assert await ledger.reserve(Hold("acme", "2026-11-29", "2026-11", 40), 100, 1000)
    assert not await ledger.reserve(Hold("acme", "2026-11-29", "2026-11", 40), 100, 64)  # month
    # An unmetered outage's cost is settled against a zero reservation.
    await ledger.settle(Hold("acme", "2026-11-30", "2026-11", 0), 7)
    spend = await ledger.spend("acme", "2026-11-30", "2026-11")
    assert (spend.day_spent, spend.day_reserved, spend.month_spent) == (7, 0, 32)
    other = await ledger.spend("globex", "2026-11-29", "2026-11")
    assert other.day_used == 0


async def test_a_reservation_nobody_settles_expires_and_a_late_settlement_counts_once(
    stores: Any,
) -> None:
    """Issue 13, defect 4: a gateway that crashed mid-request (or a reply lost to a paused
    Redis) left its reservation counted forever. Reservations are leases now."""
    ledger, _, _ = stores
    crashed = Hold("acme", "2026-12-01", "2026-12", 60, lease_s=0.2)
    late = Hold("acme", "2026-12-01", "2026-12", 30, lease_s=0.2)
    assert await ledger.reserve(crashed, 100, None)
    assert await ledger.reserve(late, 100, None)
    assert not await ledger.reserve(Hold("acme", "2026-12-01", "2026-12", 20), 100, None)
    await asyncio.sleep(0.4)
    spend = await ledger.spend("acme", "2026-12-01", "2026-12")
    assert (spend.day_spent, spend.day_reserved) == (0, 0)  # both leases ran out
    assert await ledger.settle(late, 25) is False  # after its lease: counts once, and says so
    spend = await ledger.spend("acme", "2026-12-01", "2026-12")
    assert (spend.day_spent, spend.day_reserved, spend.month_reserved) == (25, 0, 0)
    assert await ledger.reserve(Hold("acme", "2026-12-01", "2026-12", 75), 100, None)


async def test_a_renewed_reservation_outlives_its_lease_and_a_lapsed_one_is_named(
    stores: Any,
) -> None:
    """Issue 28: a stream longer than its lease let new requests be admitted against the same
    money. A running request's reservation is renewed; one that ran out is reported lapsed."""
    ledger, _, _ = stores
    running = Hold("acme", "2026-12-02", "2026-12", 60, lease_s=0.3)
    forgotten = Hold("acme", "2026-12-02", "2026-12", 30, lease_s=0.3)
    assert await ledger.reserve(running, 100, None)
    assert await ledger.reserve(forgotten, 100, None)
    for _ in range(4):  # 0.6 s: twice the lease, renewed every 0.15 s
        await asyncio.sleep(0.15)
        lapsed = await ledger.renew([running])
        assert lapsed == set()
    spend = await ledger.spend("acme", "2026-12-02", "2026-12")
    assert spend.day_reserved == 60  # still held; the forgotten one ran out
    assert not await ledger.reserve(Hold("acme", "2026-12-02", "2026-12", 50), 100, None)
    assert await ledger.renew([running, forgotten]) == {forgotten.id}
    assert await ledger.settle(running, 55) is True
    spend = await ledger.spend("acme", "2026-12-02", "2026-12")
    assert (spend.day_spent, spend.day_reserved) == (55, 0)


async def test_rate_windows_count_requests_and_tokens(stores: Any) -> None:
    _, limiter, _ = stores
    got = [await limiter.admit("acme", 100, 2, 1000, 300) for _ in range(3)]
    assert [(a.allowed, a.requests, a.tokens) for a in got] == [
        (True, 1, 300),
        (True, 2, 600),
        (False, 2, 600),
    ]
    await limiter.adjust("acme", 100, -250)
    assert (await limiter.admit("acme", 100, None, 1000, 600)).allowed  # 350 + 600 <= 1000
    assert not (await limiter.admit("acme", 100, None, 1000, 100)).allowed
    fresh = await limiter.admit("acme", 101, 2, 1000, 300)  # the next minute
    assert (fresh.allowed, fresh.requests) == (True, 1)


async def test_usage_records_and_sums(stores: Any) -> None:
    _, _, usage = stores

    def record(t: float, tier: str, cost: int, cache: str | None = None) -> UsageRecord:
        return UsageRecord(
            "acme",
            t,
            [tier],
            ["m"],
            10,
            5,
            cost,
            100,
            cache,
            None,
            12.0,
            200,
            tier=tier,
            day="2026-11-29",
            month="2026-11",
        )

    for r in (record(1.0, "small", 20), record(2.0, "large", 60), record(3.0, "small", 0, "hit")):
        await usage.append(r)
    rows = await usage.records("acme", 2.0)
    assert [(r["time"], r["tier"]) for r in rows] == [(2.0, "large"), (3.0, "small")]
    assert await usage.records("globex", 0) == []
    summary = summarize(await usage.sums("acme", "2026-11"))
    assert summary["requests"] == 3
    assert summary["cost_usd"] == pytest.approx(80 / 1e6)
    assert summary["saved_usd"] == pytest.approx(220 / 1e6)
    assert summary["by_tier"]["small"]["requests"] == 2
    assert summary["by_tier"]["small"]["cache_hits"] == 1


async def test_the_usage_log_keeps_the_newest_records_up_to_its_bound(
    redis_server: RedisServer,
) -> None:
    limits = LimitsConfig(store="redis", redis_url=redis_server.url, usage_records_max=3)
    built = build_stores(limits)
    usage = built[2]
    try:
        for t in range(5):
            record = UsageRecord("bounded", float(t), ["small"], ["m"], 1, 2, 3, 4, None, None,
                                 1.0, 200, tier="small", day="2026-12-03", month="2026-12",
                                 extra={"note": t})  # fmt: skip
            await usage.append(record)
        rows = await usage.records("bounded", 0)
        assert [r["time"] for r in rows] == [2.0, 3.0, 4.0]  # oldest first, two dropped
        assert rows[-1]["extra"] == {"note": 4}
        assert rows[-1]["tiers"] == ["small"]
        for period, seconds in (("2026-12-03", 3 * 86_400), ("2026-12", 40 * 86_400)):
            sums = await usage.sums("bounded", period)
            assert sums == {"small:requests": 5, "small:prompt_tokens": 5,
                            "small:completion_tokens": 10, "small:cost": 15,
                            "small:top_tier_cost": 20}  # fmt: skip
            raw = aioredis.Redis.from_url(redis_server.url)
            ttl = await raw.ttl(f"rung:usage-sum:bounded:{period}")
            await raw.aclose()
            assert seconds - 60 < ttl <= seconds  # the sums expire with their period
    finally:
        for store in built:
            await store.aclose()


async def test_a_paused_redis_fails_each_call_within_its_deadline_and_recovery_is_at_once() -> None:
    """No client relies on a socket timeout (redis-py's cost an asyncio.wait_for per send and
    per read; rung.resp has none): every call is bounded by its store's deadline instead. A
    SIGSTOPped Redis (a frozen VM, a full-sync pause) accepts connections and answers nothing."""
    from rung.cache.redis_store import RedisStore
    from rung.cache.store import StoreError
    from rung.tenants.redis_counters import CounterError

    server = RedisServer(find_redis_server()).start()
    assert server.process is not None
    limits = LimitsConfig(store="redis", redis_url=server.url, redis_timeout_ms=200)
    ledger, limiter, usage = build_stores(limits)
    cache = RedisStore(server.url, 100, 3600.0)  # its deadline is at least 0.5 s
    try:
        await ledger.spend("acme", "2026-12-03", "2026-12")  # connected before the pause
        await cache.start()
        record = UsageRecord("acme", 1.0, ["small"], ["m"], 1, 2, 3, 4, None, None, 1.0, 200,
                             tier="small", day="2026-12-03", month="2026-12")  # fmt: skip
        os.kill(server.process.pid, signal.SIGSTOP)
        for call, error, deadline in (
            (ledger.spend("acme", "2026-12-03", "2026-12"), CounterError, 0.2),
            (limiter.admit("acme", 1, 10, None, 5), CounterError, 0.2),
            (usage.append(record), CounterError, 0.2),
            (cache.get("acme", "k"), StoreError, 0.5),
        ):
            started = time.monotonic()
            with pytest.raises(error, match="no reply within"):
                await asyncio.wait_for(call, 10)  # a hang fails the test instead of hanging it
            assert time.monotonic() - started < deadline + 1.0
        os.kill(server.process.pid, signal.SIGCONT)
        spend = await ledger.spend("acme", "2026-12-03", "2026-12")  # a fresh connection
        assert spend.day_used == 0
        assert await cache.get("acme", "k") is None
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        for store in (ledger, limiter, usage, cache):
            await store.aclose()
        server.stop()


async def test_a_long_usage_log_is_read_whole_past_the_request_paths_deadline(
    redis_server: RedisServer,
) -> None:
    """Admin and dashboard reads of the log have their own connection and deadline: 50,000
    records (~15 MB) take far longer than a request-path call may (5 ms here)."""
    limits = LimitsConfig(store="redis", redis_url=redis_server.url, redis_timeout_ms=5)
    built = build_stores(limits)
    usage = built[2]
    raw = aioredis.Redis.from_url(redis_server.url)
    row = {"tenant": "long", "time": 1.0, "tiers": ["small"], "note": "x" * 200}
    try:
        async with raw.pipeline(transaction=False) as tx:
            for i in range(50_000):
                tx.lpush("rung:usage:long", orjson.dumps({**row, "time": float(i)}))  # as stored
            await tx.execute()
        rows = await usage.records("long", 0)
        assert len(rows) == 50_000
        assert [rows[0]["time"], rows[-1]["time"]] == [0.0, 49_999.0]  # oldest first
    finally:
        await raw.delete("rung:usage:long")
        await raw.aclose()
        for store in built:
            await store.aclose()
