"""A small asyncio Redis client for the request path: one connection, commands pipelined in the
order they are sent (Redis answers in order), replies parsed by hiredis.

A metered request makes six to nine Redis calls (rate limit, spend, reservation, settlement,
usage, the cache's read and store, the conversation). Through redis-py each costs the gateway
~190 us of CPU (connection-pool checkout, command packing and parsing layers, observability
hooks); here ~95 us, most of it the two system calls. Every call is one command, most of them a
Lua script, so nothing here needs a pool: concurrent callers share the connection and their
commands travel together. redis-py stays for everything else (pub/sub, scans, pipelines,
administration).

Each reply has a deadline (`Client.timeout_s`), judged against the reply (see `Client`);
`rung.redisconn.guarded(call, error, None)` turns its failures into the store's error. A caller
that gives up leaves its reply to be read and dropped in turn; a connection whose oldest command
has waited `stale_s` without a reply is closed, failing what is pending, and the next call
connects afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

Arg = bytes | str | int | float


class ReplyError(ResponseError):
    """Redis answered the command with an error (`-ERR ...`)."""


class NotConnected(RedisConnectionError):
    """No connection could be opened: the command was never sent (safe to send elsewhere)."""


class NotReplicated(RedisConnectionError):
    """The write ran, but fewer replicas than asked acknowledged it in time: a failover now
    could lose it (the caller keeps it to write again; rung's writes are idempotent)."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    path: str | None
    """A unix socket (`unix:///path`) instead of host and port."""
    tls: bool
    username: str | None
    password: str | None
    db: int


def parse_url(url: str) -> Address:
    """`redis://[[user]:password@]host[:port][/db]`, `rediss://` (TLS) or `unix:///path?db=N`."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {parts.scheme}://")
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    db = query.get("db") or (parts.path.strip("/") if parts.scheme != "unix" else "") or "0"
    if not db.isdigit():
        raise ValueError(f"a Redis URL's database is a number, not {db!r}")
    return Address(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        path=unquote(parts.path) if parts.scheme == "unix" else None,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=int(db),
    )


def pack(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            data = b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class Script:
    """A Lua script run by its digest; loaded on first use (and again after a Redis restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(
        self, send: Callable[..., Awaitable[Any]], keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Its reply through `send` (one command's reply): by digest, or with its source when
        that Redis does not know it yet. Shared by the one-Redis and the cluster clients."""
        try:
            return await send("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await send("EVAL", self.source, len(keys), *keys, *args)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        """Closed or closing: the next call opens another connection."""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # not Redis speaking: give up on it
                self.close(RedisConnectionError(f"redis: protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self.waiting:  # nothing asked for it: the stream is out of step
                self.close(RedisConnectionError("redis: a reply nobody asked for"))
                return
            future, _ = self.waiting.popleft()
            if future.done():  # its caller gave up (deadline): dropped in turn
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionError(f"redis: connection lost ({exc or 'closed'})"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self, why: Exception) -> None:
        self.closed = True
        self._fail(why)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, why: Exception) -> None:
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(why)

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((future, time.monotonic()))
        self.transport.write(pack(args))
        return future

    def send_asking(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        """`ASKING` and the command in one write: nothing another caller sends can come between
        them (ASKING holds for the connection's next command only)."""
        assert self.transport is not None
        loop, now = asyncio.get_running_loop(), time.monotonic()
        asking: asyncio.Future[Any] = loop.create_future()
        asking.add_done_callback(_consume)
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting += [(asking, now), (future, now)]
        self.transport.write(pack(("ASKING",)) + pack(args))
        return future


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # read, so a failed ASKING is not reported as never retrieved


def _expire(future: asyncio.Future[Any], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"redis: no reply within {timeout_s:g}s"))


class Client:
    """One pipelined connection to the Redis at `url` (a URL, or an address already parsed:
    a cluster's node), opened on first use.

    Each reply is awaited for `timeout_s`. The deadline is checked against the reply itself,
    not by cancelling the caller: on a loop that fell behind, a reply that arrived in time is
    read in the same turn as the late timer, and it wins (`asyncio.timeout` would cancel the
    caller anyway and fail a metered request that Redis had answered).
    """

    def __init__(
        self,
        url: str | Address,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        stale_s: float | None = None,
    ) -> None:
        self.address = url if isinstance(url, Address) else parse_url(url)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or max(timeout_s, 0.5)
        self.stale_s = stale_s or max(2.0, 4 * timeout_s)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: Arg) -> Any:
        """One command's reply (bytes, int, list, None); a `-ERR` reply raises ReplyError, a
        lost connection redis' ConnectionError (NotConnected when none could be opened: the
        command was not sent), no reply within `timeout_s` TimeoutError."""
        return await self._await((await self._connected()).send(args))

    async def call_asking(self, *args: Arg, replicas: int = 0) -> Any:
        """The command preceded by `ASKING` (a Redis Cluster slot being migrated); with
        `replicas`, once that many of the target's replicas hold it, as `call_replicated`."""
        protocol = await self._connected()
        future = protocol.send_asking(args)
        if not replicas:
            return await self._await(future)
        # Sent in the same turn as the command: WAIT covers it (and anything sent before).
        return await self._replicated(future, protocol.send(self._wait(replicas)), replicas)

    async def call_replicated(self, args: tuple[Arg, ...], replicas: int) -> Any:
        """The command's reply once `replicas` replicas hold it (NotReplicated when fewer
        acknowledged within the deadline; the command did run)."""
        protocol = await self._connected()
        future = protocol.send(args)
        return await self._replicated(future, protocol.send(self._wait(replicas)), replicas)

    def _wait(self, replicas: int) -> tuple[Arg, ...]:
        return ("WAIT", replicas, max(1, int(self.timeout_s * 1000 * 0.8)))

    async def _replicated(
        self, future: asyncio.Future[Any], waited: asyncio.Future[Any], replicas: int
    ) -> Any:
        waited.add_done_callback(_consume)
        reply = await self._await(future)
        acknowledged = await self._await(waited)
        if int(acknowledged) < replicas:
            raise NotReplicated(
                f"redis: {acknowledged} of {replicas} replicas acknowledged the write in time"
            )
        return reply

    async def _await(self, future: asyncio.Future[Any]) -> Any:
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + self.timeout_s, _expire, future, self.timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    async def run(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], replicas: int = 0
    ) -> Any:
        """The script's reply: by digest, or with its source when Redis does not know it yet;
        with `replicas`, once that many replicas acknowledged it (`call_replicated`)."""

        async def send(*command: Arg) -> Any:
            if replicas:
                return await self.call_replicated(command, replicas)
            return await self.call(*command)

        return await script.run(send, keys, args)

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await asyncio.wait([protocol.lost], timeout=1.0)

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            if not protocol.waiting or time.monotonic() - protocol.waiting[0][1] < self.stale_s:
                return protocol
            protocol.close(RedisConnectionError(f"redis: no reply for {self.stale_s:g}s"))
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connect for every caller waiting on it
            protocol = self._protocol
            if protocol is None or protocol.closed:
                protocol = self._protocol = await self._open()
        return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        address = self.address
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if address.path is not None:
                    transport, protocol = await loop.create_unix_connection(_Protocol, address.path)
                else:
                    tls = ssl.create_default_context() if address.tls else None
                    transport, protocol = await loop.create_connection(
                        _Protocol, address.host, address.port, ssl=tls
                    )
                # uvloop may call connection_made only on its next turn
                protocol.transport = transport
                if address.password is not None:
                    user = (address.username,) if address.username else ()
                    await protocol.send(("AUTH", *user, address.password))
                if address.db:
                    await protocol.send(("SELECT", address.db))
        except BaseException as exc:
            if protocol is not None:  # connected, then refused (AUTH) or too slow
                protocol.close(RedisConnectionError("redis: connection abandoned"))
            if isinstance(exc, TimeoutError):
                raise NotConnected(
                    f"redis: could not connect within {self.connect_timeout_s:g}s"
                ) from None
            if isinstance(exc, OSError):
                raise NotConnected(f"redis: could not connect: {exc}") from None
            raise
        return protocol


def pairs(reply: list[Any]) -> dict[Any, Any]:
    """An HGETALL reply (a flat list of fields and values) as a dict."""
    return dict(zip(reply[::2], reply[1::2], strict=True))
