"""Async client for one OpenAI-compatible model server (vLLM, llama.cpp, OpenAI itself).

Completions to a plain-http backend (the usual vLLM or llama.cpp beside the gateway) go through
`rung.backends.wire`, a keep-alive HTTP/1.1 client that costs a fraction of aiohttp's CPU per
request; https backends and health probes use aiohttp.

Every failure is translated into rung's errors: `BackendRejected` for a 4xx (the request is at
fault, never retried), `BackendTimeout` or `BackendError` for everything that another replica
might answer (refused or dropped connections, 5xx, silence, garbage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from rung.backends.ends import Ends
from rung.backends.gauges import Gauges
from rung.backends.gauges import parse as parse_gauges
from rung.backends.sse import SSEDecoder
from rung.backends.wire import WireError, WirePool, WireTimeout
from rung.config import BackendConfig
from rung.errors import BackendError, BackendRejected, BackendTimeout

Json = dict[str, Any]
_DONE = b"[DONE]"
# A completion is kilobytes; a body this large is a broken or hostile backend, not an answer.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


def _error_body(status: int, raw: bytes, tier: str) -> Json:
    """The backend's own OpenAI-shaped error, or one that says which tier refused and how."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    who = f"tier '{tier}'" if tier else "the model server"
    said = raw[:500].decode("utf-8", "replace").strip()
    text = f"{who} refused the request with HTTP {status}" + (
        f": {said}" if said else " and no error message"
    )
    return {
        "error": {"message": text, "type": "invalid_request_error", "param": None, "code": None}
    }


