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

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rung.errors import RungError
from rung.router.api import serve_chat, serve_completion
from rung.router.errors import error_response, internal_error

log = logging.getLogger("rung.router")
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
        request = Request(scope, receive, send)
        response: Response
        try:
            response = await handler(request)
        except RungError as exc:
            response = error_response(exc)
        except Exception as exc:  # never a bare 500 page: OpenAI's error shape, logged once
            response = internal_error(exc)
        await response(scope, receive, send)
