"""Shadow checks on the real local ladder: routed answers of the small llama.cpp tier are checked
against the large one in the background, and the estimate agrees with the same comparison made
offline on the same prompts (greedy decoding: the same answers), inside its interval."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rung.config import RoutingConfig, ShadowConfig
from rung.router.shadow import agree
from tests.integration.harness import client, wait_until

pytestmark = pytest.mark.e2e
ADMIN = "admin-key-0123456789"
SUMS = [(2, 2), (7, 5), (13, 29), (48, 57), (101, 202), (19, 23), (66, 77), (250, 750)]
PROMPTS = [f"What is {a} + {b}? Answer with the number only." for a, b in SUMS]


def test_the_live_estimate_matches_the_offline_one(local_ladder: Any, gateway: Any) -> None:
    config = local_ladder.model_copy(
        update={
            "routing": RoutingConfig(policy="length", length_thresholds=[100_000]),
            "shadow": ShadowConfig(rate=1.0, max_concurrency=1),
            "cache": local_ladder.cache.model_copy(update={"enabled": False}),
            "server": local_ladder.server.model_copy(update={"admin_key": SecretStr(ADMIN)}),
        }
    )
    gw = gateway(config)
    sdk = client(gw)
    headers = {"authorization": f"Bearer {ADMIN}"}

    def sampled() -> int:
        usage = httpx.get(f"{gw.url}/admin/usage", headers=headers, timeout=5).json()
        return int(usage["shadow"]["tiers"].get("small", {}).get("sampled", 0))

    for i, prompt in enumerate(PROMPTS):  # one at a time, so that every answer finds a free slot
        messages = [{"role": "user", "content": prompt}]
        raw = sdk.chat.completions.with_raw_response.create(
            model="rung", messages=messages, max_tokens=12, temperature=0
        )
        assert raw.headers["x-rung-tier"] == "small"
        wait_until(lambda n=i + 1: sampled() == n, timeout=120, what="the check")
    estimate = httpx.get(f"{gw.url}/admin/usage", headers=headers, timeout=5).json()["shadow"]
    live = estimate["tiers"]["small"]

    offline = []  # the same comparison, asked of both tiers directly
    for prompt in PROMPTS:
        answers = [
            sdk.chat.completions.create(
                model=tier, messages=[{"role": "user", "content": prompt}], max_tokens=12,
                temperature=0).choices[0].message.content or ""
            for tier in ("small", "large")
        ]  # fmt: skip
        offline.append(agree(answers[0], answers[1]))
    rate = sum(offline) / len(offline)
    assert live["sampled"] == len(PROMPTS)
    assert live["agreement"] == pytest.approx(rate)
    low, high = live["ci95"]
    assert low <= rate <= high
    assert estimate["keeps"] == pytest.approx(rate)  # every routed answer came from small
