"""The request pipeline: look the request up in the cache, decide a tier, call it, fall back up
the ladder when a tier is down, store what may be stored.

This is the only module that sequences I/O. Later steps (escalation, accounting) slot in here, in
the order ARCHITECTURE.md gives. The routing text is embedded at most once per embedder: when
the cache and the classifier use the same one (`cache.embedder`), they share the vector.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
import orjson

from rung.backends import Json, OpenStream, TierPool
from rung.cache.keys import cache_key
from rung.cache.policy import why_not_store
from rung.cache.semantic import Lookup, SemanticCache
from rung.confidence.calibrator import Calibrator
from rung.confidence.signals import Signals, answer_signals
from rung.config import ROUTED_MODEL_NAMES, Policy, RungConfig
from rung.errors import (
    BackendError,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
)
from rung.router.capabilities import Needs, capable, why_not
from rung.router.cascading import Judging, legacy
from rung.router.conversations import Conversations, answer_text, conversation_key
from rung.router.deadline import Deadlines
from rung.router.decide import Decision, Query, TierChooser, fallback_order
from rung.router.escalate import (
    ProbedStream,
    Replay,
    body_signals,
    client_wants_logprobs,
    finish_of,
    held_payload,
    json_expected,
    probe,
    strip_logprobs,
    with_logprobs,
)
from rung.router.failover import over_tiers
from rung.router.guard import guarded
from rung.router.plan import DEFAULT_TENANT, Call, Plan, Served
from rung.router.shadow import Shadow
from rung.router.steer import Steering
from rung.tenants.policy import TenantPolicy, routing_rule

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
        self._names = [t.name for t in config.tiers]
        self._goal = routing_rule(config, Policy())[0]
        """The goal of a request without a tenant policy (None: the legacy target rules)."""
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
        held: tuple[str, ...] = ()
        if pinned is None and self.shadow is not None and not eased and target is None:
            rule = goal or self._goal
            keep = rule.keep if rule else None
            bars = partial(self.chooser.agreement, rule, allowed)
            holding = self.shadow.held_back(tenant, keep, time.monotonic(), bars)
            allowed, held = guarded(allowed, self._names, holding)
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
        if held:
            reason = f"{decision.reason}; shadow guard holds back {','.join(held)}"
            decision = replace(decision, reason=reason)
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
            self._judging(decision, policy, order, query.text)
            if pinned is None and len(order) > 1
            else None,
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
        if self.shadow is not None and path == "/chat/completions" and plan.routed:
            self.shadow.check_served(self.config, plan, served, payload, body, policy.shadow)

    def _judging(
        self,
        decision: Decision,
        policy: TenantPolicy | None,
        order: tuple[int, ...],
        prompt: str,
    ) -> Judging | None:
        """How the answers are judged; a tenant's own escalation threshold replaces the fitted
        one (it is then a threshold on the same P(right))."""
        judging = decision.judging
        escalation = self.config.escalation
        judged_here = not self.chooser.judges and self.calibrator is not None
        if judging is None and judged_here and escalation.enabled:
            judging = legacy(escalation.threshold, order, prompt)
        if judging is None or policy is None or policy.escalation_threshold is None:
            return judging
        params = replace(judging.params, tau=policy.escalation_threshold)
        return replace(judging, params=params)

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
            if plan.judging is not None and self.calibrator is not None and pool.tier.logprobs:
                return with_logprobs(path, body)
            return body

        return build

    async def complete(self, path: str, payload: Json, plan: Plan) -> tuple[Json, Served]:
        """Answer from the plan's tiers; with judging, each answer is verified and the next
        tier of the policy's path answers instead when it is not accepted."""
        build = self._payload(path, plan)

        async def call(pool: TierPool, body: Json) -> Json:
            answer, _ = await pool.complete(path, build(pool, body), plan.forward)
            return answer

        body, served = await self._over_tiers(plan, payload, call)
        judging, previous = plan.judging, None
        for _ in range(self.config.escalation.max_steps + 1 if judging else 0):
            assert judging is not None
            signals = body_signals(body, json_expected(payload))
            answer = answer_text(body)
            verdict = judging.judge(
                served.tier,
                answer or "",
                finish_of(body),
                self._confidence(served.tier, signals),
                previous,
            )
            served.confidence = verdict.verified
            served.signals = signals if signals.tokens else None
            first = served.tier
            if verdict.next is None or len(served.escalated) >= self.config.escalation.max_steps:
                outcome = "agreed" if verdict.agreed else "accept"
                served.reason += f" {outcome} verified={verdict.verified:.2f}"
                break
            up = tuple(t for t in plan.order if t >= verdict.next)
            try:
                higher, again = await self._over_tiers(replace(plan, order=up), payload, call)
            except BackendError as exc:  # keep the answer we have rather than fail
                served.fallback.append(f"escalation failed: {exc.code}")
                break
            usage = body.get("usage")
            used = usage if isinstance(usage, dict) else None
            served.calls.append(Call(first, used, text=answer, signals=served.signals))
            step = f"{self.config.tiers[first].name}->{self.config.tiers[again.tier].name}"
            served.escalated.append(step)
            served.reason += f" escalate {step} verified={verdict.verified:.2f}"
            served.tier, served.model = again.tier, again.model
            served.tried += again.tried
            body, previous = higher, verdict.result
        if plan.judging is not None and not client_wants_logprobs(path, payload):
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
    ) -> tuple[OpenStream | ProbedStream | Replay, Served]:
        """A stream from the plan's tiers. With judging: `escalation.streams: hold` answers
        whole, judged like any answer, then streamed out; `probe` (with the calibrator alone)
        judges the first tokens and streams on or switches tiers; `off` does not judge."""
        judging, mode = plan.judging, self.config.escalation.streams
        if judging is not None and mode == "hold":
            body, served = await self.complete(path, held_payload(payload), plan)
            return Replay(body), served
        build = self._payload(path, plan)

        async def call(pool: TierPool, body: Json) -> OpenStream:
            return await pool.open_stream(path, build(pool, body), plan.forward)

        stream, served = await self._over_tiers(plan, payload, call)
        if plan.cache is not None:
            served.cache = plan.cache.status
        if judging is None or mode != "probe" or judging.verifier is not None:
            return stream, served
        keep = client_wants_logprobs(path, payload)
        transform = (lambda batch: batch) if keep else strip_logprobs
        tokens = self.config.escalation.probe_tokens or (
            self.calibrator.probe_tokens if self.calibrator else 24
        )
        for steps in range(self.config.escalation.max_steps + 1):
            rest, held, seen, text, scores, finished = await probe(stream, tokens, plan.deadline)
            if finished is not None:  # the whole answer fit in the probe: judge all of it
                whole = answer_signals(text, finished, scores, json_expected=json_expected(payload))
                confidence = self._confidence(served.tier, whole)
            else:
                prefix = answer_signals(text or "x", None, scores)
                confidence = self._confidence(served.tier, prefix, probe=True)
            served.confidence = confidence
            low = confidence is not None and confidence < judging.params.tau
            above = plan.order[plan.order.index(served.tier) + 1 :]
            if not above or not low or steps >= self.config.escalation.max_steps:
                break
            first = served.tier
            try:
                higher, again = await self._over_tiers(replace(plan, order=above), payload, call)
            except BackendError as exc:
                served.fallback.append(f"escalation failed: {exc.code}")
                break
            await rest.aclose()  # type: ignore[attr-defined]
            await stream.aclose()
            served.calls.append(Call(first, None, tokens_seen=seen))
            step = f"{self.config.tiers[first].name}->{self.config.tiers[again.tier].name}"
            served.escalated.append(step)
            served.reason += f" escalate {step} verified={confidence:.2f}"
            served.tier, served.model = again.tier, again.model
            served.tried += again.tried
            stream = higher
        return ProbedStream(stream, rest, held, transform), served

    async def _over_tiers(
        self, plan: Plan, payload: Json, call: Callable[[TierPool, Json], Awaitable[T]]
    ) -> tuple[T, Served]:
        return await over_tiers(self.pools, self.config, self.deadlines, plan, payload, call)
