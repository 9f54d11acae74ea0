"""One way to talk to Redis for every store (cache, ledger, rate limits, usage): the client
settings and the translation of Redis and socket failures into the store's own error."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError


def connect(url: str, timeout_s: float) -> aioredis.Redis:
    """A client that fails fast: the stores decide what a failure means, not redis-py."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),  # once, at once: a connection gone stale after a restart
    )


async def guarded(call: Awaitable[Any], error: type[Exception]) -> Any:
    """Await a Redis call; any Redis or socket failure is raised as `error`."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise error(f"redis: {exc}") from None
