"""rung on a real Redis Cluster (issue 32): 3 primaries with a replica each, from Debian's
redis-server. The store contracts (budget race, rate limits, usage records, shared cache, sticky
conversations) run against it in test_limit_stores.py and test_cache_stores.py; here: the
gateway on the cluster, a primary killed mid-run, spend written only once replicas hold it,
and settlements written again counted once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.crc import key_slot

from rung.backends.fake_server import Behavior
from rung.resp import NotReplicated, Script
from rung.resp_cluster import ClusterClient
from rung.tenants.counters import Hold
from rung.tenants.keys import hash_key
from rung.tenants.redis_counters import CounterError, RedisLedger
from rung.tenants.usage import RedisUsage, UsageRecord
from tests.integration.harness import make_config, tier, wait_until
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer, find_redis_server

pytestmark = pytest.mark.integration
ADMIN = "admin-key-0123456789"
KEYS = {name: f"{name}-key-0123456789" for name in ("alice", "bob", "carol")}
DAY, MONTH = "2026-12-06", "2026-12"


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A cluster of the test's own (it kills a node)."""
    binary = find_redis_server()
    assert binary is not None
    cluster = RedisCluster(binary).start()
    cluster.replicas_in_sync()
    yield cluster
    cluster.stop()


def owner_port(cluster: RedisCluster, tenant: str) -> int:
    """The primary that holds a tenant's keys (its hash tag's slot)."""
    slot = key_slot(tenant.encode())
    out = cluster.cli_call(cluster.primaries()[0], "cluster", "slots")
    lines = out.split()
    # CLUSTER SLOTS as redis-cli prints it: start, end, host, port, id, then its replicas.
    for i, word in enumerate(lines):
        if (
            word.isdigit()
            and i + 3 < len(lines)
            and lines[i + 1].isdigit()
            and int(word) <= slot <= int(lines[i + 1])
            and lines[i + 2] == "127.0.0.1"
        ):
            return int(lines[i + 3])
    raise AssertionError(f"no primary owns slot {slot}")


def chat(text: str) -> dict[str, Any]:
    return {"model": "small", "messages": [{"role": "user", "content": text}], "max_tokens": 8}


async def _one(client: httpx.AsyncClient, url: str, tenant: str, i: int) -> tuple[str, int, Any]:
    headers = {"authorization": f"Bearer {KEYS[tenant]}"}
    try:
        got = await client.post(f"{url}/v1/chat/completions", json=chat(f"q{i}"), headers=headers)
    except httpx.HTTPError:
        return tenant, 0, None
    usage = got.json().get("usage") if got.status_code == 200 else None
    return tenant, got.status_code, usage


