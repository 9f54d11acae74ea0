"""The Redis cache store: entries shared by every gateway replica.

Layout (all under the `rung:` prefix; on a Redis Cluster the tenant is a hash tag, `{acme}`, so
one tenant's keys share a slot and the put script may touch them all):

- `rung:cache:{tenant}:{key}`: one hash per entry (`meta` JSON, `body`, `vector` as float32
  bytes), expiring after the TTL;
- `rung:cache-keys:{tenant}`: sorted set of the tenant's keys by creation time (bounds the tenant
  to `max_entries`, oldest out first, and lists its entries for index rebuilds);
- `rung:cache-bytes:{tenant}`: hash key -> entry size, for stats;
- channel `rung:cache:events` (plain pub/sub: a cluster forwards it to every node): every put and
  purge, so other replicas' in-process vector indexes
  follow (`{"origin", "tenant", "key"}`, key null for a purge; a put also carries the entry's
  scope, question, tier and base64 float32 vector when the question is at most
  `ANNOUNCE_MAX_TEXT` characters, so the replicas index it without reading it).

Redis 7.0 (Debian's) has no vector search: the search stays in each replica's process. Any Redis
or socket failure is raised as `StoreError`; the cache bypasses itself and recovers.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from rung.cache.entry import BadEntry, Entry, decode
from rung.cache.store import Announced, Change, StoreError
from rung.redisconn import Redis, connect, fast_client, guarded, tagger
from rung.resp import Script, pairs
from rung.resp_cluster import is_cluster

PREFIX = "rung:"
CHANNEL = f"{PREFIX}cache:events"
BATCH = 500

PUT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
end
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if extra > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #popped, 2 do
    gone[#gone + 1] = popped[i]
    redis.call('DEL', ARGV[7] .. popped[i])
  end
end
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[3], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('PUBLISH', ARGV[8], ARGV[9])
return gone
"""
"""One entry in, in one script: store it, forget the keys whose entries Redis has expired, keep
the newest `max_entries` (the evicted entries deleted), tell the other replicas. Returns the
keys that left. Atomic, and one round trip where two transactions were (a replica's put could
interleave with another's between them)."""


DELETE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
"""
"""One entry out, with its place in the tenant's key list and sizes (one slot on a cluster)."""

FORGET = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
"""
"""A purge's last step: the tenant's key list and sizes gone, and the replicas told, from the
node that holds the tenant's slot (a cluster forwards each node's messages in order, so no
replica hears the purge before a put that came first)."""


class Layout:
    """The store's key names for one Redis URL (hash-tagged by tenant on a cluster)."""

    def __init__(self, url: str) -> None:
        self.cluster = is_cluster(url)
        self.tag = tagger(url)

    def entry(self, tenant: str, key: str) -> str:
        return f"{PREFIX}cache:{self.tag(tenant)}:{key}"

    def keys_of(self, tenant: str) -> str:
        return f"{PREFIX}cache-keys:{self.tag(tenant)}"

    def bytes_of(self, tenant: str) -> str:
        return f"{PREFIX}cache-bytes:{self.tag(tenant)}"

    def tenant_of(self, keys_key: str) -> str:
        name = keys_key.removeprefix(f"{PREFIX}cache-keys:")
        if self.cluster and name.startswith("{") and name.endswith("}"):
            return name[1:-1]
        return name


ANNOUNCE_MAX_TEXT = 4096
"""Questions up to this many characters travel with their announcement (a longer one is read
by the replicas that hear of it: pub/sub messages stay small for Redis's output buffers)."""


def announcement(origin: str, entry: Entry, vector: bytes | None) -> bytes:
    """The channel message for a stored entry: who stored it, where, and (when small enough)
    what the other replicas' indexes need of it (`vector`: the entry's encoded vector field)."""
    event: dict[str, Any] = {"origin": origin, "tenant": entry.tenant, "key": entry.key}
    if vector is not None and len(entry.text) <= ANNOUNCE_MAX_TEXT:
        event |= {
            "scope": entry.scope,
            "text": entry.text,
            "tier": entry.tier,
            "vector": base64.b64encode(vector).decode(),
        }
    return orjson.dumps(event)


def announced_in(event: dict[str, Any], dimension: int | None) -> Announced | None:
    """The index data an announcement carries, if it is whole and well formed (else None: the
    entry is read from Redis instead)."""
    try:
        scope, text, tier = event["scope"], event["text"], event["tier"]
        vector = np.frombuffer(base64.b64decode(event["vector"], validate=True), dtype="<f4")
    except (KeyError, TypeError, ValueError):  # binascii.Error is a ValueError
        return None
    if not all(isinstance(v, str) for v in (scope, text, tier)):
        return None
    if not len(vector) or (dimension is not None and len(vector) != dimension):
        return None
    return Announced(scope, text, tier, vector.astype(np.float32))


