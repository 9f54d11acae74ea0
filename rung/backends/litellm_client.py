"""A tier backend for providers that do not speak the OpenAI protocol (Anthropic, Bedrock,
Vertex, ...): calls go through `litellm.acompletion` (the `litellm` extra), answers and stream
chunks come back in OpenAI's shape, and litellm's errors become rung's own (a provider's 4xx is
the client's error and is passed on; timeouts, 5xx, 429 and connection failures fail over like
any backend's). OpenAI-compatible backends never come here: they stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from rung.backends.ends import Ends
from rung.backends.gauges import Gauges
from rung.config import BackendConfig
from rung.errors import BackendError, BackendRejected, BackendTimeout, RungError

Json = dict[str, Any]
DROPPED = ("model", "stream", "stream_options")
"""Parameters rung sets itself on the litellm call."""


class LiteLLMClient:
    def __init__(self, config: BackendConfig) -> None:
        if config.litellm_model is None:
            raise ValueError("a litellm backend needs litellm_model")
        self.config = config
        self.url = config.url
        self.model = config.litellm_model
        self.gauges: Gauges | None = None
        """A hosted provider reports no load gauges (rung.backends.client has vLLM's)."""
        self._litellm: Any = None

    async def start(self) -> None:
        if self._litellm is None:
            self._litellm = await asyncio.to_thread(_import_litellm)

    async def aclose(self) -> None:
        return None

    def _call(self, payload: Json, headers: Mapping[str, str] | None, stream: bool) -> Any:
        if self._litellm is None:
            raise RuntimeError("LiteLLMClient.start() was not awaited")
        kwargs = {k: v for k, v in payload.items() if k not in DROPPED}
        key = self.config.api_key.get_secret_value() if self.config.api_key else None
        extra: dict[str, Any] = {"extra_headers": dict(headers)} if headers else {}
        if stream:
            extra["stream_options"] = {"include_usage": True}
        return self._litellm.acompletion(
            model=self.model,
            api_base=self.url,
            api_key=key,
            timeout=self.config.read_timeout_s,
            stream=stream,
            **extra,
            **kwargs,
        )

    async def complete(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> Json:
        _chat_only(path, self.url)
        try:
            response = await self._call(payload, headers, stream=False)
        except Exception as exc:
            raise _translate(exc, self.url) from None
        body: Json = response.model_dump()
        if not isinstance(body.get("choices"), list):
            raise BackendError(f"{self.url} returned an answer without `choices`")
        return body

    async def stream(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[Json]]:
        """Chunks in OpenAI's shape, one batch per chunk, the usage chunk last."""
        _chat_only(path, self.url)
        ends = Ends()
        try:
            chunks = await self._call(payload, headers, stream=True)
            async for chunk in chunks:
                dumped = chunk.model_dump()
                ends.see(dumped)
                yield [dumped]
        except RungError:
            raise
        except Exception as exc:
            raise _translate(exc, self.url) from None
        ends.check(self.url)

    async def probe(self, timeout_s: float) -> bool:
        """Hosted providers have no cheap health endpoint: a replica is taken out of rotation by
        its failures (the circuit breaker), not by probes."""
        return True


def _import_litellm() -> Any:
    # Offline machines: the bundled price map, not a download at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        module: Any = importlib.import_module("litellm")
    except ImportError:
        raise RungError(
            "a `type: litellm` backend needs litellm: pip install 'rung[litellm]'"
        ) from None
    module.suppress_debug_info = True
    return module


def _chat_only(path: str, url: str) -> None:
    if path != "/chat/completions":
        raise BackendRejected(
            400,
            {
                "error": {
                    "message": "this tier's provider serves chat completions only",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "unsupported_endpoint",
                }
            },
        )


def _translate(exc: Exception, url: str) -> RungError:
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if name in ("Timeout", "APITimeoutError") or isinstance(exc, TimeoutError):
        return BackendTimeout(f"{url} did not answer in time")
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        message = str(getattr(exc, "message", "") or exc).split("\n")[0][:500]
        return BackendRejected(
            status,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": name,
                }
            },
        )
    return BackendError(f"{url}: {name}")
