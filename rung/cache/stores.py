"""The store registry: the config's `cache.store` names one; the pipeline never asks which."""

from __future__ import annotations

from collections.abc import Callable

from rung.cache.store import CacheStore, MemoryStore
from rung.config import CacheConfig


def _memory(config: CacheConfig, dimension: int | None) -> CacheStore:
    return MemoryStore(config.max_entries_per_tenant, config.max_bytes_per_tenant, config.ttl_s)


def _redis(config: CacheConfig, dimension: int | None) -> CacheStore:
    from rung.cache.redis_store import RedisStore

    return RedisStore(
        config.redis_url.get_secret_value(),
        config.max_entries_per_tenant,
        config.ttl_s,
        config.redis_timeout_ms / 1000,
        dimension,
    )


STORES: dict[str, Callable[[CacheConfig, int | None], CacheStore]] = {
    "memory": _memory,
    "redis": _redis,
}
