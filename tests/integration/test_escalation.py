"""Escalation through the gateway with fake backends whose logprobs a test sets: JSON and
streams, headers, logprob stripping, accounting, caching, pinning, max_steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rung.confidence.calibrator import FEATURES, Calibrator, TierCalibrator
from rung.tenants.policy import request_cost
from tests.integration.harness import client, make_config, tier

pytestmark = pytest.mark.integration
LONG = " ".join(f"word{i}" for i in range(60))  # longer than the 24-token stream probe


@pytest.fixture
def calibrator(tmp_path: Path) -> str:
    """P(correct) = sigmoid(4 + 4 * mean_logprob): confident at -0.05, not at -3."""
    weights = [4.0 if f == "mean_logprob" else 0.0 for f in FEATURES]
    model = TierCalibrator(weights, 4.0, [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    tiers = {name: model for name in ("small", "medium", "large")}
    path = tmp_path / "calibrator.json"
    Calibrator(tiers, dict(tiers), 24).save(path)
    return str(path)


def ladder(
    fake: Any,
    calibrator: str,
    names: tuple[str, ...] = ("small", "large"),
    shadow: dict[str, Any] | None = None,
    **kw: Any,
) -> Any:
    servers = [fake(n) for n in names]
    config = make_config(
        [tier(n, s) for n, s in zip(names, servers, strict=True)],
        routing={"policy": "length", "length_thresholds": [10_000, 20_000][: len(names) - 1]},
        escalation={"enabled": True, "threshold": 0.5, "calibrator": calibrator, **kw},
        shadow=shadow or {},
    )
    return servers, config


def ask(gw: Any, **params: Any) -> Any:
    return client(gw).chat.completions.with_raw_response.create(
        model=params.pop("model", "rung"),
        messages=[{"role": "user", "content": "What is 2+2?"}],
        **params,
    )


def test_a_low_confidence_answer_is_answered_again_by_the_next_tier(fake, gateway, calibrator):
    (small, large), config = ladder(fake, calibrator)
    small.behavior.logprob = -3.0
    gw = gateway(config)
    raw = ask(gw)
    completion = raw.parse()
    assert raw.headers["x-rung-escalated"] == "small->large"
    assert raw.headers["x-rung-tier"] == "large"
    assert float(raw.headers["x-rung-confidence"]) > 0.5  # large's answer, judged confident
    assert completion.choices[0].message.content == "[large] You said: What is 2+2?"
    assert completion.choices[0].logprobs is None  # asked for by rung, not by the client
    assert small.stats.last_payload["logprobs"] is True  # rung asked the backend
    assert (small.stats.completed, large.stats.completed) == (1, 1)


def test_a_confident_answer_stays_and_client_logprobs_are_kept(fake, gateway, calibrator):
    (_, large), config = ladder(fake, calibrator)
    gw = gateway(config)
    raw = ask(gw, logprobs=True, top_logprobs=1)
    assert "x-rung-escalated" not in raw.headers
    assert raw.headers["x-rung-tier"] == "small"
    assert float(raw.headers["x-rung-confidence"]) == pytest.approx(0.977, abs=0.01)
    assert raw.parse().choices[0].logprobs is not None  # the client asked: kept
    assert large.stats.requests == 0


@pytest.mark.parametrize(("threshold", "escalates"), [(1.0, True), (0.0, False)])
def test_the_threshold_forces_or_forbids(fake, gateway, calibrator, threshold, escalates):
    (_, large), config = ladder(fake, calibrator, threshold=threshold)
    gw = gateway(config)
    raw = ask(gw)
    assert ("x-rung-escalated" in raw.headers) is escalates
    assert large.stats.requests == int(escalates)


def test_pinned_requests_never_escalate(fake, gateway, calibrator):
    (small, large), config = ladder(fake, calibrator)
    small.behavior.logprob = -3.0
    raw = ask(gateway(config), model="small")
    assert raw.headers["x-rung-tier"] == "small"
    assert "x-rung-escalated" not in raw.headers
    assert large.stats.requests == 0


def test_max_steps_bounds_the_climb(fake, gateway, calibrator):
    (small, medium, large), config = ladder(
        fake, calibrator, ("small", "medium", "large"), max_steps=1
    )
    small.behavior.logprob = medium.behavior.logprob = -3.0
    raw = ask(gateway(config))
    assert raw.headers["x-rung-escalated"] == "small->medium"
    assert large.stats.requests == 0


def test_a_stream_probe_switches_to_the_next_tier_cleanly(fake, gateway, calibrator):
    (small, large), config = ladder(fake, calibrator)
    small.behavior.logprob = -3.0
    small.behavior.reply = large.behavior.reply = LONG
    small.behavior.chunk_delay_s = 0.01
    gw = gateway(config)
    with client(gw).chat.completions.with_streaming_response.create(
        model="rung",
        messages=[{"role": "user", "content": "Count."}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-rung-escalated"] == "small->large"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == LONG  # one clean answer: large's, from its start
    assert all(c.model == "large-model" for c in chunks)
    assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
    time.sleep(0.2)
    assert small.stats.streams_aborted == 1  # the small tier's stream was cancelled
    assert large.stats.streams_finished == 1


def test_a_confident_stream_flows_on_after_its_probe(fake, gateway, calibrator):
    (small, large), config = ladder(fake, calibrator)
    small.behavior.reply = LONG
    gw = gateway(config)
    with client(gw).chat.completions.with_streaming_response.create(
        model="rung", messages=[{"role": "user", "content": "Count."}], stream=True
    ) as response:
        assert "x-rung-escalated" not in response.headers
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == LONG
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert large.stats.requests == 0


def test_every_call_is_charged_and_the_escalated_away_answer_is_not_cached(
    fake, gateway, calibrator
):
    small, large = fake("small"), fake("large")
    key, admin_key = "alice-key-0123456789", "admin-key-0123456789"
    config = make_config(
        [tier("small", small), tier("large", large)],
        routing={"policy": "length", "length_thresholds": [10_000]},
        escalation={"enabled": True, "threshold": 0.5, "calibrator": calibrator},
        cache={"enabled": True},
        server={"admin_key": admin_key},
        tenants=[{"name": "alice", "keys": [key], "policy": {"daily_budget_usd": 1.0}}],
    )
    small.behavior.logprob = -3.0
    gw = gateway(config)
    sdk = client(gw)
    sdk.api_key = key
    raw = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "What is 2+2?"}], temperature=0
    )
    assert raw.headers["x-rung-escalated"] == "small->large"
    usage = raw.parse().usage
    assert usage is not None
    # Both answers are paid for (same token counts from the fake servers; price 1 in, 2 out).
    one = request_cost(usage.prompt_tokens, usage.completion_tokens, 1.0, 2.0)
    headers = {"authorization": f"Bearer {admin_key}"}
    for _ in range(50):
        summary = httpx.get(
            f"{gw.url}/admin/usage", params={"tenant": "alice"}, headers=headers
        ).json()
        if summary["today"]["requests"]:
            break
        time.sleep(0.05)
    assert round(summary["budget"]["spent_today_usd"] * 1e6) == 2 * one
    records = httpx.get(
        f"{gw.url}/admin/usage/records", params={"tenant": "alice"}, headers=headers
    ).json()["records"]
    assert records[0]["escalated"] == "small->large"
    assert records[0]["tiers"] == ["small", "large"]
    stats = httpx.get(
        f"{gw.url}/admin/cache/stats", params={"tenant": "alice"}, headers=headers
    ).json()
    assert stats["stored"] == 1
    again = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "What is 2+2?"}], temperature=0
    )
    assert again.headers["x-rung-cache"] == "hit-exact"
    assert again.headers["x-rung-tier"] == "large"  # the cached answer is large's, never small's
    assert json.loads(again.text)["choices"][0]["message"]["content"].startswith("[large]")


def test_an_escalation_is_recorded_for_recalibration(fake, gateway, calibrator, tmp_path):
    from rung.confidence.fit import examples

    record = tmp_path / "shadow.jsonl"
    # rate 0: no checks, only the free escalation lines
    (small, large), config = ladder(fake, calibrator, shadow={"record": str(record)})
    small.behavior.logprob = -3.0
    small.behavior.reply, large.behavior.reply = "It is 5.", "4"
    gw = gateway(config)
    assert ask(gw).headers["x-rung-escalated"] == "small->large"
    small.behavior.logprob = -0.05
    assert "x-rung-escalated" not in ask(gw).headers  # confident: no line
    deadline = time.monotonic() + 5
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # a wrong second line (written after its response) would be there by now
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["source"] == "escalation"
    assert line["tiers"] == {"answered": "small", "reference": "large"}
    first = line["results"]["small-model"]
    assert first["score"] == 0.0  # "It is 5." does not say what "4" says
    assert first["signals"]["mean_logprob"] == pytest.approx(-3.0)
    assert "prompt" not in line  # record_text is off
    assert large.stats.requests == 1  # nothing asked beyond the escalation itself
    # `rung calibrate` reads it as one labelled output of the small tier
    assert [label for _, label in examples(lines, "small-model", None)] == [0]


def test_escalation_lines_can_be_turned_off(fake, gateway, calibrator, tmp_path):
    record = tmp_path / "shadow.jsonl"
    shadow = {"record": str(record), "record_escalations": False}
    servers, config = ladder(fake, calibrator, shadow=shadow)
    servers[0].behavior.logprob = -3.0
    gw = gateway(config)
    assert ask(gw).headers["x-rung-escalated"] == "small->large"
    time.sleep(0.3)
    assert not record.exists()
