"""The limits store registry: `limits.store` names one; the gate never asks which."""

from __future__ import annotations

from rung.config import LimitsConfig
from rung.tenants.counters import Ledger, MemoryLedger, MemoryRateLimiter, RateLimiter
from rung.tenants.usage import MemoryUsage, UsageLog


def build_stores(limits: LimitsConfig) -> tuple[Ledger, RateLimiter, UsageLog]:
    if limits.store == "memory":
        return MemoryLedger(), MemoryRateLimiter(), MemoryUsage(limits.usage_records_max)
    from rung.tenants.redis_counters import RedisLedger, RedisRateLimiter
    from rung.tenants.usage import RedisUsage

    url = limits.redis_url.get_secret_value()
    timeout = limits.redis_timeout_ms / 1000
    acks = limits.redis_replica_acks
    return (
        RedisLedger(url, timeout, acks),
        RedisRateLimiter(url, timeout),
        RedisUsage(url, timeout, limits.usage_records_max, acks),
    )
