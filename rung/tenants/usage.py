"""Usage records (one per request, no prompt text) and per-tier sums for the admin API, in
memory (bounded) or Redis (`rung:usage:{tenant}` lists trimmed to the bound, and
`rung:usage-sum:{tenant}:{period}` hashes)."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import orjson

from rung.tenants.redis_counters import DAY_TTL, MONTH_TTL, client, guard


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sums_update(record: UsageRecord) -> Iterable[tuple[str, str, int]]:
    """(period, field, increment) for the per-tier sums."""
    tier = record.tier or "none"
    for period in (record.day, record.month):
        yield period, f"{tier}:requests", 1
        yield period, f"{tier}:prompt_tokens", record.prompt_tokens
        yield period, f"{tier}:completion_tokens", record.completion_tokens
        yield period, f"{tier}:cost", record.cost
        yield period, f"{tier}:top_tier_cost", record.top_tier_cost
        if record.cache and record.cache.startswith("hit"):
            yield period, f"{tier}:cache_hits", 1


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


class RedisUsage:
    def __init__(self, url: str, timeout_s: float, max_records: int) -> None:
        self._redis = client(url, timeout_s)
        self.max_records = max(1, max_records)

    async def append(self, record: UsageRecord) -> None:
        async with self._redis.pipeline(transaction=False) as tx:
            key = f"rung:usage:{record.tenant}"
            tx.lpush(key, orjson.dumps(record.to_dict()))
            tx.ltrim(key, 0, self.max_records - 1)
            for period, name, value in sums_update(record):
                sums = f"rung:usage-sum:{record.tenant}:{period}"
                tx.hincrby(sums, name, value)
                tx.expire(sums, DAY_TTL if len(period) > 7 else MONTH_TTL)
            await guard(tx.execute())

    async def records(self, tenant: str, since: float) -> list[dict[str, Any]]:
        rows = await guard(self._redis.lrange(f"rung:usage:{tenant}", 0, -1))
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
        raw = await guard(self._redis.hgetall(f"rung:usage-sum:{tenant}:{period}"))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def aclose(self) -> None:
        await self._redis.aclose()
