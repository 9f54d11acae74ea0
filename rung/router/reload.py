"""Reloading the config file on POST /admin/reload, SIGHUP or a change to the file: a new
runtime is built (reusing what did not change) and swapped in, the old one retired once its
requests are done; an invalid file is refused and the old config keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from rung.config import load_config
from rung.errors import ConfigError
from rung.router import heap
from rung.router.checks import check_routing
from rung.router.runtime import Runtime

log = logging.getLogger("rung.router")
WATCH_INTERVAL_S = 2.0


class Reloader:
    """Reloads the config file on POST /admin/reload, SIGHUP, or when the file changes. The new
    file is validated completely first; an invalid one is refused (its errors logged and
    returned) and the old config keeps serving."""

    def __init__(self, app: FastAPI, source: Path, refreeze: bool = False) -> None:
        self.app = app
        self.source = source
        self.refreeze = refreeze
        """Refreeze the heap once a retired runtime is gone (a frozen serving process)."""
        self.lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._mtime = self._stat()
        app.state.reloader = self

    def _stat(self) -> float:
        try:
            return self.source.stat().st_mtime
        except OSError:
            return 0.0

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._watch()))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading %s", self.source)
        self._spawn(self.reload)

    def _spawn(self, job: Callable[[], Any]) -> None:
        task = asyncio.create_task(job())
        self._tasks.append(task)

        def forget(done: asyncio.Task[Any]) -> None:
            if done in self._tasks:
                self._tasks.remove(done)

        task.add_done_callback(forget)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                log.info("%s changed: reloading", self.source)
                await self.reload()

    async def reload(self) -> dict[str, Any]:
        """Returns {"reloaded": true} or {"reloaded": false, "errors": [...]}."""
        async with self.lock:
            self._mtime = self._stat()
            old: Runtime = self.app.state.runtime
            try:
                config = load_config(self.source)
                # The listening address cannot change under a running server.
                server = config.server.model_copy(
                    update={"host": old.config.server.host, "port": old.config.server.port}
                )
                config = config.model_copy(update={"server": server})
                check_routing(config)
                new = await Runtime.build(config, old)
            except ConfigError as exc:
                log.warning("reload refused, still serving the old config: %s", exc.message)
                return {"reloaded": False, "errors": exc.errors}
            except Exception as exc:  # e.g. a classifier file that does not load
                log.warning("reload failed, still serving the old config: %s", exc)
                return {"reloaded": False, "errors": [f"{type(exc).__name__}: {exc}"]}
            self.app.state.runtime = new
            self._spawn(lambda: self._retire(old))
            log.info("reloaded %s", self.source)
            return {"reloaded": True}

    async def _retire(self, old: Runtime) -> None:
        await old.retire()
        if self.refreeze:
            heap.refreeze()  # the old runtime's cycles become collectable again

    async def aclose(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
