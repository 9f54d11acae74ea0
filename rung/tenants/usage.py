"""Usage records (one per request, no prompt text) and per-tier sums for the admin API, in
memory (bounded) or Redis (`rung:usage:{tenant}` lists trimmed to the bound,
`rung:usage-sum:{tenant}:{period}` hashes, and `rung:usage-ids:{tenant}`: the last hour's record
ids, so a record written again after a lost reply is stored once)."""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import orjson

from rung.redisconn import connect, guarded, tagger
from rung.resp import Script
from rung.tenants.redis_counters import (
    DAY_TTL,
    MONTH_TTL,
    SETTLED_WINDOW_S,
    CounterError,
    client,
    guard,
)


@dataclass(frozen=True)
class UsageRecord:
    tenant: str
    time: float
    tiers: list[str]
    """Every tier called, in order (fallbacks included); empty for a cache hit."""
    models: list[str]
    prompt_tokens: int
    completion_tokens: int
    cost: int
    """micro-USD charged."""
    top_tier_cost: int
    """What the same tokens would have cost on the tenant's top tier."""
    cache: str | None
    escalated: str | None
    latency_ms: float
    status: int
    tier: str = ""
    """The tier that answered (the cache hit's tier for a hit)."""
    day: str = ""
    month: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Unique: a record written again after a lost reply is stored once."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sum_fields(record: UsageRecord) -> list[tuple[str, int]]:
    """(field, increment) of one record in its period's per-tier sums (its day's and month's)."""
    tier = record.tier or "none"
    out = [
        (f"{tier}:requests", 1),
        (f"{tier}:prompt_tokens", record.prompt_tokens),
        (f"{tier}:completion_tokens", record.completion_tokens),
        (f"{tier}:cost", record.cost),
        (f"{tier}:top_tier_cost", record.top_tier_cost),
    ]
    if record.cache and record.cache.startswith("hit"):
        out.append((f"{tier}:cache_hits", 1))
    return out


def sums_update(record: UsageRecord) -> Iterable[tuple[str, str, int]]:
    """(period, field, increment) for the per-tier sums."""
    parts = sum_fields(record)
    for period in (record.day, record.month):
        for name, value in parts:
            yield period, name, value


def summarize(fields: dict[str, int]) -> dict[str, Any]:
    """Per-tier sums and the savings against sending everything to the top tier."""
    by_tier: dict[str, dict[str, int]] = defaultdict(dict)
    for name, value in fields.items():
        tier, _, metric = name.rpartition(":")
        by_tier[tier][metric] = int(value)
    cost = sum(t.get("cost", 0) for t in by_tier.values())
    top = sum(t.get("top_tier_cost", 0) for t in by_tier.values())
    return {
        "requests": sum(t.get("requests", 0) for t in by_tier.values()),
        "cost_usd": cost / 1e6,
        "top_tier_cost_usd": top / 1e6,
        "saved_usd": (top - cost) / 1e6,
        "by_tier": {
            tier: {**v, "cost_usd": v.get("cost", 0) / 1e6} for tier, v in sorted(by_tier.items())
        },
    }


class UsageLog(Protocol):
    async def append(self, record: UsageRecord) -> None: ...

    async def records(self, tenant: str, since: float) -> list[dict[str, Any]]: ...

    async def sums(self, tenant: str, period: str) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


_FIELDS = tuple(f.name for f in fields(UsageRecord))
_LISTS = tuple(i for i, f in enumerate(_FIELDS) if f in ("tiers", "models"))
_EXTRA, _TENANT, _TIME = (_FIELDS.index(n) for n in ("extra", "tenant", "time"))
Packed = tuple[Any, ...]


def pack(record: UsageRecord) -> Packed:
    """A record as one flat tuple (lists as tuples, `extra` as its items): about half the memory
    of the dataclass, and a tuple of plain values is one the garbage collector stops tracking,
    so 100,000 kept records cost its full passes nothing."""
    values = [getattr(record, name) for name in _FIELDS]
    for i in _LISTS:
        values[i] = tuple(values[i])
    values[_EXTRA] = tuple(record.extra.items())
    return tuple(values)


