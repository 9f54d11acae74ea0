"""HTTP routes: OpenAI's wire format in and out. Thin: parse, hand to the pipeline, respond."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from rung.backends import describe
from rung.cache.policy import directives, replay
from rung.config import RungConfig
from rung.errors import ClientGone, InvalidRequest, PayloadTooLarge, RequestTimeout, RungError
from rung.router.capabilities import needs_of
from rung.router.decide import Query
from rung.router.errors import json_response, status_of
from rung.router.notes import Notes
from rung.router.pipeline import Pipeline
from rung.router.plan import Plan, Served
from rung.router.runtime import Runtime
from rung.router.schemas import (
    ChatRequest,
    CompletionRequest,
    prompt_chars,
    routing_text,
    validate,
)
from rung.router.sse import CLIENT_CLOSED, SLACK, Bounds, Relay, Relayed, StreamResponse
from rung.tenants.gate import Outcome, Ticket
from rung.tenants.policy import estimated_tokens

log = logging.getLogger("rung.router")
router = APIRouter()
SHORT_ANSWER = 256
"""Tokens of answer a request without max_tokens must have room for in a tier's window."""


async def read_json(request: Request, limit: int, timeout_s: float) -> tuple[Any, int]:
    """The parsed body and its size in bytes; the whole body must arrive within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    if _buffered(request):
        message = await request.receive()  # returns at once: no timer needed
        if message["type"] != "http.request":
            raise _gone()
        body = message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        return _parse(body), len(body)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g}s; send it whole"
        ) from None
    except ClientDisconnect:
        raise _gone() from None
    return _parse(body), len(body)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the {limit}-byte limit")


def _gone() -> ClientGone:
    return ClientGone("the client disconnected while sending its request")


def _buffered(request: Request) -> bool:
    """Whether the server already holds the whole body. uvicorn's request cycles (httptools and
    h11) say so with `more_body` False once the message is complete; then `receive` returns it
    without waiting and the body timeout (a timer per request, ~5% of the CPU per request at 64
    concurrent) is not needed. Any other server takes the timed path."""
    cycle = getattr(request.receive, "__self__", None)
    return cycle is not None and getattr(cycle, "more_body", None) is False


MAX_DEPTH = 128
"""Deepest nesting of arrays and objects a request may have. orjson reads 1,024 levels but
writes only 255, so a deeper body would fail when rung sends it on: refused at the door."""


def _parse(body: bytes | bytearray) -> Any:
    if not body:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    # Nesting deeper than the limit needs at least that many brackets: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and depth(parsed) > MAX_DEPTH:
        raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return parsed


def depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _body_schema(model: type[ChatRequest | CompletionRequest]) -> dict[str, Any]:
    """The request body in /openapi.json, so schema-driven fuzzers and client generators work
    (the handler reads the raw body itself: unknown parameters are forwarded as they are)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:  # the wire models are not recursive: refs can be inlined
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


async def serve_chat(request: Request) -> Response:
    return await _serve(request, ChatRequest, "/chat/completions")


async def serve_completion(request: Request) -> Response:
    return await _serve(request, CompletionRequest, "/completions")


# rung.router.fast answers these two before FastAPI sees them; the routes stay for the OpenAPI
# description and for an app mounted without that middleware.
@router.post("/v1/chat/completions", openapi_extra=_body_schema(ChatRequest))
async def chat_completions(request: Request) -> Response:
    return await serve_chat(request)


@router.post("/v1/completions", openapi_extra=_body_schema(CompletionRequest))
async def completions(request: Request) -> Response:
    return await serve_completion(request)


async def _serve(
    request: Request, kind: type[ChatRequest | CompletionRequest], path: str
) -> Response:
    """Hold the current runtime (config) from the first byte to the last: a reload meanwhile
    does not touch this request."""
    runtime: Runtime = request.app.state.runtime
    runtime.acquire()
    held = [True]

    def release() -> None:
        if held[0]:
            held[0] = False
            runtime.release()

    try:
        return await _handle(request, kind, path, runtime, release)
    except BaseException:
        release()
        raise


