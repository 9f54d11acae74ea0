"""Everything the gateway serves with, built from one config, and rebuilt on reload.

A `Runtime` holds the tier pools, the routing chooser and embedder, the cache and the tenant
gate for one config. Requests take the runtime current when they start and finish on it; a
reload builds a new one (reusing what did not change: pools, the embedder, the cache, the
ledger stores, so budgets and breakers carry over), swaps it in, and closes what the old one
alone held once its last request is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rung.backends import TierPool, probe_forever
from rung.cache.semantic import SemanticCache, Verify
from rung.cache.stores import STORES
from rung.cache.verifier import load_verifier, resolve_verifier, verifying
from rung.classifiers import static
from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.embedder import open_embedder
from rung.classifiers.goal import describe
from rung.classifiers.model import load, resolve
from rung.confidence.calibrator import open_calibrator
from rung.config import DEFAULT_GOAL, CacheConfig, RungConfig
from rung.errors import ConfigError
from rung.router.checks import cache_embedder, embedder_specs
from rung.router.conversations import Conversations, MemoryConversations, RedisConversations
from rung.router.decide import ClassifierChooser, LengthChooser, TierChooser
from rung.router.pipeline import Pipeline
from rung.router.shadow import Shadow
from rung.router.shadow_store import SharedEvidence
from rung.tenants.gate import Gate
from rung.tenants.policy import routing_rule
from rung.tenants.stores import build_stores
from rung.weights.fetch import default_models_dir

Checked = Callable[[str, str, bool], None]
"""(tenant, tier, agreed) of a completed shadow check."""
log = logging.getLogger("rung.router")


@dataclass(frozen=True)
class Opened:
    batcher: MicroBatcher
    dimension: int
    identity: dict[str, str]


@dataclass
class Routing:
    chooser: TierChooser
    embedders: dict[str, Opened] = field(default_factory=dict)
    """Each micro-batched embedder by spec (empty when neither the classifier nor the
    semantic cache needs one)."""
    routing: Opened | None = None
    """The classifier's embedder (None for the length policy)."""
    cache: Opened | None = None
    """The semantic cache's embedder (may be the classifier's)."""


def _embedder_settings(config: RungConfig) -> tuple[Any, ...]:
    r = config.routing
    return (
        tuple(embedder_specs(config)),
        r.embed_batch_max,
        r.embed_batch_wait_ms,
        r.embed_threads,
    )


def _open(config: RungConfig, spec: str) -> Opened:
    routing = config.routing
    embedder, identity = open_embedder(spec, default_models_dir(), threads=routing.embed_threads)
    dimension = int(embedder.embed(["dimension probe"]).shape[1])
    batcher = MicroBatcher(embedder, routing.embed_batch_max, routing.embed_batch_wait_ms / 1000)
    return Opened(batcher, dimension, identity)


def build_routing(config: RungConfig, reuse: Routing | None = None) -> Routing:
    """The routing policy's chooser and the embedders (reused from `reuse` when given).
    Blocking: loads files, may fetch or distil an embedder's model on first use."""
    routing = config.routing
    names = tuple(t.name for t in config.tiers)
    if reuse is not None and reuse.embedders:
        embedders = reuse.embedders
    else:
        embedders = {spec: _open(config, spec) for spec in embedder_specs(config)}
    cached = cache_embedder(config)
    cache = embedders[cached] if cached is not None else None
    if routing.policy == "length":
        chooser: TierChooser = LengthChooser(tuple(routing.length_thresholds), len(names), names)
        return Routing(chooser, embedders, None, cache)
    opened = embedders[routing.embedder]
    model = load(resolve(routing.classifier), opened.identity)
    goal, target = routing_rule(config, config.defaults)
    goal = goal or DEFAULT_GOAL
    chooser = ClassifierChooser(
        model, opened.batcher, config.tiers, goal, target, config.escalation
    )
    log.info(
        "routing with classifier %s (tiers %s) on embedder %s, %s",
        routing.classifier,
        ", ".join(model.tier_names),
        opened.identity["name"],
        f"legacy quality target {target:g}"
        if target is not None
        else f"goal {describe(goal)}: {chooser.held_out(goal)}",
    )
    if config.shadow.rate > 0 and config.shadow.guard and target is None and goal.keep:
        # Also computes the bars once here, off the request path.
        bars = chooser.agreement(goal, None)
        log.info(
            "shadow guard: %s", guard_summary(bars, goal.keep, config.shadow.tier or names[-1])
        )
    return Routing(chooser, embedders, opened, cache)


def guard_summary(bars: dict[str, float], keep: float, top: str) -> str:
    """The startup line that says when the shadow guard holds a tier back."""
    if not bars:
        return f"a tier is held back when its checks agree with {top} below keep {keep:g}"
    shown = ", ".join(f"{name} {bar:.2f}" for name, bar in bars.items())
    return (
        f"a tier is held back when its checks agree with {top} below what it agreed on the "
        f"classifier's validation split ({shown}) and routing keeps below {keep:g}"
    )


