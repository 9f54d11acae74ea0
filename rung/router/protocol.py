"""uvicorn's httptools protocol with the two bounds it lacks at the edge: request headers must
arrive within `server.header_timeout_s` (a connection that opens and trickles, or sends
nothing, is closed instead of held forever) and may total at most `server.max_header_bytes`
(a 1 MB Authorization header gets 431, not hashed)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
STATUS_408 = b"HTTP/1.1 408 Request Timeout\r\n"


def bounded(header_timeout_s: float, max_header_bytes: int) -> Any:
    """What uvicorn's `http=` takes: the protocol with these bounds (a partial of a module-level
    class, so that `--workers N` can hand it to its worker processes)."""
    return functools.partial(
        BoundedHttpTools, header_timeout_s=header_timeout_s, max_header_bytes=max_header_bytes
    )


class BoundedHttpTools(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        header_timeout_s: float = 10.0,
        max_header_bytes: int = 65_536,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_header_bytes = max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._start_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:  # our refusal, raised from a parser callback to stop parsing
            self._refuse(STATUS_431, f"request headers over {self.max_header_bytes} bytes")
            return
        super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise ValueError("request headers too large")  # httptools stops parsing here

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its headers did come
        self._refuse(STATUS_408, f"request headers not received within {self.header_timeout_s:g}s")

    def _refuse(self, status: bytes, message: str) -> None:
        body = message.encode("ascii")
        self.transport.write(
            status
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: "
            + str(len(body)).encode("ascii")
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()