class OpenAIClient:
    """One backend replica. Holds a single pooled aiohttp session, created by `start()`."""

    def __init__(self, config: BackendConfig, tier: str = "") -> None:
        self.config = config
        self.tier = tier
        """The tier's name, for error messages a client reads."""
        self.url = config.url
        self._session: aiohttp.ClientSession | None = None
        self._wire: WirePool | None = None
        self._urls: dict[str, URL] = {}
        self.gauges: Gauges | None = None
        """A vLLM server's own load, from its last health probe."""
        self._gauged: bool | None = None
        """Whether the server has load gauges (None: not asked yet)."""
        self._headers = {"content-type": "application/json"}
        if config.api_key is not None:
            self._headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_concurrency, keepalive_timeout=30, ttl_dns_cache=300
            )
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout_s,
                sock_read=self.config.read_timeout_s,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._headers, auto_decompress=True
            )
        if self._wire is None and self.url.startswith("http://"):
            self._wire = WirePool(
                self.url,
                self._headers,
                self.config.connect_timeout_s,
                self.config.read_timeout_s,
                max_idle=self.config.max_concurrency,
            )

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("OpenAIClient.start() was not awaited")
        return self._session

    async def complete(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> Json:
        """POST a non-streaming request; return the parsed JSON body. `headers`: per-request
        extras (request id, W3C trace context)."""
        if self._wire is not None:
            return await self._complete_wire(path, payload, headers)
        try:
            async with self.session.post(
                self._url(path), data=orjson.dumps(payload), headers=headers
            ) as resp:
                raw = await _read_bounded(resp)
                status = resp.status
        except TimeoutError:
            raise BackendTimeout(f"{self.url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.url}: {type(exc).__name__}") from None
        except ValueError as exc:
            raise BackendError(f"{self.url}: {exc}") from None
        return self._answer(status, raw)

    async def _complete_wire(
        self, path: str, payload: Json, headers: Mapping[str, str] | None
    ) -> Json:
        assert self._wire is not None
        try:
            async with self._wire.post(path, orjson.dumps(payload), headers) as exchange:
                raw = await exchange.read(MAX_RESPONSE_BYTES)
                status = exchange.status
        except WireTimeout:
            raise BackendTimeout(f"{self.url} did not answer in time") from None
        except (WireError, ValueError) as exc:
            raise BackendError(f"{self.url}: {exc}") from None
        return self._answer(status, raw)

    def _answer(self, status: int, raw: bytes) -> Json:
        if status >= 500:
            raise BackendError(f"{self.url} answered HTTP {status}")
        if status >= 400:
            raise BackendRejected(status, _error_body(status, raw, self.tier))
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BackendError(f"{self.url} returned a body that is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise BackendError(f"{self.url} returned JSON without `choices`")
        return body

    async def stream(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[Json]]:
        """POST a streaming request; yield the parsed chunks in batches until `[DONE]`.

        A batch is every chunk that arrived in one network read (never empty): handing them on
        together saves a trip through every layer per chunk. Errors before the first batch are
        safe to retry elsewhere; the caller decides.
        """
        if self._wire is not None:
            async for batch in self._stream_wire(path, payload, headers):
                yield batch
            return
        decoder, ends = SSEDecoder(), Ends()
        try:
            async with self.session.post(
                self._url(path), data=orjson.dumps(payload), headers=headers
            ) as resp:
                if resp.status >= 400:
                    raw = await _read_bounded(resp)
                    if resp.status >= 500:
                        raise BackendError(f"{self.url} answered HTTP {resp.status}")
                    raise BackendRejected(resp.status, _error_body(resp.status, raw, self.tier))
                async for data in resp.content.iter_any():
                    batch, done = self._batch(decoder.feed(data), ends)
                    if batch:
                        yield batch
                    if done:
                        ends.check(self.url)
                        return
                batch, done = self._batch(decoder.flush(), ends)
                if batch:
                    yield batch
                if done:
                    ends.check(self.url)
                    return
        except TimeoutError:
            raise BackendTimeout(f"{self.url} went silent") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.url}: {type(exc).__name__}") from None
        except ValueError as exc:
            raise BackendError(f"{self.url}: {exc}") from None
        raise BackendError(f"{self.url} ended the stream without [DONE]")

    async def _stream_wire(
        self, path: str, payload: Json, headers: Mapping[str, str] | None
    ) -> AsyncIterator[list[Json]]:
        assert self._wire is not None
        decoder, ends = SSEDecoder(), Ends()
        try:
            async with self._wire.post(path, orjson.dumps(payload), headers) as exchange:
                if exchange.status >= 400:
                    raw = await exchange.read(MAX_RESPONSE_BYTES)
                    if exchange.status >= 500:
                        raise BackendError(f"{self.url} answered HTTP {exchange.status}")
                    raise BackendRejected(
                        exchange.status, _error_body(exchange.status, raw, self.tier)
                    )
                async for data in exchange.chunks():
                    batch, done = self._batch(decoder.feed(data), ends)
                    if batch:
                        yield batch
                    if done:
                        ends.check(self.url)
                        return
                batch, done = self._batch(decoder.flush(), ends)
                if batch:
                    yield batch
                if done:
                    ends.check(self.url)
                    return
        except WireTimeout:
            raise BackendTimeout(f"{self.url} went silent") from None
        except (WireError, ValueError) as exc:
            raise BackendError(f"{self.url}: {exc}") from None
        raise BackendError(f"{self.url} ended the stream without [DONE]")

    def _batch(self, events: list[bytes], ends: Ends) -> tuple[list[Json], bool]:
        batch: list[Json] = []
        for event in events:
            if event == _DONE:
                return batch, True
            chunk = _chunk(event, self.url)
            ends.see(chunk)
            batch.append(chunk)
        return batch, False

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:  # parsed once per path, not per request
            url = self._urls[path] = URL(self.url + path)
        return url

    async def probe(self, timeout_s: float) -> bool:
        """Health probe: GET {url}/models answers 2xx within the timeout. A vLLM server's load
        gauges are read too (`gauges`), while it has them."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self.session.get(self.url + "/models", timeout=timeout) as resp:
                await resp.read()
                ok = resp.status < 300
        except (TimeoutError, aiohttp.ClientError):
            return False
        if ok and self._gauged is not False:
            self.gauges = await self._read_gauges(timeout_s)
            self._gauged = self.gauges is not None
        return ok

    async def _read_gauges(self, within_s: float) -> Gauges | None:
        root = self.url.removesuffix("/v1")
        limit = aiohttp.ClientTimeout(total=within_s)
        try:
            async with self.session.get(root + "/metrics", timeout=limit) as resp:
                if resp.status >= 300:
                    return None
                return parse_gauges((await resp.read())[: 4 * 1024 * 1024].decode(errors="replace"))
        except (TimeoutError, aiohttp.ClientError):
            return None


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    if (resp.content_length or 0) > MAX_RESPONSE_BYTES:
        raise ValueError("response body exceeds the size limit")
    body = bytearray()
    async for data in resp.content.iter_any():
        body += data
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError("response body exceeds the size limit")
    return bytes(body)


def _chunk(event: bytes, url: str) -> Json:
    try:
        chunk = orjson.loads(event)
    except orjson.JSONDecodeError:
        raise BackendError(f"{url} streamed an event that is not JSON") from None
    if not isinstance(chunk, dict):
        raise BackendError(f"{url} streamed an event that is not a JSON object")
    if isinstance(chunk.get("error"), dict):
        raise BackendError(f"{url} streamed an error: {chunk['error'].get('message', '')}"[:300])
    return chunk
