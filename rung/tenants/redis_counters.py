"""The Redis ledger and rate limiter: every check-and-add is one Lua script, so replicas sharing
a Redis admit exactly what fits. Keys under `rung:`:

- `rung:ledger:{tenant}:{period}`: hash {spent, reserved} in micro-USD, for a day (`2026-11-29`)
  and a month (`2026-11`); expire 3 days / 40 days after their last write;
- `rung:rate:{tenant}:{minute}`: hash {requests, tokens}; expires after two minutes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis

from rung.redisconn import connect, guarded
from rung.tenants.counters import Admission, Hold, Spend

RESERVE = """
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
end
return 1
"""

SETTLE = """
for i = 1, 2 do
  redis.call('HINCRBY', KEYS[i], 'reserved', 0 - tonumber(ARGV[1]))  -- never "-0"
  redis.call('HINCRBY', KEYS[i], 'spent', tonumber(ARGV[2]))
  redis.call('EXPIRE', KEYS[i], ARGV[2 + i])
end
return 1
"""

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


def client(url: str, timeout_s: float) -> aioredis.Redis:
    return connect(url, timeout_s)


async def guard(call: Awaitable[Any]) -> Any:
    return await guarded(call, CounterError)


def _key(tenant: str, period: str) -> str:
    return f"rung:ledger:{tenant}:{period}"


class RedisLedger:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = client(url, timeout_s)
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)

    async def reserve(self, hold: Hold, daily: int | None, monthly: int | None) -> bool:
        keys = [_key(hold.tenant, hold.day), _key(hold.tenant, hold.month)]
        limits = [-1 if daily is None else daily, -1 if monthly is None else monthly]
        args = [hold.amount, *limits, DAY_TTL, MONTH_TTL]
        return bool(await guard(self._reserve(keys=keys, args=args)))

    async def settle(self, hold: Hold, actual: int) -> None:
        keys = [_key(hold.tenant, hold.day), _key(hold.tenant, hold.month)]
        await guard(self._settle(keys=keys, args=[hold.amount, actual, DAY_TTL, MONTH_TTL]))

    async def spend(self, tenant: str, day: str, month: str) -> Spend:
        async with self._redis.pipeline(transaction=False) as tx:
            tx.hmget(_key(tenant, day), ["spent", "reserved"])
            tx.hmget(_key(tenant, month), ["spent", "reserved"])
            (ds, dr), (ms, mr) = await guard(tx.execute())
        return Spend(*(int(v or 0) for v in (ds, dr, ms, mr)))

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisRateLimiter:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = client(url, timeout_s)
        self._admit = self._redis.register_script(ADMIT)

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
        allowed, requests, used = await guard(self._admit(keys=[key], args=args))
        return Admission(bool(allowed), int(requests), int(used))

    async def adjust(self, tenant: str, minute: int, tokens: int) -> None:
        await guard(self._redis.hincrby(f"rung:rate:{tenant}:{minute}", "tokens", tokens))

    async def aclose(self) -> None:
        await self._redis.aclose()
