"""The one place where rung's exceptions become HTTP statuses and OpenAI's error shape."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from rung.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    ClientGone,
    Forbidden,
    InsufficientQuota,
    InvalidRequest,
    ModelNotFound,
    NoBackendAvailable,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RungError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from rung.router.schemas import error_body

log = logging.getLogger("rung.router")

# Most specific first.
_STATUS: tuple[tuple[type[RungError], int, str], ...] = (
    (PayloadTooLarge, 413, "invalid_request_error"),
    (RequestTimeout, 408, "invalid_request_error"),
    (ClientGone, 499, "invalid_request_error"),
    (ModelNotFound, 404, "invalid_request_error"),
    (InvalidRequest, 400, "invalid_request_error"),
    (Unauthorized, 401, "invalid_request_error"),
    (Forbidden, 403, "invalid_request_error"),
    (InsufficientQuota, 429, "insufficient_quota"),
    (RateLimited, 429, "requests"),
    (ServiceUnavailable, 503, "server_error"),
    (BackendTimeout, 504, "server_error"),
    (NoBackendAvailable, 503, "server_error"),
    (BackendError, 502, "server_error"),
)


def json_response(body: object, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def status_of(error: RungError) -> tuple[int, str]:
    for kind, status, type_ in _STATUS:
        if isinstance(error, kind):
            return status, type_
    return 500, "server_error"


def error_response(error: RungError, headers: dict[str, str] | None = None) -> Response:
    if isinstance(error, BackendRejected):
        return json_response(error.body, error.status, headers)
    status, type_ = status_of(error)
    if isinstance(error, TooManyRequests):
        headers = {**error.headers, **(headers or {})}
    # A store outage is logged once by the gate when it starts and ends, not per request.
    if status >= 500 and not isinstance(error, ServiceUnavailable):
        log.warning("%s: %s", type(error).__name__, error.message)
    return json_response(error_body(error.message, type_, error.param, error.code), status, headers)


def internal_error(exc: BaseException) -> Response:
    log.exception("unexpected error", exc_info=exc)
    body = error_body("internal error in rung", "server_error", None, "internal_error")
    return json_response(body, 500)


def install(app: FastAPI) -> None:
    async def rung_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RungError)
        return error_response(exc)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        body = error_body(str(exc.detail), "invalid_request_error", None, code)
        return json_response(body, exc.status_code, dict(exc.headers or {}))

    async def unexpected(_: Request, exc: Exception) -> Response:
        return internal_error(exc)

    app.add_exception_handler(RungError, rung_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
