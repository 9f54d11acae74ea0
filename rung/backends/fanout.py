"""`n` choices from servers that answer one at a time (a tier declared `n: fan_out`): the
request is sent `n` times with `n: 1` and the answers are joined into one completion whose
choices are numbered 0..n-1, as OpenAI numbers them. Pure functions over plain JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Json = dict[str, Any]
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def wanted(payload: Mapping[str, Any]) -> int:
    """How many choices the request asks for (1 when `n` is absent or not a positive int)."""
    n = payload.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def one_choice(payload: Json, i: int) -> Json:
    """The payload of the i-th single-choice call. A client's seed makes every call alike, so
    each call gets seed + i: the choices differ as they would from one `n` request."""
    out = {**payload, "n": 1}
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        out["seed"] = seed + i
    return out


class UsageSum:
    """The calls' usage added up (each call really read the prompt: prompt tokens add up). One
    call without usage makes the total unknown (None) rather than undercounted."""

    def __init__(self) -> None:
        self.total: Json | None = dict.fromkeys(USAGE_FIELDS, 0)

    def add(self, usage: Any) -> None:
        if self.total is None:
            return
        if not isinstance(usage, Mapping):
            self.total = None
            return
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.total = None
                return
            self.total[name] += value


def join(bodies: list[Json]) -> Json:
    """One completion from the single-choice answers, in call order."""
    choices: list[Json] = []
    usage = UsageSum()
    for i, body in enumerate(bodies):
        choices.append({**body["choices"][0], "index": i})
        usage.add(body.get("usage"))
    joined = {k: v for k, v in bodies[0].items() if k != "usage"}
    joined["choices"] = choices
    if usage.total is not None:
        joined["usage"] = usage.total
    return joined


def renumber(batch: Iterable[Json], index: int) -> tuple[list[Json], Any]:
    """The i-th call's stream chunks as choice `index`, and the usage one of them carried
    (taken out: the joined stream ends with one usage chunk for all calls, `usage_chunk`)."""
    out: list[Json] = []
    usage: Any = None
    for chunk in batch:
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            continue
        out.append(
            {
                **{k: v for k, v in chunk.items() if k != "usage"},
                "choices": [{**c, "index": index} for c in choices],
            }
        )
    return out, usage


def usage_chunk(template: Json, usage: Json) -> Json:
    """The closing chunk that carries the summed usage (OpenAI's shape: no choices)."""
    return {
        **{k: v for k, v in template.items() if k not in ("choices", "usage")},
        "choices": [],
        "usage": usage,
    }
