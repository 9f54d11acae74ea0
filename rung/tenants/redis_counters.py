"""The Redis ledger and rate limiter: every check-and-add is one Lua script, so replicas sharing
a Redis admit exactly what fits. Keys under `rung:`:

- `rung:ledger:{tenant}:{period}`: hash {spent, reserved} in micro-USD, for a day (`2026-11-29`)
  and a month (`2026-11`); expire 3 days / 40 days after their last write;
- `rung:holds:{tenant}:{period}`: sorted set of live reservations (`id:amount`, scored by
  when their lease ends, Redis server time in ms); every script first releases the expired
  ones, so a reservation whose gateway crashed stops counting by itself;
- `rung:settled:{tenant}:{day}`: sorted set of the reservations settled in the last
  `SETTLED_WINDOW_S` (by id, scored by when): a settlement written again (its first reply was
  lost, or a replica had not acknowledged it) is recognised and not counted twice;
- `rung:rate:{tenant}:{minute}`: hash {requests, tokens}; expires after two minutes.

On a Redis Cluster (`redis+cluster://`) the tenant is a hash tag (`rung:ledger:{acme}:2026-11`),
so the day's and the month's keys, which every script takes together, are in one slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from rung.redisconn import FastClient, fast_client, guarded, tagger
from rung.resp import Script
from rung.tenants.counters import Admission, Hold, Spend

EXPIRE_HOLDS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, 2 do
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2 + i], '-inf', now)
  for _, member in ipairs(gone) do
    local amount = tonumber(string.match(member, ':(%d+)$'))
    redis.call('HINCRBY', KEYS[i], 'reserved', 0 - amount)
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2 + i], '-inf', now) end
end
"""

RESERVE = (
    EXPIRE_HOLDS
    + """
local amount = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
for i = 1, 2 do
  if limits[i] >= 0 then
    local used = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
      + tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
    if used + amount > limits[i] then return 0 end
  end
end
for i = 1, 2 do
  redis.call('HINCRBY', KEYS[i], 'reserved', amount)
  redis.call('EXPIRE', KEYS[i], ARGV[3 + i])
  redis.call('ZADD', KEYS[2 + i], now + tonumber(ARGV[7]), ARGV[6])
  redis.call('EXPIRE', KEYS[2 + i], ARGV[3 + i])
end
return 1
"""
)

SETTLE = (
    EXPIRE_HOLDS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[6]) * 1000)
if redis.call('ZADD', KEYS[5], 'NX', now, ARGV[5]) == 0 then return 2 end
redis.call('EXPIRE', KEYS[5], ARGV[6])
local live = 0
for i = 1, 2 do
  if redis.call('ZREM', KEYS[2 + i], ARGV[5]) == 1 then  -- an expired lease was released
    redis.call('HINCRBY', KEYS[i], 'reserved', 0 - tonumber(ARGV[1]))  -- never "-0"
    live = 1
  end
  redis.call('HINCRBY', KEYS[i], 'spent', tonumber(ARGV[2]))
  redis.call('EXPIRE', KEYS[i], ARGV[2 + i])
end
return live
"""
)

RENEW = (
    EXPIRE_HOLDS
    + """
local live = 0
for i = 1, 2 do
  if redis.call('ZSCORE', KEYS[2 + i], ARGV[1]) then
    redis.call('ZADD', KEYS[2 + i], now + tonumber(ARGV[2]), ARGV[1])
    live = 1
  end
end
return live
"""
)
"""Extends one live reservation's lease; one that ran out is not brought back."""

SPEND = (
    EXPIRE_HOLDS
    + """
local a = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local b = redis.call('HMGET', KEYS[2], 'spent', 'reserved')
return {a[1] or '0', a[2] or '0', b[1] or '0', b[2] or '0'}
"""
)

ADMIT = """
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
local rl, tl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if (rl >= 0 and requests + 1 > rl) or (tl >= 0 and tokens + n > tl) then
  return {0, requests, tokens}
end
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HINCRBY', KEYS[1], 'tokens', n)
redis.call('EXPIRE', KEYS[1], 120)
return {1, requests + 1, tokens + n}
"""

DAY_TTL, MONTH_TTL = 3 * 86_400, 40 * 86_400
SETTLED_WINDOW_S = 3_600
"""How long a settlement is remembered, to be recognised if written again (about 60 bytes a
request: some 200 MB an hour at 1,000 requests/s). One written again later than this after a
lost reply would count twice: outages longer than an hour are reconciled by hand."""


