"""Pure rules around the cache: what a client asked for (Cache-Control), which answers may be
stored, and how a stored answer is replayed as an SSE stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FINISHED = frozenset({"stop", "tool_calls", "function_call", "eos"})


def directives(cache_control: str | None) -> tuple[bool, bool]:
    """(look up, store) from a `Cache-Control` request header: `no-cache` skips the lookup,
    `no-store` skips storing (and, as in HTTP, the lookup too)."""
    tokens = {t.strip().lower() for t in (cache_control or "").split(",")}
    no_store = "no-store" in tokens
    return not (no_store or "no-cache" in tokens), not no_store


def why_not_store(
    payload: Mapping[str, Any], body: Mapping[str, Any], max_temperature: float
) -> str | None:
    """Why this answer must not be cached (None: it may be).

    Not stored: sampling hotter than `max_temperature` (no `temperature` means 1.0, OpenAI's
    default), several choices (`n` > 1), truncated answers (finish_reason `length`), answers
    that did not finish normally (content filter, errors), and empty answers.
    """
    n = payload.get("n")
    if n is not None and n != 1:
        return "n>1"
    temperature = payload.get("temperature")
    if (1.0 if temperature is None else float(temperature)) > max_temperature:
        return "temperature"
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no-answer"
    for choice in choices:
        if not isinstance(choice, Mapping):
            return "no-answer"
        reason = choice.get("finish_reason")
        if reason == "length":
            return "truncated"
        if reason not in FINISHED:
            return f"finish:{reason}"
        message = choice.get("message")
        text = message.get("content") if isinstance(message, Mapping) else choice.get("text")
        tools = message.get("tool_calls") if isinstance(message, Mapping) else None
        if not (isinstance(text, str) and text.strip()) and not tools:
            return "empty"
    return None


def replay(body: Mapping[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A stored completion as the chunks a streaming backend would have sent."""
    chat = body.get("object") == "chat.completion"
    base = {
        "id": body.get("id", "rung-cache"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    chunks: list[dict[str, Any]] = []
    for position, choice in enumerate(body.get("choices") or []):
        index = choice.get("index", position)
        logprobs = choice.get("logprobs")
        if chat:
            message = dict(choice.get("message") or {})
            delta: dict[str, Any] = {"role": message.get("role", "assistant")}
            if message.get("content") is not None:
                delta["content"] = message["content"]
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {"index": i, **call} for i, call in enumerate(message["tool_calls"])
                ]
            first = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
            last = {"index": index, "delta": {}, "logprobs": None}
        else:
            first = {"index": index, "text": choice.get("text", ""), "logprobs": logprobs}
            first["finish_reason"] = None
            last = {"index": index, "text": "", "logprobs": None}
        last["finish_reason"] = choice.get("finish_reason")
        chunks += [{**base, "choices": [first]}, {**base, "choices": [last]}]
    if include_usage and body.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": body["usage"]})
    return chunks
