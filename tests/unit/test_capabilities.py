"""What a request needs of a tier, which tiers have it, and the conversation key (pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rung.config import parse_config
from rung.router.capabilities import Needs, capable, fit_max_tokens, needs_of, why_not
from rung.router.conversations import MemoryConversations, answer_text, conversation_key


def config(routing: dict[str, Any] | None = None, **tiers: dict[str, Any]) -> Any:
    return parse_config(
        {
            "routing": {"policy": "length", **(routing or {})},
            "tiers": [
                {"name": n, "model": f"m-{n}", "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                 "backends": [{"url": "http://127.0.0.1:9/v1"}], **extra}
                for n, extra in tiers.items()
            ],
        },
        "<t>",
        {},
    )  # fmt: skip


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("payload", "chars", "want"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, 2, Needs(False, False, False, 11, 1)),
        ({"tools": [{"type": "function"}]}, 40, Needs(True, False, False, 20, 10)),
        ({"functions": [{"name": "f"}]}, 0, Needs(True, False, False, 10, 0)),
        ({"response_format": {"type": "json_schema"}}, 4, Needs(False, True, False, 11, 1)),
        ({"response_format": {"type": "text"}}, 4, Needs(False, False, False, 11, 1)),
        ({"messages": [{"role": "user", "content": [IMAGE]}]}, 0, Needs(False, False, True, 10, 0)),
    ],
)
def test_needs(payload: dict[str, Any], chars: int, want: Needs) -> None:
    assert needs_of(payload, chars, 10) == want


def test_which_tiers_can_serve_and_why_not() -> None:
    cfg = config(
        {"min_tier_for_json": "mid"},
        small={"tools": False, "context_window": 4096},
        mid={"json_schema": True},
        big={"vision": True, "context_window": 32768},
    )
    assert capable(cfg, Needs(tools=True)) == ((1, 2), ["small: no tools"])
    assert capable(cfg, Needs(json=True)) == ((1, 2), ["small: JSON needs mid or higher"])
    assert capable(cfg, Needs(vision=True)) == ((2,), ["small: no vision", "mid: no vision"])
    assert capable(cfg, Needs(tokens=20_000)) == ((1, 2), ["small: context 4096 < ~20000 tokens"])
    assert capable(cfg, Needs(tokens=40_000))[0] == (1,)  # mid has no window set: not checked
    assert why_not(cfg, 0, Needs(tokens=4096)) is None  # exactly full still fits


def test_max_tokens_is_fitted_to_the_window() -> None:
    payload = {"max_tokens": 4096, "max_completion_tokens": 4096, "x": 1}
    assert fit_max_tokens(payload, None, 3000) is payload
    fitted = fit_max_tokens(payload, 4096, 3000)
    assert (fitted["max_tokens"], fitted["max_completion_tokens"], fitted["x"]) == (1096, 1096, 1)
    assert payload["max_tokens"] == 4096  # the client's payload is left as it was
    assert fit_max_tokens({"max_tokens": 64}, 4096, 5000)["max_tokens"] == 16  # never below 16


def test_a_conversation_is_keyed_by_its_opening_and_first_answer() -> None:
    opening = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}]
    first = conversation_key("acme", {"messages": opening}, answer="a1")
    later = {"messages": [*opening, {"role": "assistant", "content": "a1"},
                          {"role": "user", "content": "q2"}]}  # fmt: skip
    assert first is not None
    assert conversation_key("acme", later) == first
    assert conversation_key("acme", {"messages": opening}) is None  # a first turn, no answer yet
    assert conversation_key("other", later) != first  # never across tenants
    assert conversation_key("acme", {"messages": opening}, answer="a2") != first
    assert conversation_key("acme", {"prompt": "x"}) is None
    body = {"choices": [{"message": {"content": "a1"}}]}
    assert answer_text(body) == "a1"
    assert answer_text({"choices": []}) is None


async def test_memory_conversations_only_go_up_expire_and_are_bounded() -> None:
    now = [0.0]
    store = MemoryConversations(2, ttl_s=10, clock=lambda: now[0])
    rank = ("small", "large")  # the ladder, smallest first
    await store.raise_to("c1", "large", rank)
    await store.raise_to("c1", "small", rank)  # never down
    assert await store.floor("c1") == "large"
    await store.raise_to("c2", "small", rank)
    await store.raise_to("c3", "small", rank)  # the least recently used (c1) goes
    assert await store.floor("c1") is None
    now[0] = 11
    assert await store.floor("c3") is None  # expired


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"adapters": {"nope": "x"}}, "adapters: no tier named 'nope'"),
        ({"adapters": {"small": "x"}}, "tier 'small' has no adapter 'x' (it has: ['legal'])"),
    ],
)
def test_a_tenants_adapter_must_exist(policy: dict[str, Any], message: str) -> None:
    from rung.errors import ConfigError

    tiers = [{"name": "small", "model": "m", "price": {"input_per_mtok": 1, "output_per_mtok": 1},
              "backends": [{"url": "http://127.0.0.1:9/v1"}],
              "adapters": {"legal": {"model": "m-legal"}}}]  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"tiers": tiers, "tenants": [{"name": "t", "policy": policy}]}, "<t>", {})
