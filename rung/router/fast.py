"""The hot path's own ASGI entry: the two completion routes without FastAPI's per-request work.

FastAPI resolves every request through its middleware stack (error, telemetry and body-limit
middlewares), its router, its dependency solver and its exception middlewares; for the
completion routes that was over a quarter of the gateway's CPU per request (py-spy,
bench/compare.py). `RungApp` is FastAPI except that its own `__call__` answers
`POST /v1/chat/completions` and `POST /v1/completions` first, with the same handler and the same
error mapping (every failure becomes OpenAI's error shape here, so nothing reaches uvicorn);
every other request (and the OpenAPI description of these two) still goes through FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rung.errors import RungError
from rung.router.api import serve_chat, serve_completion
from rung.router.errors import error_response, internal_error
from rung.router.logs import REQUEST_LOGGER, request_fields, request_id
from rung.router.metrics import Metrics
from rung.router.notes import Notes
from rung.router.tracing import Tracing

requests_log = logging.getLogger(REQUEST_LOGGER)
Handler = Callable[[Request], Awaitable[Response]]
ROUTES: dict[str, Handler] = {
    "/v1/chat/completions": serve_chat,
    "/v1/completions": serve_completion,
}


class IndexedHeaders(Headers):
    """Starlette's `Headers` whose lookups are one dict probe (its own scan the raw list on
    every `get`; the hot path asks for four or five headers per request). The first of repeated
    headers wins, as in Starlette's."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        self._index: dict[bytes, bytes] = {}
        for key, value in self._list:
            self._index.setdefault(key, value)

    def __getitem__(self, key: str) -> str:
        value = self._index.get(key.lower().encode("latin-1"))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def get(self, key: str, default: Any = None) -> Any:
        value = self._index.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower().encode("latin-1") in self._index


class HotRequest(Request):
    """A request whose headers are indexed once (`IndexedHeaders`)."""

    @property
    def headers(self) -> Headers:
        indexed: Headers | None = getattr(self, "_indexed", None)
        if indexed is None:
            indexed = self._indexed = IndexedHeaders(self.scope)
        return indexed


class RungApp(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = ROUTES.get(scope["path"])
            if handler is not None:
                scope["app"] = self  # what Starlette would set: request.app is this app
                await answer(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def answer(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
    """One completion request: ids, the handler, errors in OpenAI's shape, metrics, the log
    line and the trace span."""
    started = time.perf_counter()
    request = HotRequest(scope, receive, send)
    given = request.headers.get("x-request-id")
    notes = Notes(request_id(given))
    # The backends get an id of rung's own, a canonical UUID: vLLM takes it as its request id
    # (unique while it runs, which a client's reused id is not) and llama-cpp-python's server
    # refuses anything but a UUID with an empty 400. The request log pairs it with the client's.
    notes.upstream_id = str(uuid4())
    notes.forward["x-request-id"] = notes.upstream_id
    request.state.notes = notes
    tracing: Tracing | None = getattr(request.app.state, "tracing", None)
    span = tracing.start(scope["path"], request.headers, notes) if tracing else None
    response: Response
    try:
        response = await handler(request)
    except RungError as exc:
        response = error_response(exc)
    except Exception as exc:  # never a bare 500 page: OpenAI's error shape, logged once
        response = internal_error(exc)
    response.headers["x-request-id"] = notes.request_id
    try:
        await response(scope, receive, send)  # settles (and notes the usage) at its end
    finally:
        _observe(request, scope["path"], response.status_code, started, notes)
        if tracing is not None and span is not None:
            tracing.finish(span, response.status_code, notes)


def _observe(request: Request, route: str, status: int, started: float, notes: Notes) -> None:
    seconds = time.perf_counter() - started
    state = request.app.state
    metrics: Metrics | None = getattr(state, "metrics", None)
    if metrics is not None:
        metrics.response(route, status, seconds)
        for stage, spent in notes.stages.items():
            metrics.stage(stage, spent)
        if notes.record is not None:
            metrics.settled(notes.record, notes.reason)
    if state.runtime.config.server.log_format == "json":
        fields = request_fields(
            notes.request_id,
            route,
            status,
            seconds,
            notes.record,
            notes.reason,
            notes.stages,
            notes.upstream_id,
        )
        requests_log.info("request", extra={"fields": fields})