class RedisStore:
    def __init__(
        self,
        url: str,
        max_entries: int,
        ttl_s: float,
        timeout_s: float = 0.05,
        dimension: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.dimension = dimension
        self.clock = clock
        self.origin = uuid.uuid4().hex
        self._timeout_s = max(timeout_s, 0.5)
        """The deadline of the calls off the request path (index re-reads, stats, purges)."""
        self._client: Redis = connect(url, self._timeout_s)
        self._fast = fast_client(url, timeout_s)
        """The request path's two calls (read an entry, store one), within `timeout_s`."""
        self._put = Script(PUT)
        self._delete = Script(DELETE)
        self._forget = Script(FORGET)
        self._keys = Layout(url)

    async def _guard(self, call: Awaitable[Any]) -> Any:
        return await guarded(call, StoreError, self._timeout_s)

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        """A call of the request path's client, which bounds it by the cache's deadline."""
        return await guarded(call, StoreError, None)

    async def start(self) -> None:
        await self._guard(self._client.ping())

    async def get(self, tenant: str, key: str) -> Entry | None:
        reply = await self._bounded(self._fast.call("HGETALL", self._keys.entry(tenant, key)))
        fields = pairs(reply)
        if not fields:
            return None
        try:
            entry = decode(fields, tenant, self.dimension)
        except BadEntry:
            await self.delete(tenant, key)  # corrupt or foreign: skipped, never served
            return None
        if entry.key != key or self.clock() - entry.created > self.ttl_s:
            await self.delete(tenant, key)
            return None
        return entry

    async def put(self, entry: Entry) -> list[str]:
        tenant = entry.tenant
        encoded = entry.encode()
        fields: list[bytes | str | float | int] = []
        for name, value in encoded.items():
            fields += (name, value)
        message = announcement(self.origin, entry, encoded.get("vector"))  # its bytes, once
        layout = self._keys
        keys = [layout.entry(tenant, entry.key), layout.keys_of(tenant), layout.bytes_of(tenant)]
        args = [
            max(1, int(self.ttl_s)),
            entry.created,
            entry.key,
            entry.size,
            self.clock() - self.ttl_s,
            self.max_entries,
            layout.entry(tenant, ""),
            CHANNEL,
            message,
            *fields,
        ]
        evicted = await self._bounded(self._fast.run(self._put, keys, args))
        return [k.decode() for k in evicted]

    async def delete(self, tenant: str, key: str) -> None:
        layout = self._keys
        keys = [layout.entry(tenant, key), layout.keys_of(tenant), layout.bytes_of(tenant)]
        await self._bounded(self._fast.run(self._delete, keys, [key]))

    async def purge(self, tenant: str) -> int:
        layout = self._keys
        listed = await self._guard(self._client.zrange(layout.keys_of(tenant), 0, -1))
        keys = [k.decode() for k in listed]
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]  # one tenant's: one slot on a cluster
            await self._guard(self._client.delete(*(layout.entry(tenant, k) for k in batch)))
        message = orjson.dumps({"origin": self.origin, "tenant": tenant, "key": None})
        keys = [layout.keys_of(tenant), layout.bytes_of(tenant)]
        await self._guard(self._fast.run(self._forget, keys, [CHANNEL, message]))
        return len(keys)

    async def _tenants(self) -> list[str]:
        """Every tenant with cached entries (on a cluster: scanned on every primary)."""
        pattern = f"{PREFIX}cache-keys:*"
        found = [k async for k in self._client.scan_iter(match=pattern, count=500)]
        return sorted({self._keys.tenant_of(k.decode()) for k in found})

    async def entries(self) -> AsyncIterator[Entry]:
        layout = self._keys
        tenants = await guarded(self._tenants(), StoreError, 20 * self._timeout_s)
        for tenant in tenants:
            keys = await self._guard(self._client.zrange(layout.keys_of(tenant), 0, -1))
            for start in range(0, len(keys), BATCH):
                batch = [k.decode() for k in keys[start : start + BATCH]]
                async with self._client.pipeline(transaction=False) as tx:
                    for key in batch:
                        tx.hgetall(layout.entry(tenant, key))
                    rows = await self._guard(tx.execute())
                for key, fields in zip(batch, rows, strict=True):
                    if not fields:
                        continue
                    try:
                        entry = decode(fields, tenant, self.dimension)
                    except BadEntry:
                        continue
                    if entry.key == key and self.clock() - entry.created <= self.ttl_s:
                        yield entry

    async def usage(self, tenant: str) -> tuple[int, int]:
        layout = self._keys
        async with self._client.pipeline(transaction=False) as tx:
            tx.zremrangebyscore(layout.keys_of(tenant), "-inf", self.clock() - self.ttl_s)
            tx.zcard(layout.keys_of(tenant))
            tx.hvals(layout.bytes_of(tenant))
            _, count, sizes = await self._guard(tx.execute())
        return int(count), sum(int(s) for s in sizes)

    async def watch(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._guard(pubsub.subscribe(CHANNEL))
            if on_subscribed is not None:
                on_subscribed()
            while True:
                # get_message has its own deadline: no message within it is None, not a fault
                message = await guarded(pubsub.get_message(timeout=1.0), StoreError, None)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    event = orjson.loads(message["data"])
                    tenant, key = str(event["tenant"]), event["key"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
                if event.get("origin") != self.origin:
                    announced = announced_in(event, self.dimension) if key is not None else None
                    await on_change(Change(tenant, None if key is None else str(key), announced))
        finally:
            await pubsub.aclose()

    async def aclose(self) -> None:
        await self._fast.aclose()
        await self._client.aclose()
