"""A scriptable fake OpenAI-compatible model server, shipped so that tests, benchmarks and demos
can drive rung without real models (the way httpx ships MockTransport).

Set `server.behavior` to make it answer, stream, stall, fail with a status, return garbage or drop
the connection; `server.stats` counts what it saw. Run one from a shell with
`python -m rung.backends.fake_server --port 8001 --model tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

Mode = Literal["ok", "error", "garbage", "drop", "drop_mid_stream", "cut_stream"]


@dataclass
class Behavior:
    mode: Mode = "ok"
    status: int = 500
    delay_s: float = 0.0
    """Silence before the response starts."""
    chunk_delay_s: float = 0.0
    """Pause between streamed chunks."""
    reply: str | None = None
    """Fixed answer text; by default the server echoes the last user message."""
    logprob: float = -0.05
    """The log-probability reported for every token when logprobs are requested."""
    finish_reason: str = "stop"
    honour_n: bool = False
    """Answer `n` choices (as vLLM does), usage summed over them."""
    usage_scale: int = 1
    """Report this many times the completion tokens (a backend that over-counts)."""
    cut_after: int = 1
    """`cut_stream`: after this many tokens, end the stream with `[DONE]` and no
    finish_reason (what llama-cpp-python's server does when another request interrupts it)."""
    error_body: bytes | None = None
    """`error`: this raw body instead of an OpenAI-shaped error (b"": an empty one)."""
    usage: dict[str, Any] | None = None
    """Report exactly this usage (a backend that lies: negative, absurd counts)."""
    stream_usage: bool = True
    """Streams: send the usage chunk when the request asks for it (`stream_options.
    include_usage`, as OpenAI's spec says); False: never (a server that ignores it)."""
    ignore_max_tokens: bool = False
    """Answer the whole reply whatever max_tokens says (a runaway backend)."""
    raw_body: bytes | None = None
    """`ok`, not streamed: answer exactly these bytes."""
    gauges: tuple[float, float] | None = None
    """Serve vLLM's load gauges at /metrics: (requests waiting, KV cache share in use)."""


@dataclass
class Stats:
    requests: int = 0
    completed: int = 0
    streams_started: int = 0
    streams_finished: int = 0
    streams_aborted: int = 0
    last_payload: dict[str, Any] = field(default_factory=dict)
    last_headers: dict[str, str] = field(default_factory=dict)


def _text_of(payload: dict[str, Any]) -> str:
    if "prompt" in payload:
        prompt = payload["prompt"]
        return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeServer:
    def __init__(self, name: str = "fake", model: str = "fake-model") -> None:
        self.name = name
        self.model = model
        self.adapters: set[str] = set()
        """LoRA adapter names this server answers as (vLLM's --lora-modules)."""
        self.behavior = Behavior()
        self.stats = Stats()
        self.port = 0
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._legacy)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._models)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def answer_tokens(self, payload: dict[str, Any]) -> list[str]:
        text = self.behavior.reply
        if text is None:
            text = f"[{self.name}] You said: {_text_of(payload)[:200]}"
        words = text.split(" ")
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
        limit = payload.get("max_tokens")
        if self.behavior.ignore_max_tokens:
            return tokens
        return tokens[:limit] if isinstance(limit, int) and limit > 0 else tokens

    async def _models(self, request: web.Request) -> web.Response:
        body = {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "owned_by": "fake"}],
        }
        return web.json_response(body)

    async def _metrics(self, request: web.Request) -> web.Response:
        gauges = self.behavior.gauges
        if gauges is None:
            return web.Response(status=404)
        labels = f'{{engine="0",model_name="{self.model}"}}'
        text = (
            f"vllm:num_requests_waiting{labels} {gauges[0]}\n"
            f"vllm:kv_cache_usage_perc{labels} {gauges[1]}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _legacy(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        payload = await request.json(loads=orjson.loads)
        self.stats.requests += 1
        self.stats.last_payload = payload
        self.stats.last_headers = {k.lower(): v for k, v in request.headers.items()}
        b = self.behavior
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.mode == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if b.mode == "error":
            if b.error_body is not None:
                return web.Response(body=b.error_body, status=b.status)
            error = {"error": {"message": f"fake {b.status}", "type": "server_error"}}
            return web.json_response(error, status=b.status)
        if b.mode == "garbage":
            return web.Response(
                body=b"<html>Bad gateway, probably</html>", content_type="text/html"
            )
        tokens = self.answer_tokens(payload)
        if payload.get("stream"):
            return await self._stream(request, payload, tokens, chat)
        self.stats.completed += 1
        if b.raw_body is not None:
            return web.Response(body=b.raw_body, content_type="application/json")
        return web.Response(
            body=orjson.dumps(self._body(payload, tokens, chat)), content_type="application/json"
        )

    def _logprobs(self, tokens: list[str], payload: dict[str, Any], chat: bool) -> Any:
        lp = self.behavior.logprob
        if chat:
            if not payload.get("logprobs"):
                return None
            top = int(payload.get("top_logprobs") or 0)
            return {
                "content": [
                    {
                        "token": t,
                        "logprob": lp,
                        "bytes": list(t.encode()),
                        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}][
                            :top
                        ],
                    }
                    for t in tokens
                ]
            }
        if payload.get("logprobs") is None:
            return None
        return {"tokens": tokens, "token_logprobs": [lp] * len(tokens)}

    def _served(self, payload: dict[str, Any]) -> str:
        """The model answering: a LoRA adapter's name when one was asked for (as vLLM does),
        else this server's model."""
        asked = payload.get("model")
        return asked if asked in self.adapters else self.model

    def _usage(self, payload: dict[str, Any], tokens: list[str]) -> dict[str, Any]:
        if self.behavior.usage is not None:
            return self.behavior.usage
        prompt = max(1, len(orjson.dumps(payload.get("messages") or payload.get("prompt"))) // 4)
        n = payload.get("n") if self.behavior.honour_n else 1
        completion = len(tokens) * (n if isinstance(n, int) else 1) * self.behavior.usage_scale
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _finish(self, payload: dict[str, Any], tokens: list[str]) -> str:
        limit = payload.get("max_tokens")
        if isinstance(limit, int) and len(tokens) >= limit:
            return "length"
        return self.behavior.finish_reason

    def _body(self, payload: dict[str, Any], tokens: list[str], chat: bool) -> dict[str, Any]:
        text = "".join(tokens)
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": self._finish(payload, tokens),
            "logprobs": self._logprobs(tokens, payload, chat),
        }
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        n = payload.get("n") if self.behavior.honour_n else 1
        choices = [{**choice, "index": i} for i in range(n if isinstance(n, int) else 1)]
        return {
            "id": f"fake-{self.stats.requests}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self._served(payload),
            "choices": choices,
            "usage": self._usage(payload, tokens),
        }

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], tokens: list[str], chat: bool
    ) -> web.StreamResponse:
        self.stats.streams_started += 1
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": f"fake-{self.stats.requests}",
            "created": int(time.time()),
            "model": self._served(payload),
            "object": "chat.completion.chunk" if chat else "text_completion",
        }
        try:
            for i, token in enumerate(tokens):
                if self.behavior.mode == "cut_stream" and i == self.behavior.cut_after:
                    await resp.write(b"data: [DONE]\n\n")
                    await resp.write_eof()
                    self.stats.streams_aborted += 1
                    return resp
                if self.behavior.mode == "drop_mid_stream" and i == max(1, len(tokens) // 2):
                    assert request.transport is not None
                    request.transport.abort()
                    self.stats.streams_aborted += 1
                    return resp
                lp = self._logprobs([token], payload, chat)
                if chat:
                    delta = (
                        {"role": "assistant", "content": token} if i == 0 else {"content": token}
                    )
                    choice: dict[str, Any] = {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": None,
                        "logprobs": lp,
                    }
                else:
                    choice = {"index": 0, "text": token, "finish_reason": None, "logprobs": lp}
                await resp.write(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")
                if self.behavior.chunk_delay_s:
                    await asyncio.sleep(self.behavior.chunk_delay_s)
            last: dict[str, Any] = {"index": 0, "finish_reason": self._finish(payload, tokens)}
            if chat:
                last["delta"] = {}
            else:
                last["text"] = ""
            final: dict[str, Any] = {**base, "choices": [last]}
            await resp.write(b"data: " + orjson.dumps(final) + b"\n\n")
            options = payload.get("stream_options")
            if (
                self.behavior.stream_usage
                and isinstance(options, dict)
                and options.get("include_usage")
            ):
                usage = {**base, "choices": [], "usage": self._usage(payload, tokens)}
                await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.stats.streams_aborted += 1
            raise
        self.stats.streams_finished += 1
        return resp


async def _serve_forever(
    port: int,
    name: str,
    model: str,
    host: str,
    reply: str | None,
    mode: Mode = "ok",
    delay_s: float = 0.0,
    behavior: dict[str, Any] | None = None,
) -> None:
    server = FakeServer(name=name, model=model)
    server.behavior = Behavior(**(behavior or {}))
    server.behavior.reply = reply
    server.behavior.mode = mode
    server.behavior.delay_s = delay_s
    await server.start(host, port)
    print(f"fake backend {name} ({model}) on {server.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--reply", help="fixed answer text (default: echo the question)")
    parser.add_argument(
        "--mode",
        default="ok",
        choices=["ok", "error", "garbage", "drop", "drop_mid_stream", "cut_stream"],
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument(
        "--behavior",
        type=orjson.loads,
        default=None,
        help='other Behavior fields as JSON, e.g. {"chunk_delay_s": 0.1, "usage": {...}}',
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve_forever(
                args.port,
                args.name,
                args.model,
                args.host,
                args.reply,
                args.mode,
                args.delay,
                args.behavior,
            )
        )


if __name__ == "__main__":
    main()
