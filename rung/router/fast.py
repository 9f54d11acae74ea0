"""The hot path's own ASGI layer: the two completion routes without FastAPI's per-request work.

FastAPI resolves every request through its router, its dependency solver and two exception
middlewares; for the completion routes that was about a fifth of the gateway's CPU per request
(py-spy, bench/compare.py). This middleware sits just inside Starlette's outermost error
middleware and answers `POST /v1/chat/completions` and `POST /v1/completions` itself, with the same
handler and the same error mapping; every other request (and the OpenAPI description of these two)
still goes through FastAPI.
"""

from __future__ import annotations

import logging
import time
from uuid import uuid4

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rung.errors import RungError
from rung.router.api import serve_chat, serve_completion
from rung.router.errors import error_response, internal_error
from rung.router.logs import REQUEST_LOGGER, request_fields, request_id
from rung.router.metrics import Metrics
from rung.router.notes import Notes
from rung.router.tracing import Tracing

requests_log = logging.getLogger(REQUEST_LOGGER)
ROUTES = {
    "/v1/chat/completions": serve_chat,
    "/v1/completions": serve_completion,
}


class FastRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        handler = ROUTES.get(scope["path"])
        if handler is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive, send)
        given = request.headers.get("x-request-id")
        notes = Notes(request_id(given))
        # vLLM takes it as its own request id, which must be unique while it runs: a client's
        # id (which it may reuse) gets a suffix; grep for the client's id still finds it.
        unique = notes.request_id != given
        notes.forward["x-request-id"] = notes.request_id if unique else f"{given}.{uuid4().hex[:8]}"
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
            self._observe(request, scope["path"], response.status_code, started, notes)
            if tracing is not None and span is not None:
                tracing.finish(span, response.status_code, notes)

    @staticmethod
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
                notes.request_id, route, status, seconds, notes.record, notes.reason, notes.stages
            )
            requests_log.info("request", extra={"fields": fields})
