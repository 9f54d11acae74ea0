from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rung.backends.fake_server import FakeServer
from rung.config import RungConfig
from tests.integration.harness import Gateway, LoopThread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[Callable[..., FakeServer]]:
    """Factory: start a fake model server on a free port; all are stopped after the test."""
    started: list[FakeServer] = []

    def start(name: str = "fake", model: str | None = None) -> FakeServer:
        server = FakeServer(name=name, model=model or f"{name}-model")
        loop_thread.run(server.start())
        started.append(server)
        return server

    yield start
    for server in started:
        loop_thread.run(server.stop())


@pytest.fixture
def gateway(loop_thread: LoopThread) -> Iterator[Callable[[RungConfig], Gateway]]:
    started: list[Gateway] = []

    def start(config: RungConfig) -> Gateway:
        gw = Gateway(loop_thread, config)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
