"""A tier on a provider that does not speak the OpenAI protocol (`type: litellm`), tested
against a loopback fake of Anthropic's Messages API: answers, streams, usage, errors and
failover come back in OpenAI's shape through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from rung.tenants.policy import request_cost
from tests.fake_anthropic import FakeAnthropic
from tests.integration.harness import client, make_config, tier, wait_until

pytestmark = pytest.mark.integration
ADMIN = "admin-key-0123456789"


@pytest.fixture
def claude(loop_thread: Any) -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


def hosted(server: FakeAnthropic) -> dict[str, Any]:
    return {
        "name": "hosted",
        "model": "claude-3-5-haiku",
        "price": {"input_per_mtok": 0.8, "output_per_mtok": 4.0},
        "backends": [
            {
                "url": server.url,
                "type": "litellm",
                "api_key": "sk-ant-test",
                "litellm_model": "anthropic/claude-3-5-haiku-latest",
            }
        ],
    }


def test_a_hosted_tier_answers_and_streams_in_openai_shape(
    fake: Any, gateway: Any, claude: FakeAnthropic
) -> None:
    gw = gateway(make_config([tier("small", fake("small")), hosted(claude)],
                             server={"admin_key": ADMIN}))  # fmt: skip
    sdk = client(gw)
    raw = sdk.chat.completions.with_raw_response.create(
        model="hosted", messages=[{"role": "user", "content": "Hello?"}], max_tokens=32
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from a fake Claude"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 5)
    assert raw.headers["x-rung-tier"] == "hosted"
    sent = claude.requests[-1]
    assert sent["model"] == "claude-3-5-haiku-latest"
    assert sent["max_tokens"] == 32
    assert claude.headers[-1]["x-api-key"] == "sk-ant-test"  # the provider's own auth header
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in sdk.chat.completions.create(
            model="hosted", messages=[{"role": "user", "content": "Hello?"}], stream=True,
            max_tokens=32)
        if chunk.choices
    )  # fmt: skip
    assert text == "Hello from a fake Claude"
    assert claude.requests[-1]["stream"] is True
    headers = {"authorization": f"Bearer {ADMIN}"}

    def usage() -> Any:
        return httpx.get(f"{gw.url}/admin/usage", headers=headers, timeout=5).json()

    wait_until(lambda: usage()["today"]["requests"] == 2, what="both settled")
    hosted_usage = usage()["today"]["by_tier"]["hosted"]
    assert hosted_usage["prompt_tokens"] == 18  # 9 + 9: the stream's usage chunk counted too
    assert hosted_usage["cost_usd"] == 2 * request_cost(9, 5, 0.8, 4.0) / 1e6  # micro-USD each


def test_provider_errors_map_to_rungs(fake: Any, gateway: Any, claude: FakeAnthropic) -> None:
    large = fake("large")
    gw = gateway(make_config([hosted(claude), tier("large", large)]))
    sdk = client(gw)
    claude.status = 400  # the request's fault: passed on, never retried elsewhere
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="hosted", messages=[{"role": "user", "content": "x"}])
    assert "fake failure 400" in str(refused.value)
    assert large.stats.requests == 0
    claude.status = 500  # the provider's fault: a routed request fails over up the ladder
    raw = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert "hosted: backend_error" in raw.headers["x-rung-fallback"]
