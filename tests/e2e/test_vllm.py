"""Real vLLM tiers (vLLM 0.32, CPU build, SmolLM2-135M converted from its packaged GGUF),
started by rung's own launcher as `rung up` starts them, with the official SDK through rung:
routing, JSON and SSE with usage, logprob shapes and escalation, `n`, structured output, a
tenant's LoRA adapter, tools with and without a tool parser, metrics beside vLLM's own, and
failover when a vLLM process dies. `make vllm` installs vLLM; `pytest -m vllm` runs these.
They fail (never skip silently) when vLLM is missing; RUNG_SKIP_VLLM=1 skips them on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rung.backends.local.engines import converted_dir, vllm_home, vllm_python
from rung.backends.local.launcher import LocalLadder, model_for
from rung.confidence.signals import Signals
from rung.config import parse_config
from rung.router.escalate import body_signals
from rung.tenants.keys import hash_key
from tests.e2e.conftest import require_real_models
from tests.integration.harness import Gateway, client, wait_until

# vLLM takes 35-85 s to load on an idle 2-core machine, and longer beside two more servers
pytestmark = [pytest.mark.e2e, pytest.mark.vllm, pytest.mark.timeout(900)]
HERE = Path(__file__).resolve().parent
ALICE, ACME, ADMIN = "alice-key-0123456789", "acme-key-01234567890", "admin-key-0123456789"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def require_vllm() -> str:
    if os.environ.get("RUNG_SKIP_VLLM") == "1":
        pytest.skip("RUNG_SKIP_VLLM=1")
    python = vllm_python()
    if not Path(python).exists():
        pytest.fail(f"vLLM is not installed ({python} missing): run `make vllm`")
    return python


def adapter(python: str, base: Path) -> Path:
    """A LoRA adapter with random weights for the converted base model, made once."""
    out = vllm_home() / "adapters" / f"{base.name}-test"
    if not (out / "adapter_config.json").exists():
        done = subprocess.run(
            [python, str(HERE / "vllm_adapter.py"), str(base), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return out


def tier(name: str, price: float, local: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"smollm2-{name}",
        "price": {"input_per_mtok": price, "output_per_mtok": price},
        "local": local,
        **more,
    }


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLadder]:
    """tiny: llama.cpp; small: vLLM, no tool parser; large: vLLM with a tool parser and a
    tenant's LoRA adapter. All three load SmolLM2-135M."""
    python = require_vllm()
    models_dir = require_real_models("smollm2-135m")
    weights = {"weights": "smollm2-135m", "n_ctx": 2048, "read_timeout_s": 120}
    vllm = {**weights, "engine": "vllm"}
    base = converted_dir(models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
    # the launcher converts the GGUF once; the adapter is made for that conversion
    probe = parse_config({"tiers": [tier("x", 1, vllm)]}, "<vllm>")
    model_for(probe.tiers[0], models_dir, False, python)
    lora = adapter(python, base)
    config = parse_config(
        {
            "server": {"request_timeout_s": 120, "admin_key": ADMIN},
            "health": {"interval_s": 1, "failure_threshold": 1, "cooldown_s": 60},
            "routing": {"policy": "length", "length_thresholds": [40, 80]},
            "cache": {"enabled": False},
            "escalation": {"enabled": False},
            "tiers": [
                tier("tiny", 0.05, weights),
                tier("small", 0.1, vllm),
                tier(
                    "large",
                    0.9,
                    {**vllm, "args": ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]},
                    adapters={
                        "acme": {
                            "model": "smollm2-acme",
                            "path": str(lora),
                            "price": {"input_per_mtok": 2, "output_per_mtok": 2},
                        }
                    },
                ),
            ],
            "tenants": [
                {"name": "alice", "keys": [hash_key(ALICE)]},
                {
                    "name": "acme",
                    "keys": [hash_key(ACME)],
                    "policy": {"adapters": {"large": "acme"}},
                },
            ],
        },
        "<vllm>",
    )
    log_dir = tmp_path_factory.mktemp("vllm-logs")
    with LocalLadder(config, models_dir, log_dir, allow_fetch=False) as started:
        started.config = started.start()
        yield started


