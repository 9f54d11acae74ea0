"""The streamed answer on the wire: server-sent events re-emitted from the backend's chunks, an
error event when a stream breaks after its first byte, the whole answer assembled for the cache
and settlement, and the backend stream released whatever the client does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from rung.backends import OpenStream
from rung.cache.assemble import StreamAssembler
from rung.errors import RungError
from rung.router.errors import status_of
from rung.router.escalate import ProbedStream
from rung.router.schemas import error_body

log = logging.getLogger("rung.router")
OnDone = Callable[[dict[str, Any] | None], Awaitable[None]]
"""Called once a stream has ended: with the assembled answer, or None if it broke."""


class StreamResponse(StreamingResponse):
    """SSE response that releases the backend stream even if the client left before the start."""

    def __init__(
        self,
        stream: OpenStream | ProbedStream,
        headers: dict[str, str],
        done: OnDone | None = None,
    ) -> None:
        self.done = done
        self.finished = False
        finish = self._finish if done is not None else None
        super().__init__(_sse(stream, finish), media_type="text/event-stream", headers=headers)
        self.stream = stream

    async def _finish(self, answer: dict[str, Any] | None) -> None:
        """Exactly once per stream: settle (and maybe cache) what it produced."""
        if self.done is not None and not self.finished:
            self.finished = True
            await self.done(answer)

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
            await self.stream.aclose()
            await self._finish(None)  # abandoned or broken: the reservation is still settled


async def _sse(
    stream: OpenStream | ProbedStream, done: OnDone | None = None
) -> AsyncIterator[bytes]:
    """Re-emit the backend's chunks; a failure after the first byte ends with an error event.
    With `done`, the chunks are also assembled and the whole answer handed to it at the end."""
    assembler = StreamAssembler() if done is not None else None
    try:
        async for batch in stream:
            if assembler is not None:
                for chunk in batch:
                    assembler.feed(chunk)
            yield b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in batch)
    except RungError as exc:
        _, type_ = status_of(exc)
        log.warning("stream from %s broke: %s", stream.replica.label, exc.message)
        body = error_body("the model server failed mid-stream", type_, None, exc.code)
        yield b"data: " + orjson.dumps(body) + b"\n\n"
        if done is not None:
            await done(None)
        return
    yield b"data: [DONE]\n\n"
    if done is not None and assembler is not None:
        await done(assembler.result())
