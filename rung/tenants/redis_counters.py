"""The Redis ledger and rate limiter: every check-and-add is one Lua script, so replicas sharing
a Redis admit exactly what fits. Keys under `rung:`:

- `rung:ledger:{tenant}:{period}`: hash {spent, reserved} in micro-USD, for a day (`2026-11-29`)
  and a month (`2026-11`); expire 3 days / 40 days after their last write;
- `rung:holds:{tenant}:{period}`: sorted set of live reservations (`id:amount`, scored by
  when their lease ends, Redis server time in ms); every script first releases the expired
  ones, so a reservation whose gateway crashed stops counting by itself;
- `rung:rate:{tenant}:{minute}`: hash {requests, tokens}; expires after two minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from rung.redisconn import guarded
from rung.resp import Client, Script
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


class CounterError(Exception):
    """Redis could not be reached or failed: the configured failure mode decides."""


def client(url: str, timeout_s: float) -> Client:
    return Client(url, timeout_s)


async def guard(call: Awaitable[Any]) -> Any:
    """A call of the client's (which bounds it) with its failures as CounterError."""
    return await guarded(call, CounterError, None)


def _key(tenant: str, period: str) -> str:
    return f"rung:ledger:{tenant}:{period}"


def _keys(tenant: str, day: str, month: str) -> list[str]:
    return [
        _key(tenant, day),
        _key(tenant, month),
        f"rung:holds:{tenant}:{day}",
        f"rung:holds:{tenant}:{month}",
    ]


class RedisLedger:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = client(url, timeout_s)
        self._reserve = Script(RESERVE)
        self._settle = Script(SETTLE)
        self._renew = Script(RENEW)
        self._spend = Script(SPEND)

    async def reserve(self, hold: Hold, daily: int | None, monthly: int | None) -> bool:
        keys = _keys(hold.tenant, hold.day, hold.month)
        limits = [-1 if daily is None else daily, -1 if monthly is None else monthly]
        member = f"{hold.id}:{hold.amount}"
        args: list[str | int] = [hold.amount, *limits, DAY_TTL, MONTH_TTL, member]
        args.append(int(hold.lease_s * 1000))
        return bool(await guard(self._redis.run(self._reserve, keys, args)))

    async def settle(self, hold: Hold, actual: int) -> bool:
        keys = _keys(hold.tenant, hold.day, hold.month)
        args: list[str | int] = [hold.amount, actual, DAY_TTL, MONTH_TTL]
        args.append(f"{hold.id}:{hold.amount}")
        return bool(await guard(self._redis.run(self._settle, keys, args)))

    async def renew(self, holds: list[Hold]) -> set[str]:
        async def one(hold: Hold) -> bool:
            keys = _keys(hold.tenant, hold.day, hold.month)
            args: list[str | int] = [f"{hold.id}:{hold.amount}", int(hold.lease_s * 1000)]
            return bool(await guard(self._redis.run(self._renew, keys, args)))

        renewed = await asyncio.gather(*(one(h) for h in holds))
        return {h.id for h, ok in zip(holds, renewed, strict=True) if not ok}

    async def spend(self, tenant: str, day: str, month: str) -> Spend:
        values = await guard(self._redis.run(self._spend, _keys(tenant, day, month), []))
        return Spend(*(int(v or 0) for v in values))

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisRateLimiter:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = client(url, timeout_s)
        self._admit = Script(ADMIT)

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
        key = f"rung:rate:{tenant}:{minute}"
        allowed, requests, used = await guard(self._redis.run(self._admit, [key], args))
        return Admission(bool(allowed), int(requests), int(used))

    async def adjust(self, tenant: str, minute: int, tokens: int) -> None:
        await guard(self._redis.call("HINCRBY", f"rung:rate:{tenant}:{minute}", "tokens", tokens))

    async def aclose(self) -> None:
        await self._redis.aclose()
