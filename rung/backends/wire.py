"""A small HTTP/1.1 client for plain-http backends: pooled keep-alive connections, one write per
request, httptools parsing.

aiohttp's client was over a quarter of the gateway's CPU per request (py-spy, bench/compare.py):
its request and response objects, header multidicts, timers per read and tracing hooks are
general; a model server behind rung needs one thing, POST JSON, read JSON or server-sent events.
This does that and nothing else. Transport failures raise `WireError` (`WireTimeout` for silence
longer than the read timeout); the caller maps them to rung's errors.

What it keeps from a full client: connect and read timeouts (a read timeout is silence, reset by
every byte), responses in `Content-Length`, chunked or read-until-close framing, gzip or deflate
bodies, backpressure (a stream that its reader does not drain stops reading the socket), a
bounded idle pool whose stale connections (closed by the server while idle) are dropped, and one
retry on a fresh connection when a reused one dies before any byte of its answer arrived (the
server closed it while our request was on the way).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

# A reader this far behind stops the socket until it catches up: memory stays bounded.
HIGH_WATER = 256 * 1024


class WireError(Exception):
    """The exchange failed on the wire: refused, reset, closed early, or not HTTP."""


class WireTimeout(WireError):
    """The backend was silent for longer than the timeout."""


class Connection(asyncio.Protocol):
    """One keep-alive connection and the response being read on it (httptools callbacks)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.alive = True
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.framed = False  # Content-Length or chunked: else the body ends when the socket does
        self.encoding: bytes | None = None
        self.received = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: WireError | None = None
        self.last_io = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_io = self.loop.time()
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(WireError("the backend switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.headers_done and not self.framed and not self.complete and self.error is None:
            self.complete = True  # read-until-close framing: the close is the end
        elif not self.complete and self.error is None:
            self.error = WireError("the backend closed the connection")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-encoding":
            value = value.strip().lower()
            self.encoding = None if value == b"identity" else value
        elif lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.status in (204, 304):
            self.framed = True
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # for the exchange
    def _fail(self, error: WireError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Until the next callback (headers, body, end, failure)."""
        waiter = self._waiter = self.loop.create_future()
        await waiter

    def take(self) -> bytes:
        """The body bytes that arrived since the last take."""
        chunks, self.chunks, self.buffered = self.chunks, [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def timeout(self, error: WireTimeout) -> None:
        self._fail(error)

    def reusable(self) -> bool:
        return self.alive and self.complete and self.keep_alive and self.error is None

    def begin(self) -> None:
        self._reset()
        self.last_io = self.loop.time()

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


class Exchange:
    """One request's response: `status`, then `read()` the body or iterate `chunks()`.

    `finish()` (leaving `async with pool.post(...)`) returns the connection to the pool when its
    answer was read to the end, else closes it; a second call does nothing.
    """

    def __init__(self, pool: WirePool, conn: Connection, read_timeout_s: float) -> None:
        self.pool = pool
        self.conn = conn
        self.read_timeout_s = read_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._inflate: zlib._Decompress | None = None
        self._finished = False

    @property
    def status(self) -> int:
        return self.conn.status

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pool.release(self.conn)

    def watch(self) -> None:
        """Start the silence timer: checks at `last_io + timeout`, re-armed while bytes flow."""
        self._timer = self.conn.loop.call_at(self.conn.last_io + self.read_timeout_s, self._check)

    def _check(self) -> None:
        conn = self.conn
        due = conn.last_io + self.read_timeout_s
        if conn.complete or conn.error is not None:
            self._timer = None
        elif conn.loop.time() >= due:
            self._timer = None
            conn.timeout(WireTimeout(f"no answer for {self.read_timeout_s:g}s"))
        else:
            self._timer = conn.loop.call_at(due, self._check)

    async def headers(self) -> None:
        conn = self.conn
        while not conn.headers_done:
            if conn.error is not None:
                raise conn.error
            await conn.wait()
        if conn.encoding is not None:
            if conn.encoding not in (b"gzip", b"deflate", b"x-gzip"):
                raise WireError(
                    f"unsupported content-encoding {conn.encoding.decode(errors='replace')}"
                )
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib headers

    async def read(self, limit: int) -> bytes:
        """The whole body; WireError past `limit` bytes (after decompression)."""
        parts: list[bytes] = []
        size = 0
        async for data in self.chunks():
            size += len(data)
            if size > limit:
                raise WireError("response body exceeds the size limit")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received since the last step, never empty."""
        conn = self.conn
        while True:
            if conn.chunks:
                data = conn.take()
                if self._inflate is not None:
                    data = self._inflate.decompress(data)
                if data:
                    yield data
                continue
            if conn.complete:
                if self._inflate is not None:
                    tail = self._inflate.flush()
                    if tail:
                        yield tail
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait()


class WirePool:
    """Keep-alive connections to one `http://host:port/prefix`, at most `max_idle` kept idle."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
        max_idle: int = 256,
        keepalive_s: float = 4.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"WirePool speaks plain http only, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle
        # Idle connections older than this are not reused: servers close theirs (uvicorn, vLLM's
        # server, after 5 s), and a request written into a closing socket is lost.
        self.keepalive_s = keepalive_s
        authority = parts.netloc.rsplit("@", 1)[-1]
        fixed = "".join(f"{_checked(k)}: {_checked(v)}\r\n" for k, v in headers.items())
        self._fixed = f"Host: {authority}\r\n{fixed}".encode("latin-1")
        self._lines: dict[str, bytes] = {}
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self.opened = 0
        """Connections opened so far (tests and benchmarks read it)."""

    def _request_line(self, path: str) -> bytes:
        line = self._lines.get(path)
        if line is None:  # built once per path
            line = self._lines[path] = f"POST {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
        return line

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop), self.host, self.port
                )
        except TimeoutError:
            raise WireTimeout(f"no connection in {self.connect_timeout_s:g}s") from None
        except OSError as exc:
            raise WireError(f"cannot connect: {exc.strerror or type(exc).__name__}") from None
        self.opened += 1
        self._open.add(conn)
        return conn

    def _idle_connection(self, now: float) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive and now - conn.idle_since < self.keepalive_s:
                return conn
            self._drop(conn)
        return None

    def release(self, conn: Connection) -> None:
        if conn.reusable() and len(self._idle) < self.max_idle:
            conn.idle_since = conn.loop.time()
            self._idle.append(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> _Posting:
        """`async with pool.post(path, body, headers) as exchange:` the response's headers have
        arrived (status known) when the block starts."""
        extra = (
            "".join(f"{_checked(k)}: {_checked(v)}\r\n" for k, v in headers.items())
            if headers
            else ""
        )
        head = b"%b%b%bContent-Length: %d\r\n\r\n" % (
            self._request_line(path),
            self._fixed,
            extra.encode("latin-1"),
            len(body),
        )
        return _Posting(self, head, body)

    async def exchange(self, head: bytes, body: bytes) -> Exchange:
        loop = asyncio.get_running_loop()
        conn = self._idle_connection(loop.time())
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect()
            exchange = Exchange(self, conn, self.read_timeout_s)
            conn.begin()
            assert conn.transport is not None
            conn.transport.write(head + body)
            exchange.watch()
            try:
                await exchange.headers()
            except WireTimeout:
                exchange.finish()
                raise
            except WireError:
                exchange.finish()
                if reused and conn.received == 0:  # closed while our request was on its way
                    conn, reused = None, False
                    continue
                raise
            except BaseException:
                exchange.finish()
                raise
            return exchange

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()


class _Posting:
    def __init__(self, pool: WirePool, head: bytes, body: bytes) -> None:
        self.pool = pool
        self.head = head
        self.body = body
        self._exchange: Exchange | None = None

    async def __aenter__(self) -> Exchange:
        self._exchange = await self.pool.exchange(self.head, self.body)
        return self._exchange

    async def __aexit__(self, *exc: object) -> None:
        if self._exchange is not None:
            self._exchange.finish()


def _checked(text: str) -> str:
    """A header name or value as given; one with a line break would inject headers."""
    if "\r" in text or "\n" in text:
        raise ValueError("a header contains a line break")
    return text
