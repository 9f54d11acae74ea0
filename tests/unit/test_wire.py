"""rung.backends.wire against a raw TCP server on loopback that writes exactly the bytes each test
scripts (framing, keep-alive, closes, silence), so every branch of the client meets a real
socket."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from rung.backends.wire import HIGH_WATER, WireError, WirePool, WireTimeout

Script = Callable[[dict[str, str], bytes, asyncio.StreamWriter, int], Awaitable[bool]]
"""(request headers, body, writer, n-th request on this connection) -> keep the connection?"""


class Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[str, Server]]:
    seen = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        n = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen.requests.append((lines[0], headers, body))
                keep = await script(headers, body, writer, n)
                n += 1
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", seen
    finally:
        server.close()


def pool(url: str, read_timeout_s: float = 5.0) -> WirePool:
    return WirePool(
        url, {"content-type": "application/json", "authorization": "Bearer k"}, 1.0, read_timeout_s
    )


def reply(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


async def post(p: WirePool, body: bytes = b'{"q":1}', limit: int = 1 << 20) -> tuple[int, bytes]:
    async with p.post("/chat/completions", body, {"x-request-id": "abc"}) as exchange:
        return exchange.status, await exchange.read(limit)


async def answer_json(
    headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int
) -> bool:
    w.write(reply(b'{"echo":' + body + b"}"))
    return True


async def test_request_framing_and_keep_alive_reuse() -> None:
    async with serving(answer_json) as (url, seen):
        p = pool(url)
        assert await post(p, b'{"a":1}') == (200, b'{"echo":{"a":1}}')
        assert await post(p, b'{"a":2}') == (200, b'{"echo":{"a":2}}')
        line, headers, body = seen.requests[1]
        assert line == "POST /v1/chat/completions HTTP/1.1"
        assert headers["host"] == url.split("/")[2]
        assert headers["authorization"] == "Bearer k"
        assert headers["x-request-id"] == "abc"
        assert headers["content-length"] == "7"
        assert body == b'{"a":2}'
        assert (seen.connections, p.opened) == (1, 1)  # the second request reused the first's
        p.close()


async def test_chunked_stream_arrives_in_order_and_connection_is_reused() -> None:
    async def chunked(
        headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int
    ) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(5):
            data = b"data: %d\n\n" % i
            w.write(b"%x\r\n%b\r\n" % (len(data), data))
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")
        return True

    async with serving(chunked) as (url, seen):
        p = pool(url)
        for _ in range(2):
            async with p.post("/chat/completions", b"{}", None) as exchange:
                pieces = [piece async for piece in exchange.chunks()]
            assert b"".join(pieces) == b"".join(b"data: %d\n\n" % i for i in range(5))
            assert len(pieces) >= 2  # handed on as they came, not at the end
        assert (seen.connections, p.opened) == (1, 1)
        p.close()


async def test_body_until_close_is_complete_and_not_reused() -> None:
    async def until_close(
        headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int
    ) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 10_000)
        return False

    async with serving(until_close) as (url, seen):
        p = pool(url)
        assert await post(p) == (200, b"x" * 10_000)
        assert await post(p) == (200, b"x" * 10_000)
        assert (seen.connections, p.opened) == (2, 2)
        p.close()


async def test_gzip_body_is_inflated() -> None:
    async def gz(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply(gzip.compress(b'{"ok":true}' * 100), b"Content-Encoding: gzip\r\n"))
        return True

    async with serving(gz) as (url, _):
        p = pool(url)
        assert await post(p) == (200, b'{"ok":true}' * 100)
        p.close()


async def test_unknown_content_encoding_is_an_error() -> None:
    async def br(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply(b"????", b"Content-Encoding: br\r\n"))
        return True

    async with serving(br) as (url, _):
        p = pool(url)
        with pytest.raises(WireError, match="content-encoding br"):
            await post(p)
        p.close()


async def test_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply(b'{"n":1}'))
        return False  # keep-alive promised, then closed

    async with serving(once) as (url, seen):
        p = pool(url)
        assert await post(p) == (200, b'{"n":1}')
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert await post(p) == (200, b'{"n":1}')
        assert (seen.connections, p.opened) == (2, 2)
        p.close()


async def test_reused_connection_dropped_before_any_answer_is_retried_once_fresh() -> None:
    async def drop_second(
        headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int
    ) -> bool:
        if n == 1:
            return False  # read the request, closed without a byte: the keep-alive race
        w.write(reply(b'{"n":%d}' % n))
        return True

    async with serving(drop_second) as (url, seen):
        p = pool(url)
        assert await post(p) == (200, b'{"n":0}')
        assert await post(p) == (200, b'{"n":0}')  # answered by a fresh connection
        assert (len(seen.requests), p.opened) == (3, 2)
        p.close()


async def test_fresh_connection_dropped_before_an_answer_is_an_error() -> None:
    async def drop(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        return False

    async with serving(drop) as (url, seen):
        p = pool(url)
        with pytest.raises(WireError, match="closed the connection"):
            await post(p)
        assert len(seen.requests) == 1  # not retried: a fresh connection is no race
        p.close()


async def test_answer_cut_short_is_an_error_and_not_retried() -> None:
    async def short(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        return False

    async with serving(short) as (url, seen):
        p = pool(url)
        with pytest.raises(WireError, match="closed the connection"):
            await post(p)
        assert len(seen.requests) == 1
        p.close()


async def test_silence_past_the_read_timeout_fails_and_bytes_reset_it() -> None:
    async def slow(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:  # a byte every 0.1 s for 0.6 s: never silent for 0.3 s
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(6):
                await asyncio.sleep(0.1)
                w.write(b"1\r\nx\r\n")
                await w.drain()
            w.write(b"0\r\n\r\n")
            return True
        await asyncio.sleep(5)
        return False

    async with serving(slow) as (url, _):
        p = pool(url, read_timeout_s=0.3)
        assert await post(p) == (200, b"x" * 6)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(WireTimeout):
            await post(p)
        assert 0.25 < loop.time() - started < 2.0
        p.close()


async def test_refused_connection_is_an_error() -> None:
    async with serving(answer_json) as (url, _):
        pass  # closed: nothing listens there now
    p = pool(url)
    with pytest.raises(WireError, match="cannot connect"):
        await post(p)


async def test_body_over_the_limit_is_an_error() -> None:
    async with serving(answer_json) as (url, _):
        p = pool(url)
        with pytest.raises(WireError, match="size limit"):
            await post(p, b'{"q":"' + b"y" * 5000 + b'"}', limit=1000)
        p.close()


async def test_a_header_with_a_line_break_is_refused() -> None:
    p = pool("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="line break"):
        p.post("/chat/completions", b"{}", {"x-request-id": "a\r\nx-evil: 1"})


def test_only_plain_http() -> None:
    with pytest.raises(ValueError, match="plain http"):
        pool("https://example.com/v1")


async def test_a_reader_that_falls_behind_stops_the_socket() -> None:
    sent = 0

    async def flood(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        nonlocal sent
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (8 << 20))
        for _ in range(128):
            w.write(b"z" * 65536)
            await w.drain()
            sent += 65536
        return True

    async with serving(flood) as (url, _):
        p = pool(url)
        async with p.post("/chat/completions", b"{}", None) as exchange:
            await asyncio.sleep(0.5)  # not reading
            assert exchange.conn.buffered <= HIGH_WATER + 256 * 1024
            assert sent < 8 << 20  # the server is held back, not buffered in the gateway
            total = 0
            async for piece in exchange.chunks():
                total += len(piece)
        assert total == 8 << 20
        assert p.opened == 1
        p.close()


async def test_a_cancelled_exchange_closes_its_connection() -> None:
    async def hang(headers: dict[str, str], body: bytes, w: asyncio.StreamWriter, n: int) -> bool:
        if len(seen.requests) == 1:  # the first request of all: never answered
            await asyncio.sleep(5)
        w.write(reply(b"{}"))
        return True

    async with serving(hang) as (url, seen):
        p = pool(url)
        task = asyncio.create_task(post(p))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await post(p) == (200, b"{}")  # on a new connection: the old one is spoiled
        assert p.opened == 2
        p.close()


def test_runs_on_uvloop_as_the_gateway_does() -> None:
    async def main() -> tuple[int, bytes]:
        async with serving(answer_json) as (url, _):
            p = pool(url)
            try:
                await post(p)
                return await post(p)
            finally:
                p.close()

    assert uvloop.run(main()) == (200, b'{"echo":{"q":1}}')
