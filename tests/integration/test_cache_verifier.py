"""The shipped hit verifier, as the gateway runs it: the hand-made near misses that earlier
versions served are misses, a plain rephrasing is still a hit, and the error budget sets the
threshold (no budget that can be kept: exact repeats only)."""

from __future__ import annotations

import pytest

from rung.cache.guard import near_miss
from rung.config import parse_config
from rung.router.runtime import build_routing, build_verify
from tests.integration.harness import client, make_config, tier

NEAR_MISSES = [
    ("How many cores does the ryzen5 have?", "How many cores does the ryzen9 have?"),
    ("What does error E404 mean?", "What does error E502 mean?"),
    ("How do I install pip for python2?", "How do I install pip for python3?"),
    ("Is 10 mg of melatonin too much?", "Is 10 g of melatonin too much?"),
    ("How do I convert 5 miles to km?", "How do I convert 5 km to miles?"),
    ("What was the weather like in Paris yesterday?", "What was the weather like in Paris today?"),
    ("Why is B the correct answer?", "Why is C the correct answer?"),
    ("What foods raise blood pressure?", "What foods lower blood pressure?"),
    (
        "How do I convert a string to an int in Java?",
        "How do I convert an int to a string in Java?",
    ),
    ("Summarise report soak4 for me", "Summarise report soak2 for me"),
]


def verify_for(**cache: object):
    t = {
        "name": "small",
        "model": "m",
        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }
    config = parse_config({"routing": {"policy": "length"}, "cache": cache, "tiers": [t]}, "x", {})
    routing = build_routing(config)
    assert routing.cache is not None
    verify, settings = build_verify(config, routing)
    embed = routing.cache.batcher.embedder.embed
    return verify, settings, embed


@pytest.mark.parametrize(("cached", "asked"), NEAR_MISSES)
def test_hand_made_near_misses_are_never_served(cached: str, asked: str) -> None:
    verify, _, embed = verify_for()
    assert verify is not None
    a, b = embed([asked, cached])
    allowed = near_miss(asked, cached) is None and verify(asked, cached, float(a @ b))
    assert not allowed


def test_a_plain_rephrasing_is_served() -> None:
    verify, _, embed = verify_for()
    assert verify is not None
    pairs = [
        ("What is the capital of France?", "What's the capital of France?"),
        ("How do I learn Python quickly?", "How can I learn Python quickly?"),
    ]
    for cached, asked in pairs:
        a, b = embed([asked, cached])
        assert near_miss(asked, cached) is None
        assert verify(asked, cached, float(a @ b)), (asked, cached)


def test_a_budget_that_cannot_be_kept_turns_semantic_hits_off() -> None:
    verify, settings, _ = verify_for(max_wrong_hit_rate=1e-6)
    assert verify is None
    assert settings.semantic is False


def test_through_the_gateway_a_near_miss_is_a_miss_and_a_rephrasing_a_hit(fake, gateway):
    small = fake("small")
    config = make_config(
        [tier("small", small)], routing={"policy": "length"}, cache={"enabled": True}
    )
    sdk = client(gateway(config))

    def ask(text: str):
        return sdk.chat.completions.with_raw_response.create(
            model="rung", messages=[{"role": "user", "content": text}], temperature=0
        )

    assert ask("What foods raise blood pressure?").headers["x-rung-cache"] == "miss"
    near = ask("What foods lower blood pressure?")
    assert near.headers["x-rung-cache"] == "miss"
    assert near.parse().choices[0].message.content.endswith("lower blood pressure?")
    assert small.stats.requests == 2
    assert ask("What foods raise blood pressure").headers["x-rung-cache"] == "hit-semantic"
    assert small.stats.requests == 2
