"""One exception tree for rung.

Lower layers raise these; only ``rung.router.errors`` knows how each maps to an HTTP status and
OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Any


class RungError(Exception):
    """Base of every error rung raises on purpose."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(RungError):
    """The admin config file is missing, unreadable or invalid; ``errors`` lists every problem."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(f"invalid config {path}:\n  " + "\n  ".join(errors))


class InvalidRequest(RungError):
    """The client sent something rung cannot serve (bad JSON, wrong types, missing fields)."""

    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    code = "request_too_large"


class ModelNotFound(InvalidRequest):
    code = "model_not_found"


class RequestTimeout(InvalidRequest):
    """The client did not send its whole body in time (slow or stalled: slowloris)."""

    code = "request_timeout"


class ClientGone(RungError):
    """The client disconnected before its request was read: nobody to answer."""

    code = "client_disconnected"


class Unauthorized(RungError):
    """No API key, or not one rung knows."""

    code = "invalid_api_key"


class Forbidden(RungError):
    """A known key that may not do this (e.g. a tenant key on the admin API)."""

    code = "forbidden"


class TooManyRequests(RungError):
    """A rate limit or a budget refused the request; `headers` go back with the 429."""

    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.headers = headers or {}


class RateLimited(TooManyRequests):
    code = "rate_limit_exceeded"


class InsufficientQuota(TooManyRequests):
    code = "insufficient_quota"


class ServiceUnavailable(RungError):
    """A dependency (the cache store, the ledger) cannot be reached for an admin call."""

    code = "unavailable"


class BackendError(RungError):
    """A model server failed (refused, reset, 5xx, garbage) and failover did not save the call."""

    code = "backend_error"


class BackendTimeout(BackendError):
    code = "backend_timeout"


class NoBackendAvailable(BackendError):
    """Every replica of every candidate tier is out of rotation."""

    code = "no_backend_available"


class BackendRejected(RungError):
    """The model server answered with a 4xx: the request itself is at fault, so it is not retried.

    The backend's status and body are passed back to the client unchanged.
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        super().__init__(str(message or f"backend rejected the request with {status}"))
