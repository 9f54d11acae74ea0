"""One way to talk to Redis for every store (cache, ledger, rate limits, usage): the client
settings, one Redis or a Redis Cluster (`redis+cluster://`), the keys' hash tags, and the
translation of Redis and socket failures into the store's own error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from rung.resp import Client
from rung.resp_cluster import ClusterClient, is_cluster, parse_cluster_url

Redis = aioredis.Redis | RedisCluster
FastClient = Client | ClusterClient


def _hash_tag(name: str) -> str:
    return "{" + name + "}"


def _as_is(name: str) -> str:
    return name


def tagger(url: str) -> Callable[[str], str]:
    """How keys name a tenant at `url`, decided once per store: on a cluster `{name}` (a hash
    tag, so every key of one tenant is in one slot and one script may touch them all),
    elsewhere as it is (the key names rung has always used: nothing to migrate on one Redis)."""
    return _hash_tag if is_cluster(url) else _as_is


def fast_client(url: str, timeout_s: float, connect_timeout_s: float | None = None) -> FastClient:
    """The request path's pipelined client (rung.resp) for one Redis or a cluster."""
    if is_cluster(url):
        return ClusterClient(url, timeout_s, connect_timeout_s)
    return Client(url, timeout_s, connect_timeout_s)


def connect(url: str, timeout_s: float) -> Redis:
    """A client that fails fast: the stores decide what a failure means, not redis-py.

    Connecting is bounded by `timeout_s`; a command is bounded by the caller (`guarded`), not
    by redis-py's `socket_timeout`: that wraps every send and every read in `asyncio.wait_for`,
    a task and extra loop turns each, about a quarter of a command's CPU in the gateway. A
    command cut short by its deadline drops its connection (redis-py's own rule on
    cancellation), so no late reply is ever read as another command's.
    """
    if is_cluster(url):
        seeds = parse_cluster_url(url)
        first = seeds[0]
        return RedisCluster(
            startup_nodes=[ClusterNode(s.host, s.port) for s in seeds],
            username=first.username,
            password=first.password,
            ssl=first.tls,
            socket_timeout=None,
            socket_connect_timeout=timeout_s,
            require_full_coverage=False,
            retry=Retry(NoBackoff(), 2),  # a redirection or a failover: map again, twice
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),  # once, at once: a connection gone stale after a restart
    )


async def guarded(call: Awaitable[Any], error: type[Exception], timeout_s: float | None) -> Any:
    """Await a Redis call within `timeout_s` (None: the call's own, `rung.resp`'s clients);
    any Redis or socket failure, a missed deadline included, is raised as `error`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except TimeoutError as exc:
        if timeout_s is None:  # the call's own deadline (rung.resp), which says what it was
            raise error(str(exc) or "redis: no reply in time") from None
        raise error(f"redis: no reply within {timeout_s:g}s") from None
    except (RedisError, OSError) as exc:
        raise error(f"redis: {exc}") from None
