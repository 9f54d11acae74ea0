"""A loopback fake of Anthropic's Messages API (`POST /v1/messages`, JSON and SSE streams, its
error shape), so that rung's litellm backend is tested against the provider's own wire format
rather than a mock of litellm."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rung.ports import free_port


class FakeAnthropic:
    def __init__(self, text: str = "Hello from a fake Claude") -> None:
        self.text = text
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.status != 200:
            error = {"type": "error", "error": {"type": "invalid_request_error" if self.status
                     < 500 else "api_error", "message": f"fake failure {self.status}"}}  # fmt: skip
            return web.json_response(error, status=self.status)
        words = self.text.split(" ")
        if not body.get("stream"):
            return web.json_response({
                "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": self.text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": len(words)},
            })  # fmt: skip
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await event("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 1}}})  # fmt: skip
        block = {"type": "text", "text": ""}
        await event("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": block})  # fmt: skip
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta = {"type": "text_delta", "text": piece}
            await event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": delta})  # fmt: skip
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(words)}})  # fmt: skip
        await event("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp
