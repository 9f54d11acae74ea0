"""Escalation helpers: ask backends for logprobs, judge an answer (or a stream's first tokens),
strip what the client did not ask for, and hold a probed stream's first chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from rung.backends import Json, OpenStream
from rung.cache.policy import replay
from rung.confidence.signals import Signals, TokenScore, answer_signals, token_scores

TOP_LOGPROBS = 5


def client_wants_logprobs(path: str, payload: Json) -> bool:
    value = payload.get("logprobs")
    return bool(value) if path == "/chat/completions" else value is not None


def with_logprobs(path: str, payload: Json) -> Json:
    """The payload asking for token logprobs (leaving the client's own request as it was)."""
    if client_wants_logprobs(path, payload):
        return payload
    if path == "/chat/completions":
        return {**payload, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
    return {**payload, "logprobs": TOP_LOGPROBS}


def _choice_text(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    if isinstance(message, dict):
        return str(message.get("content") or "")
    return str(choice.get("text") or choice.get("delta", {}).get("content") or "")


def _choice_scores(choice: dict[str, Any]) -> list[TokenScore]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):
        return token_scores(logprobs["content"])
    # Legacy completions: parallel lists.
    values = logprobs.get("token_logprobs") or []
    return [TokenScore(float(v)) for v in values if isinstance(v, int | float)]


def body_signals(body: Json, json_expected: bool) -> Signals:
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    return answer_signals(
        _choice_text(choice),
        choice.get("finish_reason"),
        _choice_scores(choice),
        json_expected=json_expected,
    )


def finish_of(body: Json) -> str | None:
    """The first choice's finish_reason."""
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) else None


def json_expected(payload: Json) -> bool:
    fmt = payload.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def strip_logprobs(chunks: list[Json]) -> list[Json]:
    """Remove logprobs rung asked for on the client's behalf (in place; returns the list)."""
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and "logprobs" in choice:
                choice["logprobs"] = None
    return chunks


def stream_tokens(batch: list[Json]) -> tuple[int, list[TokenScore], str, str | None]:
    """(tokens seen, their scores, text, finish_reason if it ended) in a batch of chunks."""
    count, scores, text = 0, [], ""
    finished: str | None = None
    for chunk in batch:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            piece = _choice_text(choice)
            found = _choice_scores(choice)
            scores += found
            count += len(found) or (1 if piece else 0)
            text += piece
            finished = finished or choice.get("finish_reason")
    return count, scores, text, finished


class ProbedStream:
    """A stream whose first batches were read to judge it: yields them, then the rest."""

    def __init__(
        self,
        stream: OpenStream,
        rest: AsyncIterator[list[Json]],
        held: list[list[Json]],
        transform: Callable[[list[Json]], list[Json]],
    ) -> None:
        self.replica = stream.replica
        self._stream = stream
        self._rest = rest
        self._held = held
        self._transform = transform

    async def __aiter__(self) -> AsyncIterator[list[Json]]:
        for batch in self._held:
            yield self._transform(batch)
        async for batch in self._rest:
            yield self._transform(batch)

    async def aclose(self) -> None:
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._stream.aclose()


@dataclass(frozen=True)
class _Label:
    label: str


class Replay:
    """An answer that was held until judged (`escalation.streams: hold`), streamed out as the
    chunks a backend would have sent: one batch, usage included (the relay keeps it for the
    clients that asked)."""

    replica = _Label("held")

    def __init__(self, body: Json) -> None:
        self._chunks = replay(body, True)

    async def __aiter__(self) -> AsyncIterator[list[Json]]:
        yield self._chunks

    async def aclose(self) -> None:
        return None


def held_payload(payload: Json) -> Json:
    """A stream request asked whole, to be judged before anything goes out."""
    return {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}


async def probe(
    stream: OpenStream, tokens: int, deadline: float
) -> tuple[AsyncIterator[list[Json]], list[list[Json]], int, str, list[TokenScore], str | None]:
    """Read a stream's first `tokens` tokens (or all of it, if shorter): (the rest, the batches
    held, tokens seen, their text, their scores, the finish_reason if it ended; "" for a
    stream that ended without one)."""
    rest = stream.__aiter__()
    held: list[list[Json]] = []
    scores: list[TokenScore] = []
    seen, text = 0, ""
    finished: str | None = None
    async with asyncio.timeout_at(deadline):
        while seen < tokens and not finished:
            try:
                batch = await anext(rest)
            except StopAsyncIteration:
                finished = finished or ""
                break
            held.append(batch)
            count, found, piece, finished = stream_tokens(batch)
            seen, scores, text = seen + count, scores + found, text + piece
    return rest, held, seen, text, scores, finished
