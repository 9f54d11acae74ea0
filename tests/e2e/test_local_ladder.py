"""The whole path against real models: openai SDK -> rung -> llama.cpp servers on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from rung.classifiers.cascade import start
from rung.classifiers.model import load, resolve
from tests.integration.harness import client

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.mark.parametrize("tier", ["small", "large"])
def test_each_tier_answers_with_logprobs(local_ladder, gateway, tier):
    gw = gateway(local_ladder)
    raw = client(gw).chat.completions.with_raw_response.create(
        model=tier, messages=QUESTION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2
    )
    completion = raw.parse()
    expected = next(t.model for t in local_ladder.tiers if t.name == tier)
    assert raw.headers["x-rung-tier"] == tier
    assert completion.model == expected
    assert "paris" in (completion.choices[0].message.content or "").lower()
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    assert all(t.logprob <= 0 for t in logprobs.content)
    assert len(logprobs.content[0].top_logprobs) == 2
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 8


@pytest.mark.parametrize("tier", ["small", "large"])
def test_each_tier_streams_with_logprobs(local_ladder, gateway, tier):
    gw = gateway(local_ladder)
    with client(gw).chat.completions.with_streaming_response.create(
        model=tier,
        messages=QUESTION,
        max_tokens=8,
        temperature=0,
        stream=True,
        logprobs=True,
        top_logprobs=1,
    ) as response:
        assert response.headers["x-rung-tier"] == tier
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "paris" in text.lower()
    with_logprobs = [c for c in chunks if c.choices and c.choices[0].logprobs]
    assert with_logprobs
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_the_local_classifier_routes_and_a_tier_name_pins(local_ladder, gateway):
    gw = gateway(local_ladder)
    sdk = client(gw)
    routed = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=QUESTION, max_tokens=4
    )
    # The shipped local classifier decided, and its start rule holds for what it reported.
    reason = routed.headers["x-rung-route-reason"]
    assert reason.startswith("classifier small=")
    fields = dict(p.split("=", 1) for p in reason.split()[1:] if "=" in p)
    assert fields["goal"] == "keep:0.95"
    prices = [(t.price.input_per_mtok + t.price.output_per_mtok) / 2 for t in local_ladder.tiers]
    chars = load(resolve("local")).answer_chars
    prompt = len(QUESTION[0]["content"])
    expected = [p * (prompt + c) for p, c in zip(prices, chars, strict=True)]
    probs = [float(fields["small"]), float(fields["large"])]
    first = start(probs, expected, float(fields["lambda"]), range(2))
    assert routed.headers["x-rung-tier"] == ["small", "large"][first] == fields["start"]
    pinned = sdk.chat.completions.with_raw_response.create(
        model="qwen2.5-coder-1.5b-instruct", messages=QUESTION, max_tokens=4
    )
    assert pinned.headers["x-rung-tier"] == "large"
    assert pinned.headers["x-rung-route-reason"] == "pinned"
    legacy = sdk.completions.create(
        model="small", prompt="The capital of France is", max_tokens=4, temperature=0
    )
    assert "paris" in legacy.choices[0].text.lower()


def test_a_tier_killed_mid_run_fails_over_to_the_next(start_ladder, gateway):
    """SmolLM2 as the small tier (fast), Qwen 0.5B above it; kill the small server while it is
    generating: the request is answered by the next tier, and later requests skip the dead one."""
    ladder = start_ladder(
        {
            "server": {"request_timeout_s": 120},
            "health": {"interval_s": 0.5, "failure_threshold": 1, "cooldown_s": 30},
            "routing": {"policy": "length", "length_thresholds": [1000]},
            "tiers": [
                {
                    "name": "small",
                    "model": "smollm2-135m-instruct",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "local": {"weights": "smollm2-135m"},
                },
                {
                    "name": "large",
                    "model": "qwen2.5-coder-0.5b-instruct",
                    "price": {"input_per_mtok": 4, "output_per_mtok": 4},
                    "local": {"weights": "qwen2.5-coder-0.5b"},
                },
            ],
        }
    )
    gw = gateway(ladder.config)
    sdk = client(gw, timeout=120)
    ask = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            lambda: sdk.chat.completions.with_raw_response.create(
                model="rung", messages=ask, max_tokens=400, temperature=0
            )
        )
        small = next(s for s in ladder.servers if s.tier == "small")
        time.sleep(1.5)  # smollm is mid-generation: 400 tokens take ~5 s
        assert small.process is not None
        small.process.kill()
        raw = future.result(timeout=120)
    assert raw.headers["x-rung-tier"] == "large"
    assert raw.headers["x-rung-fallback"] == "small: backend_error; answered by large"
    assert raw.parse().model == "qwen2.5-coder-0.5b-instruct"
    after = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=QUESTION, max_tokens=4
    )
    assert after.headers["x-rung-fallback"] == "small: unavailable; answered by large"
    with pytest.raises(openai.APIStatusError) as excinfo:
        sdk.chat.completions.create(model="small", messages=QUESTION, max_tokens=4)
    assert excinfo.value.status_code in (502, 503)
    ready = httpx.get(gw.url + "/readyz").json()
    assert [t["replicas"][0]["in_rotation"] for t in ready["tiers"]] == [False, True]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("threshold", "escalates"), [(1.0, True), (0.0, False)])
def test_escalation_on_the_real_ladder(local_ladder, gateway, stream, threshold, escalates):
    """Real logprobs from llama.cpp, the shipped calibrator: a threshold of 1 escalates every
    answer of the small tier, 0 none."""
    from rung.config import CacheConfig, EscalationConfig, GoalConfig

    config = local_ladder.model_copy(
        update={
            # The cheapest goal: the classifier picks the small tier, so there is a tier to
            # climb to.
            "routing": local_ladder.routing.model_copy(
                update={"goal": GoalConfig(max_cost_share=0.01)}
            ),
            "escalation": EscalationConfig(enabled=True, threshold=threshold),
            "cache": CacheConfig(enabled=False),
        }
    )
    gw = gateway(config)
    sdk = client(gw)
    if stream:
        with sdk.chat.completions.with_streaming_response.create(
            model="rung", messages=QUESTION, max_tokens=8, temperature=0, stream=True
        ) as response:
            headers = response.headers
            chunks = list(response.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        models = {c.model for c in chunks}
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
    else:
        raw = sdk.chat.completions.with_raw_response.create(
            model="rung", messages=QUESTION, max_tokens=8, temperature=0
        )
        headers, completion = raw.headers, raw.parse()
        text = completion.choices[0].message.content or ""
        models = {completion.model}
        assert completion.choices[0].logprobs is None
    assert "paris" in text.lower()
    assert 0.0 <= float(headers["x-rung-confidence"]) <= 1.0
    if escalates:
        assert headers["x-rung-escalated"] == "small->large"
        assert headers["x-rung-tier"] == "large"
        assert models == {"qwen2.5-coder-1.5b-instruct"}
    else:
        assert "x-rung-escalated" not in headers
        assert headers["x-rung-tier"] == "small"
        assert models == {"qwen2.5-coder-0.5b-instruct"}
