"""The happy path through rung with the official openai SDK: routing, pinning, streaming,
legacy completions, parameter pass-through and the x-rung-* headers."""

from __future__ import annotations

import httpx

from tests.integration.harness import client, make_config, tier


def test_routed_chat_goes_to_the_small_tier_and_says_so(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "[small] You said: What is 2+2?"
    assert completion.model == "small-model"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6
    assert raw.headers["x-rung-tier"] == "small"
    assert raw.headers["x-rung-model"] == "small-model"
    assert raw.headers["x-rung-route-reason"] == "length 12<=100"
    assert "x-rung-fallback" not in raw.headers
    assert (small.stats.completed, large.stats.completed) == (1, 0)


def test_long_prompt_is_routed_to_the_larger_tier(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "x" * 500}]
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert raw.parse().model == "large-model"
    assert (small.stats.requests, large.stats.requests) == (0, 1)


def test_a_tier_name_or_model_id_pins_that_tier(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    sdk = client(gw)
    by_name = sdk.chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": "hi"}]
    )
    by_id = sdk.chat.completions.with_raw_response.create(
        model="large-model", messages=[{"role": "user", "content": "hi"}]
    )
    for raw in (by_name, by_id):
        assert raw.headers["x-rung-tier"] == "large"
        assert raw.headers["x-rung-route-reason"] == "pinned"
    assert large.stats.requests == 2
    assert large.stats.last_payload["model"] == "large-model"


def test_streaming_chat_arrives_chunk_by_chunk_and_ends_cleanly(fake, gateway):
    small = fake("small")
    small.behavior.reply = "one two three four"
    gw = gateway(make_config([tier("small", small)]))
    with client(gw).chat.completions.with_streaming_response.create(
        model="rung",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-rung-tier"] == "small"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len(chunks) == 6  # four tokens, the finish, the usage (as OpenAI's spec has it)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert small.stats.streams_finished == 1


def test_openai_parameters_reach_the_backend_unchanged(fake, gateway):
    small = fake("small")
    gw = gateway(make_config([tier("small", small)]))
    completion = client(gw).chat.completions.create(
        model="rung",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=3,
        stop=["\n"],
        seed=7,
        logprobs=True,
        top_logprobs=1,
        n=1,
        user="team-a",
        response_format={"type": "text"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        extra_body={"top_k": 20},
    )
    sent = small.stats.last_payload
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 3,
        "stop": ["\n"],
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 1,
        "n": 1,
        "user": "team-a",
        "response_format": {"type": "text"},
        "top_k": 20,
    }.items():
        assert sent[key] == value, key
    assert sent["tools"][0]["function"]["name"] == "f"
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert completion.choices[0].finish_reason == "length"
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert [t.logprob for t in logprobs.content] == [-0.05, -0.05, -0.05]


def test_legacy_completions_route_the_same_way(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    raw = client(gw).completions.with_raw_response.create(model="rung", prompt="Say hi")
    assert raw.headers["x-rung-tier"] == "small"
    assert raw.parse().choices[0].text == "[small] You said: Say hi"
    streamed = client(gw).completions.create(model="large", prompt="Say hi", stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "[large] You said: Say hi"


def test_models_lists_the_virtual_model_and_every_tier(fake, gateway):
    small, large = fake("small"), fake("large")
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    ids = [m.id for m in client(gw).models.list()]
    assert ids == ["rung", "small", "large"]


def test_health_and_readiness(fake, gateway):
    small = fake("small")
    gw = gateway(make_config([tier("small", small)]))
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["tiers"][0]["replicas"][0]["reachable"] is True
