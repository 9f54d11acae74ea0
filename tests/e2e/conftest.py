"""Real llama.cpp servers with packaged weights. These tests fail (never skip silently) when
llama.cpp's server (xllamacpp) or the weights are missing; `make test` installs both. Set
RUNG_SKIP_E2E=1 to skip them on purpose."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rung.backends.local.launcher import LocalLadder, llama_cpp_available
from rung.config import RungConfig, load_config, parse_config
from rung.weights.catalog import CATALOG
from rung.weights.fetch import default_models_dir, is_verified

ROOT = Path(__file__).resolve().parents[2]


def require_real_models(*names: str) -> Path:
    if os.environ.get("RUNG_SKIP_E2E") == "1":
        pytest.skip("RUNG_SKIP_E2E=1")
    if not llama_cpp_available():
        pytest.fail("llama.cpp's server (xllamacpp) is not installed: run `make install`")
    models_dir = default_models_dir()
    for name in names:
        model = CATALOG[name]
        if not is_verified(model, models_dir / model.filename):
            pytest.fail(f"{name} weights are not installed in {models_dir}: run `make models`")
    return models_dir


@pytest.fixture(scope="module")
def local_ladder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RungConfig]:
    """The shipped config/local.yaml ladder, its llama.cpp servers running."""
    config = load_config(ROOT / "config" / "local.yaml")
    weights = [t.local.weights for t in config.tiers if t.local is not None]
    models_dir = require_real_models(*weights)
    log_dir = tmp_path_factory.mktemp("llama-logs")
    with LocalLadder(config, models_dir, log_dir, allow_fetch=False) as ladder:
        yield ladder.start()


@pytest.fixture
def start_ladder(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], LocalLadder]]:
    """Factory for a custom ladder (a config dict); its servers are stopped after the test."""
    ladders: list[LocalLadder] = []

    def start(data: dict[str, Any]) -> LocalLadder:
        config = parse_config(data, "<e2e>")
        models_dir = require_real_models(
            *(t.local.weights for t in config.tiers if t.local is not None)
        )
        ladder = LocalLadder(config, models_dir, tmp_path, allow_fetch=False)
        ladders.append(ladder)
        ladder.config = ladder.start()
        return ladder

    yield start
    for ladder in ladders:
        ladder.stop()