async def _handle(
    request: Request,
    kind: type[ChatRequest | CompletionRequest],
    path: str,
    runtime: Runtime,
    release: Callable[[], None],
) -> Response:
    pipeline, gate = runtime.pipeline, runtime.gate
    config = pipeline.config
    notes: Notes = getattr(request.state, "notes", None) or Notes()
    policy = gate.authenticate(request.headers.get("authorization"))
    payload, size = await read_json(
        request, config.server.max_body_bytes, config.server.body_timeout_s
    )
    parsed = validate(kind, payload)
    requested = payload.get("max_completion_tokens") or payload.get("max_tokens")
    messages = payload.get("messages")
    choices = max(
        (v for v in (payload.get("n"), payload.get("best_of")) if isinstance(v, int)), default=1
    )
    admitted = time.perf_counter()
    ticket = await gate.admit(
        policy,
        size,
        len(messages) if isinstance(messages, list) else 1,
        requested if isinstance(requested, int) else None,
        max(1, choices),
    )
    notes.mark("admit", admitted, time.perf_counter())
    # The cap that bounds what the request can cost is what the backend is told.
    payload = {**payload, "max_tokens": ticket.max_tokens}
    if "max_completion_tokens" in payload:
        payload["max_completion_tokens"] = ticket.max_tokens
    lookup, store = directives(request.headers.get("cache-control"))
    chars = prompt_chars(parsed)
    query = Query(routing_text(parsed), chars)
    # Without a max_tokens of its own, a request fits a tier whose window leaves a short answer;
    # the tier is then sent what its window has room for.
    answer_tokens = min(
        ticket.max_tokens, requested if isinstance(requested, int) else SHORT_ANSWER
    )
    sticky = config.routing.conversation == "sticky_up" and path == "/chat/completions"
    plan = await pipeline.plan(
        path,
        payload,
        parsed.model,
        query,
        policy=ticket.policy,
        lookup=lookup,
        store=store,
        forward=notes.forward or None,
        needs=needs_of(payload, chars, answer_tokens),
        sticky=sticky,
    )
    for stage, (start, end) in plan.timings.items():
        notes.mark(stage, start, end)
    notes.reason = plan.reason
    if plan.cache is not None and plan.cache.entry is not None:
        response = _cached(pipeline, plan, payload, parsed.stream)
        entry = plan.cache.entry
        outcome = Outcome([], [], entry.tier, None, 0, 0, plan.cache.status, 200)
        notes.record = await gate.settle(ticket, outcome)
        response.headers.update(ticket.headers)
        release()
        return response
    prices = [_price(config, t, plan) for t in plan.order]
    answers = 1 if plan.judging is None else 1 + config.escalation.max_steps
    await gate.reserve(ticket, prices, answers)
    handed = False  # True once the response owns the settlement (its background, its relay)
    try:
        response = await _call(request, path, payload, parsed.stream, plan, ticket, notes, release)
        handed = True
        return response
    except BaseException as exc:
        if not handed:  # whatever went wrong after admission, the reservation is settled
            failed = Outcome([], [], "", None, None, None, None, _failure_status(exc))
            notes.record = await asyncio.shield(gate.settle(ticket, failed))
        raise


def _failure_status(exc: BaseException) -> int:
    if isinstance(exc, RungError):
        return status_of(exc)[0]
    return CLIENT_CLOSED if isinstance(exc, asyncio.CancelledError) else 500


async def _call(
    request: Request,
    path: str,
    payload: dict[str, Any],
    stream: bool,
    plan: Plan,
    ticket: Ticket,
    notes: Notes,
    release: Callable[[], None],
) -> Response:
    """Call the plan's tiers and build the response that settles the reservation when done."""
    runtime: Runtime = request.app.state.runtime
    pipeline, gate = runtime.pipeline, runtime.gate
    config = pipeline.config
    started = time.perf_counter()
    if stream:
        # Every backend is asked for usage, so a stream is charged what it used; the client
        # sees the usage chunk only if it asked for it.
        options = payload.get("stream_options")
        keep_usage = isinstance(options, dict) and options.get("include_usage") is True
        sent = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        opened, served = await pipeline.open_stream(path, {**payload, "stream_options": sent}, plan)
        notes.mark("first_byte", started, time.perf_counter())
        notes.reason = served.reason
        prompt_estimate = plan.prompt_tokens * ticket.choices

        async def done(answer: dict[str, Any] | None, status: int, relayed: Relayed) -> None:
            try:
                usage = (answer or {}).get("usage")
                estimate = (prompt_estimate, estimated_tokens(relayed.chars, relayed.pieces))
                outcome = _outcome(
                    config, served, usage if isinstance(usage, dict) else {}, status, plan, estimate
                )
                notes.record = await gate.settle(ticket, outcome)
                if answer is not None:
                    await pipeline.remember_conversation(plan, served, payload, answer)
                    pipeline.shadow_check(path, plan, served, payload, answer, ticket.base)
                if answer is not None and plan.key is not None:
                    await pipeline.remember(plan, payload, answer, served)
            finally:
                release()

        bounds = Bounds(
            max_pieces=ticket.max_tokens * ticket.choices + SLACK,
            deadline=plan.deadline or asyncio.get_running_loop().time(),
            lapsed=lambda: ticket.lapsed,
            keep_usage=keep_usage,
        )
        headers = {**served.headers(config), **ticket.headers}
        return StreamResponse(Relay(opened, bounds, done), headers)
    body, served = await pipeline.complete(path, payload, plan)
    notes.mark("backend", started, time.perf_counter())
    notes.reason = served.reason
    headers = {**served.headers(config), **ticket.headers}
    response = Settling(orjson.dumps(body), 200, headers, media_type="application/json")
    reported = body.get("usage")
    outcome = _outcome(config, served, reported if isinstance(reported, dict) else {}, 200, plan)

    async def after() -> None:  # after the answer has gone out: no added latency
        try:
            notes.record = await gate.settle(ticket, outcome)
            await pipeline.remember_conversation(plan, served, payload, body)
            pipeline.shadow_check(path, plan, served, payload, body, ticket.base)
            if plan.key is not None:
                await pipeline.remember(plan, payload, body, served)
        finally:
            release()

    response.background = BackgroundTask(after)
    return response


