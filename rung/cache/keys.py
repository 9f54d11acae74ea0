"""What a cache entry is keyed by: the request's scope and its last user message.

A lookup may only ever return an entry whose scope equals the request's: the scope is a hash of
everything in the request except the last user message's text (system prompt, earlier turns,
tools, response format, and every parameter that can change an answer). Inside a scope the last
user message is matched exactly, then semantically. Pure functions only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rung.config import ROUTED_MODEL_NAMES

NOT_IN_SCOPE = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier"})
"""Request fields that cannot change an answer's content: left out of the scope so that a
streamed and a non-streamed request share entries. Everything else is in it, so an unknown
parameter (e.g. vLLM's `top_k`) separates entries instead of leaking answers across them."""


@dataclass(frozen=True)
class CacheKey:
    scope: str
    """Hex digest of the request without its last user message's text."""
    text: str
    """The last user message (or the prompt): what is matched exactly, then semantically."""

    @property
    def exact(self) -> str:
        return hashlib.sha256(f"{self.scope}\0{self.text}".encode()).hexdigest()


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or a list of text parts only (images and audio: None)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [
            part.get("text")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        ]
        strings = [t for t in texts if isinstance(t, str)]
        if len(strings) == len(content):
            return "\n".join(strings)
    return None


def cache_key(path: str, payload: Mapping[str, Any]) -> CacheKey | None:
    """The request's key, or None when it has no plain text to match (then it is not cached)."""
    scoped = {k: v for k, v in payload.items() if k not in NOT_IN_SCOPE}
    model = scoped.get("model")
    if model in ROUTED_MODEL_NAMES:
        scoped["model"] = "<routed>"  # every routed alias routes the same way
    if path == "/chat/completions":
        messages = scoped.get("messages")
        if not isinstance(messages, list):
            return None
        last = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if isinstance(messages[i], Mapping) and messages[i].get("role") == "user"
            ),
            None,
        )
        if last is None:
            return None
        text = _text_of(messages[last].get("content"))
        if text is None:
            return None
        messages = list(messages)
        messages[last] = {**messages[last], "content": None}
        scoped["messages"] = messages
    elif path == "/completions":
        text = scoped.get("prompt")
        if not isinstance(text, str):
            return None
        scoped["prompt"] = None
    else:
        return None
    try:
        canonical = orjson.dumps({"path": path, "request": scoped}, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-serialisable: validation passed it, but do not guess
        return None
    return CacheKey(hashlib.sha256(canonical).hexdigest(), text)
