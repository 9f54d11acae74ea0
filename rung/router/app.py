"""The composition root: builds pools, chooser and pipeline from the config, owns their lifetime."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from rung import __version__
from rung.config import RungConfig, load_config
from rung.router import errors, heap
from rung.router.admin import admin
from rung.router.api import router
from rung.router.checks import check_routing, prepare_routing
from rung.router.dashboard import dashboard
from rung.router.fast import RungApp
from rung.router.logs import configure_logging
from rung.router.metrics import Metrics
from rung.router.monitor import health_state, monitor
from rung.router.reload import Reloader
from rung.router.runtime import Runtime, build_routing
from rung.router.threads import one_blas_thread
from rung.router.tracing import Tracing

log = logging.getLogger("rung.router")
__all__ = ["build_routing", "check_routing", "create_app", "prepare_routing"]


def create_app(config: RungConfig, source: Path | None = None, serving: bool = False) -> FastAPI:
    """The gateway. With `source` (the config file) it can reload: POST /admin/reload, SIGHUP,
    or the file changing. With `serving` (the app of a `rung serve` process or worker) the
    startup heap is frozen out of the garbage collector's full passes (rung.router.heap) and
    numpy's BLAS runs on one thread (rung.router.threads)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # `server.metrics: off` records nothing (bench/compare.py measures the difference).
        app.state.metrics = (
            Metrics(lambda: health_state(app.state.runtime))
            if config.server.metrics != "off"
            else None
        )
        checked = app.state.metrics.shadow_checked if app.state.metrics is not None else None
        # No local name for it: the generator's frame lives as long as the app and would keep
        # the first runtime alive after a reload has retired it.
        app.state.runtime = await Runtime.build(config, checked=checked)
        app.state.source = source
        app.state.tracing = Tracing(config.tracing) if config.tracing.exporter != "none" else None
        app.state.started = int(time.time())
        if serving:
            one_blas_thread()
            heap.freeze()
        reloader = Reloader(app, source, serving) if source is not None else None
        if reloader is not None:
            reloader.start()
        try:
            yield
        finally:
            if reloader is not None:
                await reloader.aclose()
            await app.state.runtime.aclose()
            if app.state.tracing is not None:
                app.state.tracing.shutdown()  # flushes the spans still batched

    app = RungApp(
        title="rung", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(router)
    app.include_router(admin)
    app.include_router(monitor)
    app.include_router(dashboard)
    errors.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory rung.router.app:app_from_env` (several workers)."""
    path = Path(os.environ["RUNG_CONFIG"])
    config = load_config(path)
    configure_logging(config.server.log_level, config.server.log_format)  # a fresh process
    return create_app(config, path, serving=True)