class CounterError(Exception):
    """Redis could not be reached or failed: the configured failure mode decides."""


def client(url: str, timeout_s: float) -> FastClient:
    return fast_client(url, timeout_s)


async def guard(call: Awaitable[Any]) -> Any:
    """A call of the client's (which bounds it) with its failures as CounterError."""
    return await guarded(call, CounterError, None)


def ledger_keys(tenant: str, day: str, month: str) -> list[str]:
    """The ledgers and holds of one tenant's day and month (`tenant` already tagged)."""
    return [
        f"rung:ledger:{tenant}:{day}",
        f"rung:ledger:{tenant}:{month}",
        f"rung:holds:{tenant}:{day}",
        f"rung:holds:{tenant}:{month}",
    ]


class RedisLedger:
    def __init__(self, url: str, timeout_s: float, replicas: int = 0) -> None:
        self._tag = tagger(url)
        self._redis = client(url, timeout_s)
        self._replicas = replicas
        """Replicas that must acknowledge a reservation or settlement (redis_replica_acks)."""
        self._reserve = Script(RESERVE)
        self._settle = Script(SETTLE)
        self._renew = Script(RENEW)
        self._spend = Script(SPEND)

    def _keys(self, tenant: str, day: str, month: str) -> list[str]:
        return ledger_keys(self._tag(tenant), day, month)

    async def reserve(self, hold: Hold, daily: int | None, monthly: int | None) -> bool:
        keys = self._keys(hold.tenant, hold.day, hold.month)
        limits = [-1 if daily is None else daily, -1 if monthly is None else monthly]
        member = f"{hold.id}:{hold.amount}"
        args: list[str | int] = [hold.amount, *limits, DAY_TTL, MONTH_TTL, member]
        args.append(int(hold.lease_s * 1000))
        return bool(await guard(self._redis.run(self._reserve, keys, args, self._replicas)))

    async def settle(self, hold: Hold, actual: int) -> bool:
        """Idempotent: a settlement written again (after a lost reply) counts once."""
        keys = self._keys(hold.tenant, hold.day, hold.month)
        keys.append(f"rung:settled:{self._tag(hold.tenant)}:{hold.day}")
        args: list[str | int] = [hold.amount, actual, DAY_TTL, MONTH_TTL]
        args += [f"{hold.id}:{hold.amount}", SETTLED_WINDOW_S]
        done = await guard(self._redis.run(self._settle, keys, args, self._replicas))
        return bool(done)  # 2: settled before (its first reply was lost), live then

    async def renew(self, holds: list[Hold]) -> set[str]:
        async def one(hold: Hold) -> bool:
            keys = self._keys(hold.tenant, hold.day, hold.month)
            args: list[str | int] = [f"{hold.id}:{hold.amount}", int(hold.lease_s * 1000)]
            return bool(await guard(self._redis.run(self._renew, keys, args)))

        renewed = await asyncio.gather(*(one(h) for h in holds))
        return {h.id for h, ok in zip(holds, renewed, strict=True) if not ok}

    async def spend(self, tenant: str, day: str, month: str) -> Spend:
        values = await guard(self._redis.run(self._spend, self._keys(tenant, day, month), []))
        return Spend(*(int(v or 0) for v in values))

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisRateLimiter:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._tag = tagger(url)
        self._redis = client(url, timeout_s)
        self._admit = Script(ADMIT)

    def _key(self, tenant: str, minute: int) -> str:
        return f"rung:rate:{self._tag(tenant)}:{minute}"

    async def admit(
        self,
        tenant: str,
        minute: int,
        requests_limit: int | None,
        tokens_limit: int | None,
        tokens: int,
    ) -> Admission:
        args = [
            -1 if requests_limit is None else requests_limit,
            -1 if tokens_limit is None else tokens_limit,
            tokens,
        ]
        key = self._key(tenant, minute)
        allowed, requests, used = await guard(self._redis.run(self._admit, [key], args))
        return Admission(bool(allowed), int(requests), int(used))

    async def adjust(self, tenant: str, minute: int, tokens: int) -> None:
        await guard(self._redis.call("HINCRBY", self._key(tenant, minute), "tokens", tokens))

    async def aclose(self) -> None:
        await self._redis.aclose()
