"""The composition root: builds pools, chooser and pipeline from the config, owns their lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rung import __version__
from rung.backends import TierPool, probe_forever
from rung.config import RungConfig, load_config
from rung.router import errors
from rung.router.api import router
from rung.router.decide import LengthChooser
from rung.router.pipeline import Pipeline


def create_app(config: RungConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pools = [TierPool(tier, config.health) for tier in config.tiers]
        for pool in pools:
            await pool.start()
        await asyncio.gather(*(pool.probe() for pool in pools))
        chooser = LengthChooser(tuple(config.routing.length_thresholds), len(config.tiers))
        app.state.pipeline = Pipeline(config, pools, chooser)
        app.state.started = int(time.time())
        prober = asyncio.create_task(probe_forever(pools, config.health.interval_s))
        try:
            yield
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            for pool in pools:
                await pool.aclose()

    app = FastAPI(
        title="rung", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(router)
    errors.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory rung.router.app:app_from_env` (several workers)."""
    return create_app(load_config(os.environ["RUNG_CONFIG"]))
