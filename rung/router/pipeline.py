"""The request pipeline: look the request up in the cache, decide a tier, call it, fall back up
the ladder when a tier is down, store what may be stored.

This is the only module that sequences I/O. Later steps (escalation, accounting) slot in here, in
the order ARCHITECTURE.md gives. The routing text is embedded at most once per embedder: when
the cache and the classifier use the same one (`cache.embedder`), they share the vector.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import orjson

from rung.backends import Json, OpenStream, TierPool
from rung.cache.keys import cache_key
from rung.cache.policy import why_not_store
from rung.cache.semantic import Lookup, SemanticCache
from rung.confidence.calibrator import Calibrator
from rung.confidence.signals import Signals, TokenScore, answer_signals
from rung.config import ROUTED_MODEL_NAMES, RungConfig
from rung.errors import (
    BackendError,
    BackendTimeout,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
    NoBackendAvailable,
)
from rung.router.capabilities import Needs, capable, fit_max_tokens, why_not
from rung.router.conversations import Conversations, answer_text, conversation_key
from rung.router.deadline import Deadlines
from rung.router.decide import Decision, Query, TierChooser, fallback_order
from rung.router.escalate import (
    ProbedStream,
    body_signals,
    client_wants_logprobs,
    json_expected,
    stream_tokens,
    strip_logprobs,
    with_logprobs,
)
from rung.router.plan import DEFAULT_TENANT, Call, Plan, Served
from rung.router.shadow import Shadow
from rung.router.steer import Steering
from rung.tenants.policy import TenantPolicy

T = TypeVar("T")
Embed = Callable[[str], Awaitable[np.ndarray]]


class Pipeline:
    def __init__(
        self,
        config: RungConfig,
        pools: list[TierPool],
        chooser: TierChooser,
        cache: SemanticCache | None = None,
        embed: Embed | None = None,
        calibrator: Calibrator | None = None,
        cache_embed: Embed | None = None,
        conversations: Conversations | None = None,
    ) -> None:
        self.config = config
        self.pools = pools
        self.chooser = chooser
        self.cache = cache
        self.embed = embed
        """The routing embedder (None when the routing policy needs none)."""
        self.cache_embed = cache_embed
        """The cache's embedder: the same function as `embed` when they share a model, and
        then the routing text is embedded once for both."""
        self.calibrator = calibrator
        self.conversations = conversations
        """Sticky-upward conversation tiers (None: `routing.conversation: free`)."""
        self.steering = Steering(config, conversations)
        self.shadow: Shadow | None = None
        """Shadow checks of routed answers (None: `shadow.rate: 0`)."""
        self.deadlines = Deadlines()

    async def plan(
        self,
        path: str,
        payload: Json,
        model: str,
        query: Query,
        *,
        policy: TenantPolicy | None = None,
        lookup: bool = True,
        store: bool = True,
        forward: dict[str, str] | None = None,
        needs: Needs | None = None,
        sticky: bool = False,
    ) -> Plan:
        tenant = policy.tenant if policy is not None else DEFAULT_TENANT
        allowed = policy.allowed if policy is not None else None
        skipped: list[str] = []
        if needs is not None:  # a tier without what the request needs is never used
            able, skipped = capable(self.config, needs, allowed)
            if skipped:
                allowed = able
        goal = policy.goal if policy is not None else None
        target = policy.quality_target if policy is not None else None
        eased = policy.eased if policy is not None else 0.0
        pinned: int | None = None
        if model not in ROUTED_MODEL_NAMES:
            pinned = self.config.tier_index(model)
            if pinned is None:
                names = ", ".join([*ROUTED_MODEL_NAMES, *(t.name for t in self.config.tiers)])
                shown = model if len(model) <= 64 else model[:64] + "…"  # never echo 100 KB
                raise ModelNotFound(
                    f"The model '{shown}' does not exist. Use one of: {names}.", param="model"
                )
            why = why_not(self.config, pinned, needs) if needs is not None else None
            if why is not None:
                raise InvalidRequest(
                    f"Tier '{self.config.tiers[pinned].name}' cannot serve this request: {why}.",
                    param="model",
                )
            if allowed is not None and pinned not in allowed:
                raise Forbidden(
                    f"Tier '{self.config.tiers[pinned].name}' is not allowed for tenant {tenant}.",
                    param="model",
                )
        caching = self.cache is not None and (policy is None or policy.cache)
        # What a cached answer was decided under; only the cache reads it (formatting the goal
        # model costs more than the rest of a pinned plan).
        route_key = (
            ""
            if not caching
            else f"{self.chooser.fingerprint}/goal={goal}/target={target}/eased={eased:.2f}"
            f"/allowed={allowed}"
            if pinned is None
            else f"pinned:{self.config.tiers[pinned].name}"
        )
        key = cache_key(path, payload) if caching and (lookup or store) else None
        memo: list[tuple[np.ndarray | None, Decision]] = []
        timings: dict[str, tuple[float, float]] = {}

        async def decide() -> tuple[np.ndarray | None, Decision]:
            """(the cache's vector, the routing decision), computed once."""
            if not memo:
                started = time.perf_counter()
                vector = None
                if self.embed is not None and pinned is None:
                    vector = await self.embed(query.text)
                if pinned is None:
                    decision = await self.chooser.choose(
                        Query(
                            query.text,
                            query.prompt_chars,
                            vector,
                            goal,
                            target,
                            allowed,
                            eased,
                        )
                    )
                else:
                    # Pinned: a promise; fails over between its replicas, never to another tier.
                    decision = Decision(pinned, "pinned")
                routed = vector if vector is not None else decision.embedding
                found = None
                if key is not None and self.cache_embed is not None:
                    # The cache matches its key's text (the last user message); the routing
                    # text of a conversation also carries earlier turns, so the routing vector
                    # is shared only when both embedded the same text.
                    shared = (
                        self.cache_embed == self.embed
                        and routed is not None
                        and query.text == key.text
                    )
                    found = routed if shared else await self.cache_embed(key.text)
                memo.append((found, decision))
                timings["decide"] = (started, time.perf_counter())
            return memo[0]

        async def decided_name() -> tuple[Any, str]:
            vector, decision = await decide()
            return vector, self.config.tiers[decision.tier].name

        found = None
        if caching and self.cache is not None and key is not None and lookup:
            started = time.perf_counter()
            found = await self.cache.lookup(tenant, key, route_key, decided_name)
            timings["cache"] = (started, time.perf_counter())
            if found.entry is not None:
                tier = self.config.tier_index(found.entry.tier)
                return Plan(
                    (),
                    f"cache {found.status}",
                    -1 if tier is None else tier,
                    tenant,
                    key,
                    found,
                    route_key=route_key,
                    timings=timings,
                    forward=forward,
                )
        if allowed is not None and not allowed:
            raise InvalidRequest("no tier can serve this request: " + "; ".join(skipped))
        vector, decision = await decide()
        conversation = conversation_key(tenant, payload) if sticky and pinned is None else None
        if pinned is None:
            decision = await self.steering.steer(decision, allowed, skipped, conversation)
        order = (pinned,) if pinned is not None else fallback_order(decision.tier, len(self.pools))
        if allowed is not None:
            order = tuple(t for t in order if t in allowed) or (decision.tier,)
        if caching and found is None:
            found = Lookup("bypass") if key is None or not lookup else None
        return Plan(
            order,
            decision.reason,
            decision.tier,
            tenant,
            key if store else None,
            found,
            vector,
            route_key,
            self._threshold(policy) if pinned is None and len(order) > 1 else None,
            asyncio.get_running_loop().time() + self.config.server.request_timeout_s,
            timings,
            forward,
            conversation,
            sticky and pinned is None,
            needs.prompt_tokens if needs is not None else 0,
            dict(policy.adapters) if policy is not None else {},
            routed=pinned is None,
        )

    async def remember_conversation(
        self, plan: Plan, served: Served, payload: Json, body: Json | None
    ) -> None:
        await self.steering.remember(plan, served, payload, body)

    def shadow_check(
        self,
        path: str,
        plan: Plan,
        served: Served,
        payload: Json,
        body: Json | None,
        policy: TenantPolicy,
    ) -> None:
        """After a routed chat answer went out: count it, and maybe check it in the
        background against the reference tier."""
        if self.shadow is None or path != "/chat/completions" or not plan.routed:
            return
        if served.tier < 0 or body is None:
            return
        answer = answer_text(body)
        name = self.config.tiers[served.tier].name
        self.shadow.observe(plan.tenant, name, policy.shadow, payload, answer, served.signals)
        if not served.calls:  # not escalated: nothing more to record
            return
        chain = [(self.config.tiers[c.tier].name, c.text, c.signals) for c in served.calls]
        chain.append((name, answer, served.signals))
        for (tier, text, signals), (then, final, _) in itertools.pairwise(chain):
            if text is not None and final is not None:
                self.shadow.escalated(
                    plan.tenant, policy.shadow, payload, (tier, text, signals), (then, final)
                )

    def _threshold(self, policy: TenantPolicy | None) -> float | None:
        escalation = self.config.escalation
        if not escalation.enabled or self.calibrator is None:
            return None
        if policy is not None and policy.escalation_threshold is not None:
            return policy.escalation_threshold
        return escalation.threshold

    def served_from_cache(self, plan: Plan) -> tuple[bytes, Served]:
        entry = plan.cache.entry if plan.cache is not None else None
        if plan.cache is None or entry is None:
            raise ValueError("not a cache hit")
        tier = max(plan.decided, 0)
        served = Served(tier, entry.model, plan.reason, cache=plan.cache.status)
        # The cosine means something for a semantic hit only (an exact hit is the same text).
        if plan.cache.status == "hit-semantic":
            served.similarity = plan.cache.similarity
        return entry.body, served

    async def remember(self, plan: Plan, payload: Json, body: Json, served: Served) -> None:
        """Store a served answer if the request and the answer allow it."""
        if self.cache is None or plan.key is None:
            return
        if why_not_store(payload, body, self.config.cache.max_temperature) is not None:
            self.cache.stats_of(plan.tenant).not_stored += 1
            return
        await self.cache.put(
            plan.tenant,
            plan.key,
            plan.vector,
            orjson.dumps(body),
            tier=self.config.tiers[served.tier].name,
            model=served.model,
            decided=self.config.tiers[plan.decided].name,
            route_key=plan.route_key,
            usage=body.get("usage") if isinstance(body.get("usage"), dict) else None,
        )

    def _payload(self, path: str, plan: Plan) -> Callable[[TierPool, Json], Json]:
        """Per tier: the body for that tier (its model, max_tokens fitted to its window), asking
        for logprobs when escalation will judge."""

        def build(pool: TierPool, body: Json) -> Json:
            if plan.threshold is not None and pool.tier.logprobs:
                return with_logprobs(path, body)
            return body

        return build

    async def complete(self, path: str, payload: Json, plan: Plan) -> tuple[Json, Served]:
        build = self._payload(path, plan)

        async def call(pool: TierPool, body: Json) -> Json:
            answer, _ = await pool.complete(path, build(pool, body), plan.forward)
            return answer

        body, served = await self._over_tiers(plan, payload, call)
        steps = 0
        while plan.threshold is not None:
            above = plan.order[plan.order.index(served.tier) + 1 :]
            signals = body_signals(body, json_expected(payload))
            confidence = self._confidence(served.tier, signals)
            served.confidence = confidence  # of the answer served, escalated or not
            served.signals = signals if signals.tokens else None
            if steps >= self.config.escalation.max_steps or not above:
                break
            if confidence is None or confidence >= plan.threshold:
                break
            first = served.tier
            try:
                higher, again = await self._over_tiers(replace(plan, order=above), payload, call)
            except BackendError as exc:  # keep the answer we have rather than fail
                served.fallback.append(f"escalation failed: {exc.code}")
                break
            usage = body.get("usage")
            used = usage if isinstance(usage, dict) else None
            served.calls.append(Call(first, used, text=answer_text(body), signals=served.signals))
            served.escalated.append(
                f"{self.config.tiers[first].name}->{self.config.tiers[again.tier].name}"
            )
            served.tier, served.model = again.tier, again.model
            served.tried += again.tried
            body, steps = higher, steps + 1
        if plan.threshold is not None and not client_wants_logprobs(path, payload):
            strip_logprobs([body])
        served.model = str(body.setdefault("model", served.model))
        if plan.cache is not None:
            served.cache = plan.cache.status
        return body, served

    def _confidence(self, tier: int, signals: Signals, probe: bool = False) -> float | None:
        if self.calibrator is None:
            return None
        return self.calibrator.confidence(self.config.tiers[tier].name, signals, probe)

    async def open_stream(
        self, path: str, payload: Json, plan: Plan
    ) -> tuple[OpenStream | ProbedStream, Served]:
        build = self._payload(path, plan)

        async def call(pool: TierPool, body: Json) -> OpenStream:
            return await pool.open_stream(path, build(pool, body), plan.forward)

        stream, served = await self._over_tiers(plan, payload, call)
        if plan.cache is not None:
            served.cache = plan.cache.status
        if plan.threshold is None or not self.config.escalation.streams:
            return stream, served
        keep = client_wants_logprobs(path, payload)
        transform = (lambda batch: batch) if keep else strip_logprobs
        probe = self.config.escalation.probe_tokens or (
            self.calibrator.probe_tokens if self.calibrator else 24
        )
        steps = 0
        while True:
            rest = stream.__aiter__()
            held: list[list[Json]] = []
            scores: list[TokenScore] = []
            seen, text = 0, ""
            finished: str | None = None
            ended = False
            async with asyncio.timeout_at(plan.deadline):
                while seen < probe and not finished:
                    try:
                        batch = await anext(rest)
                    except StopAsyncIteration:
                        ended = True
                        break
                    held.append(batch)
                    count, found, piece, finished = stream_tokens(batch)
                    seen, scores, text = seen + count, scores + found, text + piece
            above = plan.order[plan.order.index(served.tier) + 1 :]
            if finished or ended:  # the whole answer fit in the probe: judge all of it
                whole = answer_signals(text, finished, scores, json_expected=json_expected(payload))
                confidence = self._confidence(served.tier, whole)
            else:
                prefix = answer_signals(text or "x", None, scores)
                confidence = self._confidence(served.tier, prefix, probe=True)
            served.confidence = confidence
            low = confidence is not None and confidence < plan.threshold
            if not above or not low or steps >= self.config.escalation.max_steps:
                return ProbedStream(stream, rest, held, transform), served
            first = served.tier
            try:
                higher, again = await self._over_tiers(replace(plan, order=above), payload, call)
            except BackendError as exc:
                served.fallback.append(f"escalation failed: {exc.code}")
                return ProbedStream(stream, rest, held, transform), served
            await rest.aclose()  # type: ignore[attr-defined]
            await stream.aclose()
            served.calls.append(Call(first, None, tokens_seen=seen))
            served.escalated.append(
                f"{self.config.tiers[first].name}->{self.config.tiers[again.tier].name}"
            )
            served.tier, served.model = again.tier, again.model
            served.tried += again.tried
            stream, steps = higher, steps + 1

    async def _over_tiers(
        self, plan: Plan, payload: Json, call: Callable[[TierPool, Json], Awaitable[T]]
    ) -> tuple[T, Served]:
        """Try the plan's tiers in order within the request deadline; say what happened."""
        served = Served(reason=plan.reason)
        errors: list[BackendError] = []
        deadline = plan.deadline or (
            asyncio.get_running_loop().time() + self.config.server.request_timeout_s
        )
        try:
            with self.deadlines.within(deadline):
                for index in plan.order:
                    pool = self.pools[index]
                    name = pool.tier.name
                    if not pool.available():
                        served.fallback.append(f"{name}: unavailable")
                        continue
                    served.tried.append(name)
                    adapter = plan.adapters.get(index)
                    model = pool.tier.adapters[adapter].model if adapter else pool.tier.model
                    fitted = fit_max_tokens(payload, pool.tier.context_window, plan.prompt_tokens)
                    try:
                        result = await call(pool, {**fitted, "model": model})
                    except BackendError as exc:
                        served.fallback.append(f"{name}: {exc.code}")
                        errors.append(exc)
                        continue
                    served.tier, served.model = index, model
                    if index != plan.decided:
                        served.fallback.append(f"answered by {name}")
                    return result, served
        except TimeoutError:
            raise BackendTimeout(
                f"no tier answered within {self.config.server.request_timeout_s:g}s"
            ) from None
        if not errors:
            raise NoBackendAvailable("no backend is available for this request; try again shortly")
        if all(isinstance(e, BackendTimeout) for e in errors):
            raise BackendTimeout("every backend tried timed out")
        raise BackendError("every backend tried failed: " + "; ".join(served.fallback))
