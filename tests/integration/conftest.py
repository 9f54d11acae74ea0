from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rung.backends.fake_server import FakeServer
from tests.integration.harness import LoopThread


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