@pytest.fixture(scope="module")
def served(ladder: LocalLadder, loop_thread: Any) -> Iterator[Gateway]:
    gw = Gateway(loop_thread, ladder.config)
    yield gw
    gw.stop()


def sdk(gw: Gateway, key: str = ALICE) -> openai.OpenAI:
    return client(gw, api_key=key, timeout=180)


def backend(ladder: LocalLadder, name: str) -> str:
    return next(s.url for s in ladder.servers if s.tier == name)


def test_requests_are_routed_to_vllm_and_answer_with_usage(served: Gateway) -> None:
    long = [{"role": "user", "content": "Tell me, in a few words and nothing more, " * 3}]
    raw = sdk(served).chat.completions.with_raw_response.create(
        model="rung", messages=long, max_tokens=8, temperature=0
    )
    answer = raw.parse()
    assert raw.headers["x-rung-tier"] == "large"  # past both length thresholds
    assert answer.model == "smollm2-large"
    assert answer.usage is not None
    assert 0 < answer.usage.completion_tokens <= 8
    assert answer.choices[0].finish_reason in ("stop", "length")
    chunks = list(
        sdk(served).chat.completions.create(
            model="small", messages=ASK, max_tokens=8, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    # rung asked vLLM for the usage chunk itself: a client that did not ask gets none
    plain = list(sdk(served).chat.completions.create(
        model="small", messages=ASK, max_tokens=4, stream=True))  # fmt: skip
    assert all(c.usage is None for c in plain)


def test_vllm_logprobs_are_read_as_rung_reads_them(ladder: LocalLadder) -> None:
    """vLLM's logprob shape (with `bytes` and `top_logprobs`) gives rung's escalation signals."""
    body = httpx.post(
        backend(ladder, "small") + "/chat/completions",
        json={"model": "smollm2-small", "messages": ASK, "max_tokens": 10, "temperature": 0,
              "logprobs": True, "top_logprobs": 5},
        timeout=180,
    ).json()  # fmt: skip
    signals: Signals = body_signals(body, False)
    assert signals.tokens == body["usage"]["completion_tokens"]
    assert signals.mean_logprob is not None
    assert signals.mean_logprob <= 0


@pytest.mark.parametrize(("threshold", "escalates"), [(1.0, True), (0.0, False)])
def test_escalation_judges_vllm_answers(
    ladder: LocalLadder, loop_thread: Any, threshold: float, escalates: bool
) -> None:
    """The shipped calibrator on vLLM's logprobs: a threshold of 1 escalates small's answer to
    large, 0 never."""
    from rung.config import EscalationConfig

    config = ladder.config.model_copy(
        update={"escalation": EscalationConfig(enabled=True, threshold=threshold)}
    )
    gw = Gateway(loop_thread, config)
    try:
        # 40-80 characters: the length rule routes it to small, a vLLM tier
        ask = [{"role": "user", "content": "Say hello to me, and tell me your name too."}]
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model="rung", messages=ask, max_tokens=6, temperature=0
        )
    finally:
        gw.stop()
    assert raw.headers["x-rung-route-reason"].startswith("length")
    assert raw.headers["x-rung-tier"] == ("large" if escalates else "small")
    assert 0.0 <= float(raw.headers["x-rung-confidence"]) <= 1.0
    if escalates:
        assert raw.headers["x-rung-escalated"].endswith("->large")
    else:
        assert "x-rung-escalated" not in raw.headers
    assert raw.parse().choices[0].logprobs is None  # asked by rung, not by the client


def test_n_is_served_natively_by_vllm(served: Gateway) -> None:
    answer = sdk(served).chat.completions.create(
        model="small", messages=ASK, max_tokens=6, n=3, temperature=1.0, seed=1
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert answer.usage is not None
    assert answer.usage.completion_tokens >= 3


def test_json_schema_is_enforced_by_vllm(served: Gateway) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population": {"type": "integer", "maximum": 100000000},
        },
        "required": ["city", "population"],
    }
    answer = sdk(served).chat.completions.create(
        model="small", messages=ASK, max_tokens=120, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop"
    parsed = json.loads(answer.choices[0].message.content or "")
    assert set(parsed) == {"city", "population"}
    assert isinstance(parsed["population"], int)


def test_a_tenants_lora_adapter_is_served_by_vllm_and_priced_as_such(served: Gateway) -> None:
    raw = sdk(served, ACME).chat.completions.with_raw_response.create(
        model="large", messages=ASK, max_tokens=6, temperature=0
    )
    assert raw.parse().model == "smollm2-acme"  # vLLM answered as the adapter
    models = httpx.get(served.url.replace("127.0.0.1", "127.0.0.1") + "/v1/models",
                       headers={"authorization": f"Bearer {ACME}"}).json()  # fmt: skip
    assert "large" in {m["id"] for m in models["data"]}
    headers = {"authorization": f"Bearer {ADMIN}"}
    wait_until(
        lambda: httpx.get(f"{served.url}/admin/usage/records", params={"tenant": "acme"},
                          headers=headers).json()["records"],
        timeout=10, what="acme's record",
    )  # fmt: skip
    (record,) = httpx.get(
        f"{served.url}/admin/usage/records", params={"tenant": "acme"}, headers=headers
    ).json()["records"]
    assert record["tier"] == "large@acme"
    used = record["prompt_tokens"] + record["completion_tokens"]
    assert record["cost"] == used * 2  # the adapter's price, not the tier's 0.9


def test_tools_need_a_tool_parser_and_say_so_without_one(served: Gateway) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "capital",
                "description": "The capital city of a country",
                "parameters": {"type": "object", "properties": {"country": {"type": "string"}},
                               "required": ["country"]},
            },
        }
    ]  # fmt: skip
    answer = sdk(served).chat.completions.create(
        model="large", messages=ASK, tools=tools, tool_choice="auto", max_tokens=40
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(served).chat.completions.create(
            model="small", messages=ASK, tools=tools, tool_choice="auto", max_tokens=40
        )
    assert "tool-call-parser" in str(refused.value.body)  # vLLM's own reason, passed on


def test_rungs_metrics_agree_with_vllms_own(served: Gateway, ladder: LocalLadder) -> None:
    def vllm_count() -> float:
        text = httpx.get(backend(ladder, "small").removesuffix("/v1") + "/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("vllm:request_success_total{")
        )

    def rung_count() -> float:
        from tests.integration.test_metrics import scrape, value

        return value(scrape(served.url), "rung_requests_total", tier="small")

    before_vllm, before_rung = vllm_count(), rung_count()
    for _ in range(3):
        sdk(served).chat.completions.create(model="small", messages=ASK, max_tokens=3)
    wait_until(lambda: rung_count() - before_rung == 3, timeout=10, what="rung's count")
    assert vllm_count() - before_vllm == 3


def test_a_killed_vllm_tier_fails_over_and_leaves_rotation(
    served: Gateway, ladder: LocalLadder
) -> None:
    """Runs last: it kills the small tier's vLLM server."""
    small = next(s for s in ladder.servers if s.tier == "small")
    small.kill()  # the server, its engine and its workers
    middle = [{"role": "user", "content": "Name one planet of the solar system, just one."}]
    raw = sdk(served).chat.completions.with_raw_response.create(
        model="rung", messages=middle, max_tokens=4
    )
    assert raw.headers["x-rung-tier"] == "large"
    assert raw.headers["x-rung-fallback"].startswith("small: ")
    ready = lambda: httpx.get(served.url + "/readyz").json()["tiers"]  # noqa: E731
    wait_until(lambda: not ready()[1]["replicas"][0]["in_rotation"], timeout=10, what="out")
    time.sleep(0.1)
