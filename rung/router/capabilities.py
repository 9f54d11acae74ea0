"""What a request needs of a tier (tools, JSON mode, images, context) and which tiers have it.
Pure functions over the payload and the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rung.backends.fanout import wanted
from rung.config import RungConfig

CHARS_PER_TOKEN = 4
"""The cheap estimate: about four characters of English per token (an over-estimate for code
and other languages is safer than an under-estimate is)."""


@dataclass(frozen=True)
class Needs:
    tools: bool = False
    json: bool = False
    vision: bool = False
    tokens: int = 0
    """Estimated prompt tokens plus the answer's max_tokens."""
    prompt_tokens: int = 0
    """The estimated prompt alone."""
    choices: int = 1
    """`n`: answers wanted."""


def needs_of(payload: dict[str, Any], prompt_chars: int, max_tokens: int) -> Needs:
    messages = payload.get("messages")
    images = isinstance(messages, list) and any(_has_image(m) for m in messages)
    response_format = payload.get("response_format")
    json = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    tools = bool(payload.get("tools") or payload.get("functions"))
    prompt = -(-prompt_chars // CHARS_PER_TOKEN)
    return Needs(tools, json, images, prompt + max_tokens, prompt, wanted(payload))


def fit_max_tokens(
    payload: dict[str, Any], window: int | None, prompt_tokens: int
) -> dict[str, Any]:
    """The payload for a tier whose window is `window` tokens: max_tokens no more than the room
    the prompt leaves (a backend refuses a request that does not fit)."""
    if window is None:
        return payload
    room = max(16, window - prompt_tokens)
    out = dict(payload)
    for key in ("max_tokens", "max_completion_tokens"):
        value = out.get(key)
        if isinstance(value, int) and value > room:
            out[key] = room
    return out


def _has_image(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") in ("image_url", "input_image") for p in content
    )


def why_not(config: RungConfig, tier: int, needs: Needs) -> str | None:
    """Why the tier cannot serve the request (None: it can)."""
    t = config.tiers[tier]
    routing = config.routing
    if needs.tools and not t.tools:
        return "no tools"
    if needs.tools and _below(config, tier, routing.min_tier_for_tools):
        return f"tools need {routing.min_tier_for_tools} or higher"
    if needs.json and not t.json_schema:
        return "no JSON mode"
    if needs.json and _below(config, tier, routing.min_tier_for_json):
        return f"JSON needs {routing.min_tier_for_json} or higher"
    if needs.vision and not t.vision:
        return "no vision"
    if t.context_window is not None and needs.tokens > t.context_window:
        return f"context {t.context_window} < ~{needs.tokens} tokens"
    if needs.choices > 1 and t.choices == "one":
        return f"one choice per request (n: one), {needs.choices} asked"
    return None


def _below(config: RungConfig, tier: int, minimum: str | None) -> bool:
    floor = config.tier_index(minimum) if minimum is not None else None
    return floor is not None and tier < floor


def capable(
    config: RungConfig, needs: Needs, among: tuple[int, ...] | None = None
) -> tuple[tuple[int, ...], list[str]]:
    """(the tiers that can serve it, `<tier>: <why not>` for each that cannot), looking only at
    the tiers `among` (default: all)."""
    able, skipped = [], []
    for index, tier in enumerate(config.tiers):
        if among is not None and index not in among:
            continue
        reason = why_not(config, index, needs)
        if reason is None:
            able.append(index)
        else:
            skipped.append(f"{tier.name}: {reason}")
    return tuple(able), skipped