def unpack(packed: Packed) -> dict[str, Any]:
    """What `UsageRecord.to_dict` gives for the record `pack` was given."""
    row = dict(zip(_FIELDS, packed, strict=True))
    for i in _LISTS:
        row[_FIELDS[i]] = list(packed[i])
    row["extra"] = dict(packed[_EXTRA])
    return row


class MemoryUsage:
    def __init__(self, max_records: int) -> None:
        self._records: deque[Packed] = deque(maxlen=max(1, max_records))
        self._sums: dict[tuple[str, str], dict[str, int]] = {}

    async def append(self, record: UsageRecord) -> None:
        self._records.append(pack(record))
        for period, name, value in sums_update(record):
            sums = self._sums.setdefault((record.tenant, period), defaultdict(int))
            sums[name] += value

    async def records(self, tenant: str, since: float) -> list[dict[str, Any]]:
        return [unpack(r) for r in self._records if r[_TENANT] == tenant and r[_TIME] >= since]

    async def sums(self, tenant: str, period: str) -> dict[str, int]:
        return dict(self._sums.get((tenant, period), {}))

    async def aclose(self) -> None:
        return None


APPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[6]))
if redis.call('ZADD', KEYS[4], 'NX', now, ARGV[5]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[4], ARGV[6])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for i = 2, 3 do
  for j = 7, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[i], ARGV[j], ARGV[j + 1])
  end
  redis.call('EXPIRE', KEYS[i], ARGV[i + 1])
end
"""
"""One record: push it, trim the list to the bound, add it to its day's and its month's sums;
unless its id was written in the last SETTLED_WINDOW_S (written again after a lost reply). One
script rather than a pipeline of some 25 commands: the gateway's CPU per request is mostly
the client's per-command work."""


READ_TIMEOUT_S = 10.0
"""The admin and dashboard reads of a usage log (up to `usage_records_max` records: tens of MB)
have their own connection and deadline: they neither wait behind the request path's calls nor
hold them up, and a long log is not cut off by the request path's deadline."""


class RedisUsage:
    def __init__(self, url: str, timeout_s: float, max_records: int, replicas: int = 0) -> None:
        self._tag = tagger(url)
        self._replicas = replicas
        self._redis = client(url, timeout_s)
        self._reads = connect(url, timeout_s)
        self.max_records = max(1, max_records)
        self._append = Script(APPEND)

    async def append(self, record: UsageRecord) -> None:
        tenant = self._tag(record.tenant)  # one slot for the script's keys (cluster)
        keys = [
            f"rung:usage:{tenant}",
            f"rung:usage-sum:{tenant}:{record.day}",
            f"rung:usage-sum:{tenant}:{record.month}",
            f"rung:usage-ids:{tenant}",
        ]
        args: list[bytes | str | int] = [
            orjson.dumps(record),  # a dataclass: orjson writes what asdict() would, faster
            self.max_records,
            DAY_TTL,
            MONTH_TTL,
            record.id,
            SETTLED_WINDOW_S,
        ]
        for name, value in sum_fields(record):
            args += (name, value)
        await guard(self._redis.run(self._append, keys, args, self._replicas))

    async def records(self, tenant: str, since: float) -> list[dict[str, Any]]:
        key = f"rung:usage:{self._tag(tenant)}"
        rows = await guarded(self._reads.lrange(key, 0, -1), CounterError, READ_TIMEOUT_S)
        out = []
        for raw in reversed(rows):  # oldest first
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("time", 0) >= since:
                out.append(row)
        return out

    async def sums(self, tenant: str, period: str) -> dict[str, int]:
        key = f"rung:usage-sum:{self._tag(tenant)}:{period}"
        raw = await guarded(self._reads.hgetall(key), CounterError, READ_TIMEOUT_S)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._reads.aclose()