def build_verify(config: RungConfig, routing: Routing) -> tuple[Verify | None, CacheConfig]:
    """The cache's hit verifier at the threshold its error budget sets (and the cache settings
    to run with: semantic hits off when no threshold can keep the budget). Blocking."""
    cache = config.cache
    if routing.cache is None or cache.verifier is None:
        return None, cache
    verifier = load_verifier(resolve_verifier(cache.verifier))
    if verifier.embedder != routing.cache.identity:
        raise ConfigError(
            "cache.verifier",
            [
                f"the verifier was fitted on cosines of embedder {verifier.embedder['name']!r}, "
                f"but the cache embeds with {routing.cache.identity['name']!r}; set "
                "cache.embedder to match, or refit it with `rung cache fit`"
            ],
        )
    floor, budget = cache.similarity_threshold, cache.max_wrong_hit_rate
    threshold = verifier.calibration.threshold(floor, budget)
    if threshold is None:
        log.warning(
            "the cache verifier cannot promise a wrong-hit rate of %g at similarity floor %g "
            "on its calibration pairs: serving exact repeats only",
            budget,
            floor,
        )
        return None, cache.model_copy(update={"semantic": False})
    words = routing.embedders[static.NAME].batcher.embedder.embed
    log.info(
        "cache verifier: threshold %.3f for a wrong-hit budget of %g at floor %g; %s",
        threshold,
        budget,
        floor,
        held_out_summary(verifier.report, floor, budget),
    )
    return verifying(verifier, threshold, words), cache


def held_out_summary(report: dict[str, Any], floor: float, budget: float) -> str:
    """What the verifier's test split (pairs nothing was fitted or calibrated on) says it serves,
    when it was measured at these settings: natural (Quora, human-labelled) pairs first, since
    a user's traffic is natural rephrasings; all pairs, rule-made edits included, after."""
    test = report.get("test", {})
    paraphrases, near = test.get("all paraphrases"), test.get("all near misses")
    if (
        report.get("floor") != floor
        or report.get("budget") != budget
        or not paraphrases
        or not near
    ):
        return "no held-out figures for these settings (run `rung cache fit` for them)"
    overall = (
        f"{paraphrases['served']:.0%} of paraphrases and {near['served']:.2%} of near misses "
        f"over all {paraphrases['pairs'] + near['pairs']:,} held-out test pairs, rule-made "
        "edits included"
    )
    natural_para, natural_near = test.get("pairs-paraphrase"), test.get("pairs-near-miss")
    if not natural_para or not natural_near:
        return f"it served {overall}"
    return (
        f"on held-out natural pairs (Quora, human labels) it served "
        f"{natural_para['served']:.1%} of {natural_para['pairs']:,} paraphrases and "
        f"{natural_near['served']:.1%} of {natural_near['pairs']:,} near misses; {overall}"
    )


def build_cache(
    config: RungConfig, routing: Routing, groups: dict[str, str]
) -> SemanticCache | None:
    if not config.cache.enabled:
        return None
    verify, settings = build_verify(config, routing)
    dimension = routing.cache.dimension if routing.cache is not None else None
    store = STORES[settings.store](settings, dimension)
    return SemanticCache(
        store, settings, [t.name for t in config.tiers], groups=groups, verify=verify
    )


def _conversation_settings(config: RungConfig) -> tuple[object, ...]:
    r, limits = config.routing, config.limits
    return (r.conversation, r.conversation_ttl_s, r.conversation_max, limits.store,
            limits.redis_url)  # fmt: skip


def build_shadow(
    config: RungConfig, pools: list[TierPool], old: Shadow | None, checked: Checked | None = None
) -> Shadow | None:
    """Shadow checks against the reference tier, each completed check told to `checked`; the
    tallies carry over a reload that keeps the same shadow settings and tiers."""
    settings = config.shadow
    records = settings.record is not None and (
        settings.explore_rate > 0 or settings.record_escalations
    )
    if settings.rate <= 0 and not records:
        return None
    names = [t.name for t in config.tiers]
    reference = settings.tier or names[-1]
    explorer = pools[0] if names.index(reference) > 0 and settings.explore_rate > 0 else None
    models = {t.name: t.model for t in config.tiers}
    shadow = Shadow(settings, pools[names.index(reference)], reference, models, explorer)
    shadow.checked = checked
    if config.limits.store == "redis":  # pooled over workers, beside the limits
        shadow.shared = SharedEvidence(config.limits.redis_url.get_secret_value())
    if old is not None and old.config == settings and old.top_name == reference:
        shadow.tallies, shadow.skipped, shadow.recorded = old.tallies, old.skipped, old.recorded
        shadow.holds, shadow.checks, shadow.turns = old.holds, old.checks, old.turns
    return shadow


