"""Real servers on 127.0.0.1 for integration tests: scriptable fake model servers and rung itself,
running on one background event loop so that tests drive them with the (sync) openai SDK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import openai
import uvicorn
from pydantic import SecretStr

from rung.backends.fake_server import FakeServer
from rung.config import RungConfig, parse_config
from rung.ports import free_port
from rung.router import create_app
from rung.router.protocol import bounded

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def tier(name: str, *servers: FakeServer, **backend: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": servers[0].model,
        "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        "backends": [{"url": s.url, **backend} for s in servers],
    }


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(v) for v in value]
    return value


def write_config(config: RungConfig, path: Path) -> Path:
    """`config` as a file rung can load again: secrets written as they are (a plain
    `model_dump` masks them as `**********`, which is not a Redis URL or a key)."""
    path.write_text(json.dumps(_revealed(config.model_dump(mode="python")), default=str))
    return path


def make_config(tiers: list[dict[str, Any]], **sections: Any) -> RungConfig:
    data: dict[str, Any] = {
        "server": {"request_timeout_s": 10},
        "health": {
            "interval_s": 0.2,
            "probe_timeout_s": 0.5,
            "failure_threshold": 1,
            "cooldown_s": 0.5,
        },
        "routing": {"policy": "length", "length_thresholds": [100, 1000][: len(tiers) - 1]},
        # Off unless a test is about the cache: a hit would hide what the backends did.
        "cache": {"enabled": False},
        "tiers": tiers,
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, "<test>")


class Gateway:
    """rung served by uvicorn on a free loopback port."""

    def __init__(
        self,
        loop: LoopThread,
        config: RungConfig,
        source: Path | None = None,
        serving: bool = False,
    ) -> None:
        self.loop = loop
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(config, source, serving)
        edge = config.server
        uv_config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            http=bounded(edge.header_timeout_s, edge.max_header_bytes),  # as `rung serve` does
        )
        self.server = uvicorn.Server(uv_config)
        self.future = asyncio.run_coroutine_threadsafe(self.server.serve(), loop.loop)
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self.future.done():
                self.future.result()
            if time.monotonic() > deadline:
                raise TimeoutError("rung did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.future.result(15)


def drain(stream: Any, received: list[str]) -> None:
    """Iterate a streamed completion, appending each chunk's text to `received`, which keeps what
    came before an error raised mid-stream."""
    for chunk in stream:
        if chunk.choices:
            received.append(chunk.choices[0].delta.content or "")


def wait_until(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def client(gw: Gateway, **kwargs: Any) -> openai.OpenAI:
    """The official SDK pointed at rung; no SDK retries, so tests see rung's own behaviour."""
    return openai.OpenAI(**{"base_url": gw.url + "/v1", "api_key": "unused", "max_retries": 0,
                            **kwargs})  # fmt: skip
