"""The streamed answer on the wire: server-sent events re-emitted from the backend's chunks, an
error event when a stream breaks after its first byte, the whole answer assembled for the cache
and settlement, and the backend stream released whatever the client does.

A relayed stream is bounded: it is cut with an error event once it has relayed more pieces than
`max_tokens` for every choice allows (a backend that ignores max_tokens), once the request's
deadline has passed, or once its reservation lapsed (the spend store was away longer than the
lease). What was relayed is counted so that a stream without reported usage, or one the client
hung up on, is charged for what the backend produced, not for its whole reservation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from rung.backends import OpenStream
from rung.cache.assemble import StreamAssembler
from rung.errors import RungError
from rung.router.errors import status_of
from rung.router.escalate import ProbedStream, Replay
from rung.router.schemas import error_body

log = logging.getLogger("rung.router")
SLACK = 8
"""Pieces a stream may relay past max_tokens x n before it is cut (a role chunk, a last empty
delta and servers that split one token in two never reach it)."""
CLIENT_CLOSED = 499
"""A client that hung up (nginx's convention): in usage records, logs and metrics."""


@dataclass(frozen=True)
class Relayed:
    """What a stream relayed: its pieces (chunks carrying text or tool-call arguments, each at
    least one token) and their characters."""

    pieces: int
    chars: int


OnDone = Callable[[dict[str, Any] | None, int, Relayed], Awaitable[None]]
"""Called once a stream has ended: the assembled answer (None if it broke or was cut), the
outcome's status, and what was relayed."""


@dataclass(frozen=True)
class Bounds:
    max_pieces: int
    """max_tokens x n, plus SLACK."""
    deadline: float
    """The request's deadline (loop time)."""
    lapsed: Callable[[], bool] = lambda: False
    """Whether the request's reservation ran out."""
    keep_usage: bool = True
    """Whether the client asked for the usage chunk (stream_options.include_usage); rung asks
    every backend for it, and takes it out of the client's stream otherwise."""


class Cut(RungError):
    """A relayed stream stopped by rung at one of its bounds."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message, code=code)
        self.status = status


class Relay:
    """One stream's relay: SSE bytes out, the answer and its counts kept for settlement."""

    def __init__(
        self, stream: OpenStream | ProbedStream | Replay, bounds: Bounds, done: OnDone
    ) -> None:
        self.stream = stream
        self.bounds = bounds
        self._done = done
        self.assembler = StreamAssembler()
        self.pieces = 0
        self.chars = 0
        self.finished = False

    async def finish(self, answer: dict[str, Any] | None, status: int) -> None:
        """Exactly once per stream: settle (and maybe cache) what it produced."""
        if not self.finished:
            self.finished = True
            await self._done(answer, status, Relayed(self.pieces, self.chars))

    def _count(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            size = len(text) if isinstance(text, str) else 0
            if isinstance(delta, dict):
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    arguments = function.get("arguments") if isinstance(function, dict) else None
                    size += len(arguments) if isinstance(arguments, str) else 0
            if size:
                self.pieces += 1
                self.chars += size

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        bounds = self.bounds
        if loop.time() > bounds.deadline:
            raise Cut("the answer did not finish within the request deadline", 504, "timeout")
        if bounds.lapsed():
            raise Cut(
                "the request's budget reservation could not be kept; the stream was cut",
                503,
                "service_unavailable",
            )

    async def events(self) -> AsyncIterator[bytes]:
        """Re-emit the backend's chunks; a failure after the first byte ends with an error
        event."""
        loop = asyncio.get_running_loop()
        keep_usage, most = self.bounds.keep_usage, self.bounds.max_pieces
        try:
            async for batch in self.stream:
                out: list[bytes] = []
                for chunk in batch:
                    self._count(chunk)
                    if self.pieces > most:  # a backend that ignores max_tokens: not one more
                        if out:
                            yield b"".join(out)
                        raise Cut(
                            "the model server went on past max_tokens; the stream was cut",
                            502,
                            "backend_error",
                        )
                    self.assembler.feed(chunk)
                    if not keep_usage and chunk.get("usage") is not None:
                        if not chunk.get("choices"):
                            continue
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if out:
                    yield b"".join(out)
                self._check(loop)
        except RungError as exc:
            if isinstance(exc, Cut):
                status, type_, message = exc.status, "server_error", exc.message
            else:
                (status, type_), message = status_of(exc), "the model server failed mid-stream"
            log.warning("stream from %s ended early: %s", self.stream.replica.label, exc.message)
            body = error_body(message, type_, None, exc.code)
            yield b"data: " + orjson.dumps(body) + b"\n\n"
            await self.stream.aclose()
            await self.finish(None, status)
            return
        yield b"data: [DONE]\n\n"
        await self.finish(self.assembler.result(), 200)


class StreamResponse(StreamingResponse):
    """SSE response that releases the backend stream even if the client left before the start,
    and settles what the stream produced however it ended."""

    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:
        self.relay = relay
        super().__init__(relay.events(), media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's version runs two anyio tasks per stream; one plain watcher task that
        # cancels this one on disconnect costs a third as much on the hot path.
        task = asyncio.current_task()
        assert task is not None
        streaming, disconnected = True, False

        async def watch() -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            if streaming:  # then `task` is suspended inside the try below
                task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            streaming = False
        except asyncio.CancelledError:
            streaming = False
            if not disconnected:
                raise
            task.uncancel()
        finally:
            streaming = False
            watcher.cancel()
            await self.relay.stream.aclose()
            # Abandoned (charged for what was relayed) or broken: settled either way.
            await asyncio.shield(self.relay.finish(None, CLIENT_CLOSED if disconnected else 502))