def build_conversations(config: RungConfig) -> Conversations | None:
    """Where conversations' tiers are kept: beside the limits (memory, or the shared Redis)."""
    routing = config.routing
    if routing.conversation == "free":
        return None
    if config.limits.store == "redis":
        url = config.limits.redis_url.get_secret_value()
        return RedisConversations(url, routing.conversation_ttl_s)
    return MemoryConversations(routing.conversation_max, routing.conversation_ttl_s)


@dataclass
class Runtime:
    config: RungConfig
    pools: list[TierPool]
    routing: Routing
    cache: SemanticCache | None
    gate: Gate
    pipeline: Pipeline
    checked: Checked | None = None
    """Told of each completed shadow check (the metrics' counter); kept across reloads."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    active: int = 0
    retired: bool = False
    _owned: set[str] = field(default_factory=set)
    """What this runtime alone holds and must close: pools, embedder, cache, stores."""
    _drained: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def build(
        cls, config: RungConfig, old: Runtime | None = None, checked: Checked | None = None
    ) -> Runtime:
        checked = old.checked if old is not None else checked
        fresh: set[str] = set()  # built here
        reused: set[str] = set()  # taken over from `old`
        if old is not None and (old.config.tiers, old.config.health) == (
            config.tiers,
            config.health,
        ):
            pools = old.pools
            reused.add("pools")
        else:
            pools = [TierPool(tier, config.health) for tier in config.tiers]
            for pool in pools:
                await pool.start()
            await asyncio.gather(*(pool.probe() for pool in pools))
            fresh.add("pools")
        reuse = None
        if old is not None and _embedder_settings(old.config) == _embedder_settings(config):
            reuse = old.routing
        routing = await asyncio.to_thread(build_routing, config, reuse)
        if routing.embedders:
            reused_batcher = reuse is not None and reuse.embedders is routing.embedders
            (reused if reused_batcher else fresh).add("embedder")
        if old is not None and old.config.limits == config.limits:
            stores = (old.gate.ledger, old.gate.limiter, old.gate.usage)
            reused.add("stores")
        else:
            stores = build_stores(config.limits)
            fresh.add("stores")
        gate = Gate(config, *stores)
        cache = None
        if old is not None and old.cache is not None and old.config.cache == config.cache:
            cache = old.cache
            cache.set_groups(gate.groups())
            reused.add("cache")
        else:
            cache = build_cache(config, routing, gate.groups())
            if cache is not None:
                await cache.start()
                fresh.add("cache")
        embed = routing.routing.batcher.embed if routing.routing is not None else None
        cache_embed = routing.cache.batcher.embed if routing.cache is not None else None
        calibrator = None
        if config.escalation.enabled:
            calibrator = open_calibrator(config.escalation.calibrator)
        conversations: Conversations | None = None
        if old is not None and _conversation_settings(old.config) == _conversation_settings(config):
            conversations = old.pipeline.conversations
            reused.add("conversations")
        else:
            conversations = build_conversations(config)
            fresh.add("conversations")
        pipeline = Pipeline(
            config, pools, routing.chooser, cache, embed, calibrator, cache_embed, conversations
        )
        pipeline.shadow = build_shadow(config, pools, old.pipeline.shadow if old else None, checked)
        if isinstance(routing.chooser, ClassifierChooser) and config.routing.load_aware:
            routing.chooser.load = lambda tier: pools[tier].load()
        owned = set(fresh)
        if old is not None:  # what is taken over is closed by whoever holds it last
            owned |= reused & old._owned
            old._owned -= reused
        runtime = cls(config, pools, routing, cache, gate, pipeline, checked, _owned=owned)
        runtime.tasks = [
            asyncio.create_task(probe_forever(pools, config.health.interval_s)),
            asyncio.create_task(gate.reconcile_forever()),
            asyncio.create_task(gate.renew_forever()),
        ]
        return runtime

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        if self.retired and self.active == 0:
            self._drained.set()

    async def retire(self) -> None:
        """Stop this runtime once its requests are done (it has been replaced)."""
        self.retired = True
        if self.active == 0:
            self._drained.set()
        await self._drained.wait()
        await self.aclose()

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.gate.reconcile()
        if "stores" in self._owned:
            await self.gate.aclose()
        if "pools" in self._owned:
            for pool in self.pools:
                await pool.aclose()
        if "cache" in self._owned and self.cache is not None:
            await self.cache.aclose()
        conversations = self.pipeline.conversations
        if "conversations" in self._owned and conversations is not None:
            await conversations.aclose()
        if self.pipeline.shadow is not None:
            await self.pipeline.shadow.aclose()
        if "embedder" in self._owned:
            for opened in self.routing.embedders.values():
                opened.batcher.close()