class Settling(Response):
    """A JSON answer whose settlement (its background task) runs however sending it ends: a
    send that fails must not leave the reservation held until its lease runs out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        background, self.background = self.background, None
        try:
            await super().__call__(scope, receive, send)
        finally:
            if background is not None:
                await asyncio.shield(background())


def _price(config: RungConfig, tier: int, plan: Plan) -> tuple[float, float]:
    adapter = plan.adapters.get(tier)
    price = config.tiers[tier].price
    if adapter is not None:
        price = config.tiers[tier].adapters[adapter].price or price
    return price.input_per_mtok, price.output_per_mtok


def _outcome(
    config: RungConfig,
    served: Served,
    usage: dict[str, Any],
    status: int,
    plan: Plan,
    estimate: tuple[int, int] | None = None,
) -> Outcome:
    """What to charge and record, with the usage as reported (the gate checks it): a tenant's
    adapter is recorded as `<tier>@<adapter>`."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    tier = config.tiers[served.tier].name
    adapter = plan.adapters.get(served.tier)
    if adapter is not None:
        tier = f"{tier}@{adapter}"
    earlier: list[tuple[tuple[float, float], object, object]] = []
    for call in served.calls:
        used = call.usage or {}
        p, c = used.get("prompt_tokens"), used.get("completion_tokens")
        earlier.append((_price(config, call.tier, plan), p, call.tokens_seen if c is None else c))
    return Outcome(
        tiers=served.tried,
        models=[served.model],
        tier=tier,
        price=_price(config, served.tier, plan),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache=served.cache,
        status=status,
        escalated=",".join(served.escalated) or None,
        earlier=earlier,
        estimate=estimate,
    )


def _cached(pipeline: Pipeline, plan: Plan, payload: Any, stream: bool) -> Response:
    body, served = pipeline.served_from_cache(plan)
    headers = served.headers(pipeline.config)
    if not stream:
        return Response(body, 200, headers, media_type="application/json")
    options = payload.get("stream_options")
    usage = isinstance(options, dict) and bool(options.get("include_usage"))
    chunks = replay(orjson.loads(body), usage)
    events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return Response(events + b"data: [DONE]\n\n", 200, headers, media_type="text/event-stream")


@router.get("/v1/models")
async def models(request: Request) -> Response:
    """With tenants configured, a key is needed here too (the tier list is the deployment's)."""
    runtime: Runtime = request.app.state.runtime
    runtime.gate.authenticate(request.headers.get("authorization"))
    config: RungConfig = runtime.config
    created = request.app.state.started
    data = [{"id": "rung", "object": "model", "created": created, "owned_by": "rung"}]
    data += [
        {
            "id": t.name,
            "object": "model",
            "created": created,
            "owned_by": "rung",
            "rung_model": t.model,
        }
        for t in config.tiers
    ]
    return json_response({"object": "list", "data": data}, 200)


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"}, 200)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pipeline = runtime.pipeline
    ready = any(pool.ready() for pool in pipeline.pools)
    body: dict[str, Any] = {
        "status": "ready" if ready else "unavailable",
        "tiers": describe(pipeline.pools),
        "checked_at": int(time.time()),
    }
    if pipeline.cache is not None:  # informational: a cache outage never makes rung unready
        body["cache"] = pipeline.cache.health()
    await runtime.gate.probe()
    limits = runtime.gate.health()
    body["limits"] = limits
    if not limits["available"] and limits["mode"] == "fail_closed":
        body["status"] = "degraded"  # metered tenants are refused until the store is back
    return json_response(body, 200 if ready else 503)