def test_a_primary_killed_mid_run_loses_no_spend_record_and_overruns_no_budget(
    own_cluster: RedisCluster, fake: Any, gateway: Any
) -> None:
    """Three tenants spend against daily budgets on a 3-primary cluster; the primary holding
    alice's keys is killed while requests are in flight and its replica takes over. Every
    request served is in the ledger and in the usage records exactly once (settlements and
    records the dead primary did not confirm are written again when the cluster is back, and
    counted once), and no tenant spent past its budget."""
    server = fake("small")
    server.behavior = Behavior(reply="four words of answer", delay_s=0.3)
    budget_usd = 0.0006  # about 20 requests' worth: the budget binds during the run
    config = make_config(
        [tier("small", server)],
        server={"admin_key": ADMIN, "request_timeout_s": 10},
        tenants=[
            {
                "name": name,
                "keys": [hash_key(key)],
                "policy": {"daily_budget_usd": budget_usd, "on_budget": "reject"},
            }
            for name, key in KEYS.items()
        ],
        limits={
            "store": "redis",
            "redis_url": own_cluster.url,
            "redis_replica_acks": 1,
            "redis_timeout_ms": 300,
        },
    )
    gw = gateway(config)
    victim = owner_port(own_cluster, "alice")

    async def run() -> list[tuple[str, int, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            results: list[tuple[str, int, Any]] = []
            for wave in range(16):
                batch = [
                    asyncio.create_task(_one(client, gw.url, tenant, wave * 100 + i))
                    for i in range(3)
                    for tenant in KEYS
                ]
                if wave == 4:  # reserved and waiting on the backend: they settle on a dead node
                    await asyncio.sleep(0.15)
                    own_cluster.kill(victim)
                results += await asyncio.gather(*batch)
                await asyncio.sleep(0.1)
            return results

    results = asyncio.run(run())
    own_cluster.wait_ok()
    # With `redis_replica_acks: 1` the promoted replica has no replica of its own, so alice's
    # shard refuses spend writes (kept pending) until the operator brings the node back; it
    # rejoins as the new primary's replica and the pending writes go through.
    own_cluster.restart(victim)
    own_cluster.replicas_in_sync(timeout_s=30)
    statuses = {s for _, s, _ in results}
    assert statuses <= {200, 429, 503}, statuses  # served, over budget, store away: never a 500
    assert 503 in statuses  # the failover was seen (fail_closed refuses while it lasts)
    headers = {"authorization": f"Bearer {ADMIN}"}

    def settled() -> bool:
        ready = httpx.get(f"{gw.url}/readyz").json()
        limits = ready.get("checks", {}).get("limits", ready.get("limits", {}))
        return not limits.get("pending_settlements") and not limits.get("pending_usage_records")

    wait_until(settled, timeout=30, what="the outage's settlements and records written")
    for tenant in KEYS:
        served = [u for t, s, u in results if t == tenant and s == 200]
        assert served, tenant
        price = sum(u["prompt_tokens"] * 1.0 + u["completion_tokens"] * 2.0 for u in served)
        usage = httpx.get(
            f"{gw.url}/admin/usage", params={"tenant": tenant}, headers=headers
        ).json()
        spent = usage["budget"]["spent_today_usd"]
        assert spent == pytest.approx(price / 1e6, abs=1e-9), tenant  # every served one, once
        assert spent <= budget_usd + 1e-12, tenant
        got = httpx.get(
            f"{gw.url}/admin/usage/records", params={"tenant": tenant}, headers=headers
        ).json()["records"]
        assert len(got) == len(served), tenant
        assert len({r["id"] for r in got}) == len(got)


async def _ledger_and_usage(url: str, acks: int) -> tuple[RedisLedger, RedisUsage]:
    return RedisLedger(url, 0.5, acks), RedisUsage(url, 0.5, 100, acks)


def test_spend_writes_wait_for_a_replica_and_fail_when_none_acknowledges(
    redis_server: RedisServer,
) -> None:
    """One primary and one replica (what Sentinel runs): with `redis_replica_acks: 1` a
    settlement is done once the replica holds it; with the replica gone it raises (the gate
    keeps it and writes it again), and written again it counts once."""
    binary = find_redis_server()
    assert binary is not None
    replica = RedisServer(binary).start()
    try:
        subprocess.run(
            ["redis-cli", "-p", str(replica.port), "replicaof", "127.0.0.1",
             str(redis_server.port)],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_until(
            lambda: "master_link_status:up"
            in subprocess.run(
                ["redis-cli", "-p", str(replica.port), "info", "replication"],
                capture_output=True, text=True,
            ).stdout,
            timeout=10,
            what="the replica in sync",
        )  # fmt: skip

        async def scenario() -> None:
            ledger, usage = await _ledger_and_usage(redis_server.url, 1)
            hold = Hold("acme", DAY, MONTH, 50)
            assert await ledger.reserve(hold, 1000, None)
            assert await ledger.settle(hold, 30)
            record = UsageRecord("acme", time.time(), ["small"], ["m"], 1, 1, 30, 40, None,
                                 None, 1.0, 200, "small", DAY, MONTH)  # fmt: skip
            await usage.append(record)
            replica.stop()
            late = Hold("acme", DAY, MONTH, 20)
            with pytest.raises(CounterError, match="replicas acknowledged"):
                await ledger.reserve(late, 1000, None)
            with pytest.raises(CounterError, match="replicas acknowledged"):
                await ledger.settle(hold, 30)  # ran on the primary, not confirmed: kept
            with pytest.raises(CounterError, match="replicas acknowledged"):
                await usage.append(record)  # the same record again: kept to write again
            plain, plain_usage = await _ledger_and_usage(redis_server.url, 0)
            assert await plain.settle(hold, 30)  # written again: counted once
            spend = await plain.spend("acme", DAY, MONTH)
            assert spend.day_spent == 30
            await plain_usage.append(record)
            assert len(await plain_usage.records("acme", 0)) == 1  # stored once
            for store in (ledger, usage, plain, plain_usage):
                await store.aclose()

        asyncio.run(scenario())
    finally:
        replica.stop()


def test_the_cluster_client_follows_a_slot_moved_to_another_primary(
    redis_cluster: RedisCluster,
) -> None:
    """A slot resharded under a running gateway: the client follows MOVED (and ASK while the
    slot migrates) and keeps counting in the same ledger."""

    async def scenario() -> None:
        ledger = RedisLedger(redis_cluster.url, 1.0)
        hold = Hold("acme", DAY, MONTH, 10)
        assert await ledger.reserve(hold, None, None)
        await ledger.settle(hold, 10)
        source = owner_port(redis_cluster, "acme")
        target = next(p for p in redis_cluster.primaries() if p != source)
        slot = key_slot(b"acme")
        ids = {
            port: redis_cluster.cli_call(port, "cluster", "myid").strip()
            for port in (source, target)
        }
        # Migrate the slot by hand, as redis-cli --cluster reshard does.
        redis_cluster.cli_call(target, "cluster", "setslot", str(slot), "importing", ids[source])
        redis_cluster.cli_call(source, "cluster", "setslot", str(slot), "migrating", ids[target])
        # A reservation while the slot migrates: Redis answers TRYAGAIN (some of its keys are
        # gone from the source) or ASK; the client waits and retries, then follows the slot.
        during = Hold("acme", DAY, MONTH, 5)
        first = asyncio.create_task(ledger.reserve(during, None, None))
        await asyncio.sleep(0.02)
        keys = redis_cluster.cli_call(source, "cluster", "getkeysinslot", str(slot), "100")
        for key in keys.split():
            redis_cluster.cli_call(source, "migrate", "127.0.0.1", str(target), key, "0", "5000")
        for port in redis_cluster.primaries():
            redis_cluster.cli_call(port, "cluster", "setslot", str(slot), "node", ids[target])
        assert await first
        await ledger.settle(during, 5)
        after = Hold("acme", DAY, MONTH, 7)
        assert await ledger.reserve(after, None, None)  # MOVED: followed to the new owner
        await ledger.settle(after, 7)
        spend = await ledger.spend("acme", DAY, MONTH)
        assert (spend.day_spent, spend.day_reserved) == (22, 0)
        assert ledger._redis.node_of(slot) == ("127.0.0.1", target)  # type: ignore[union-attr]
        await ledger.aclose()

    asyncio.run(scenario())


def test_a_write_redirected_by_ask_waits_for_the_new_owners_replica(
    own_cluster: RedisCluster,
) -> None:
    """While a slot migrates, a write to a key the source no longer holds is redirected with
    ASK and runs on the target. With replica acks asked for, it must wait for the target's
    replica there: with that replica paused it fails as not replicated (it used to succeed
    at once), and once the replica is back it succeeds."""
    cluster = own_cluster
    slot = key_slot(b"asking")
    source = owner_port(cluster, "asking")
    target = next(p for p in cluster.primaries() if p != source)
    ids = {p: cluster.cli_call(p, "cluster", "myid").strip() for p in (source, target)}
    cluster.cli_call(target, "cluster", "setslot", str(slot), "importing", ids[source])
    cluster.cli_call(source, "cluster", "setslot", str(slot), "migrating", ids[target])
    line = cluster.cli_call(target, "cluster", "replicas", ids[target]).split()
    replica = int(next(w for w in line if w.startswith("127.0.0.1:")).split(":")[1].split("@")[0])
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")

    async def scenario() -> None:
        client = ClusterClient(cluster.url, 1.0)
        os.kill(cluster.processes[replica].pid, signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated, match="0 of 1 replicas"):
                await client.run(script, ["{asking}:spent"], [5], replicas=1)
        finally:
            os.kill(cluster.processes[replica].pid, signal.SIGCONT)
        # The write ran on the target (a later one adds to it), and now its replica holds it.
        assert await client.run(script, ["{asking}:spent"], [2], replicas=1) == 7
        assert client.node_of(slot) == ("127.0.0.1", source)  # still migrating: ASK, not MOVED
        await client.aclose()

    asyncio.run(scenario())
