"""What a new user hit first (issue 27), against scripted servers: a stream cut short is never a
success, a client's own request id never breaks a request, a backend's bare 4xx says which
tier refused, and `n` is served or refused by name, never silently answered once."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import openai
import orjson
import pytest

from rung.backends.fake_server import Behavior
from rung.router.logs import JsonFormatter
from tests.integration.harness import client, drain, make_config, tier, wait_until
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "hi"}]


def test_a_stream_cut_before_its_first_token_fails_over(fake: Any, gateway: Any) -> None:
    """[DONE] with no answer at all (the server was interrupted at once): another replica
    answers, the client never sees the cut one."""
    cut, good = fake("cut", "m"), fake("good", "m")
    cut.behavior = Behavior(mode="cut_stream", cut_after=0, reply="never said")
    good.behavior.reply = "one two three"
    gw = gateway(make_config([tier("small", cut, good)], health={"cooldown_s": 60}))
    for _ in range(2):  # replicas take turns: one of the two goes to the cut one first
        stream = client(gw).chat.completions.create(model="rung", messages=ASK, stream=True)
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "one two three"
        )
        assert chunks[-1].choices[0].finish_reason == "stop"
    assert cut.stats.streams_aborted == 1
    assert good.stats.streams_finished == 2


def test_a_stream_cut_mid_answer_is_an_error_not_a_short_success(
    fake: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """What llama-cpp-python's server did when rung's health check came during a stream: a few
    tokens, no finish_reason, then [DONE]. The client gets an error event; /metrics and the
    request log say 502."""
    only = fake("only", "m")
    only.behavior = Behavior(mode="cut_stream", cut_after=3, reply="w1 w2 w3 w4 w5 w6")
    gw = gateway(make_config([tier("small", only)], server={"log_format": "json"}))
    caplog.set_level(logging.INFO, logger="rung.request")
    received: list[str] = []
    stream = client(gw).chat.completions.create(model="rung", messages=ASK, stream=True)
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        drain(stream, received)
    assert "".join(received) == "w1 w2 w3"
    samples = scrape(gw.url)
    wait_until(
        lambda: value(scrape(gw.url), "rung_requests_total", tier="small", status="502") == 1,
        what="the cut stream counted as a 502",
    )
    assert value(samples, "rung_requests_total", status="200") == 0
    formatter = JsonFormatter()
    lines = [orjson.loads(formatter.format(r)) for r in caplog.records if r.name == "rung.request"]
    assert [line["status"] for line in lines] == [502]


@pytest.mark.parametrize("given", ["my-req-42", "2f1c0c1e-7c55-4b0e-9a55-3f7a1c2d9e10"])
def test_a_clients_request_id_is_echoed_and_the_backend_gets_a_uuid(
    fake: Any, gateway: Any, given: str
) -> None:
    """llama-cpp-python's server refuses any x-request-id but a UUID (an empty 400), and rung
    used to send `<client id>.<suffix>`: every request carrying an id failed."""
    small = fake("small")
    gw = gateway(make_config([tier("small", small)]))
    sent = []
    for _ in range(2):
        answer = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "rung", "messages": ASK},
            headers={"x-request-id": given},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == given
        sent.append(small.stats.last_headers["x-request-id"])
    assert all(str(uuid.UUID(s)) == s for s in sent)
    assert sent[0] != sent[1]  # unique per request, though the client reused its id


@pytest.mark.parametrize("body", [b"", b"<html>no</html>"])
def test_a_bare_4xx_from_a_backend_names_the_tier_and_status(
    fake: Any, gateway: Any, body: bytes
) -> None:
    small = fake("small")
    small.behavior = Behavior(mode="error", status=400, error_body=body)
    gw = gateway(make_config([tier("small", small)]))
    with pytest.raises(openai.BadRequestError) as excinfo:
        client(gw).chat.completions.create(model="small", messages=ASK)
    message = excinfo.value.body["message"]  # type: ignore[index]
    assert message.startswith("tier 'small' refused the request with HTTP 400")
    assert ("no error message" in message) == (body == b"")
    assert message != "HTTP 400"


def _fan_out_tier(server: Any, n: str | None) -> dict[str, Any]:
    spec = tier("small", server)
    if n is not None:
        spec["n"] = n
    return spec


def test_n_from_a_fan_out_tier_is_n_calls_joined(fake: Any, gateway: Any) -> None:
    """A server that ignores `n` (llama.cpp refuses it): rung asks n times, with n=1 and the
    client's seed made distinct, and joins the choices; usage adds up."""
    small = fake("small")
    gw = gateway(make_config([_fan_out_tier(small, "fan_out")]))
    answer = client(gw).chat.completions.create(model="small", messages=ASK, n=3, seed=7)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.message.content == "[small] You said: hi" for c in answer.choices)
    assert small.stats.requests == 3
    assert small.stats.last_payload["n"] == 1
    assert small.stats.last_payload["seed"] in (7, 8, 9)
    one = client(gw).chat.completions.create(model="small", messages=ASK)
    assert answer.usage is not None
    assert one.usage is not None
    assert answer.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert answer.usage.prompt_tokens == 3 * one.usage.prompt_tokens


def test_n_streams_from_a_fan_out_tier_in_turn(fake: Any, gateway: Any) -> None:
    small = fake("small")
    small.behavior.reply = "x y"
    gw = gateway(make_config([_fan_out_tier(small, "fan_out")]))
    chunks = list(
        client(gw).chat.completions.create(
            model="small",
            messages=ASK,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text: dict[int, str] = {}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert text == {0: "x y", 1: "x y"}
    assert finished == {0, 1}
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == 4  # 2 tokens x 2 calls


def test_n_on_a_one_choice_tier_is_a_400_naming_it_or_routed_past_it(
    fake: Any, gateway: Any
) -> None:
    small, large = fake("small"), fake("large")
    large.behavior.honour_n = True
    gw = gateway(make_config([_fan_out_tier(small, "one"), tier("large", large)]))
    with pytest.raises(openai.BadRequestError, match=r"Tier 'small' cannot serve.*n: one"):
        client(gw).chat.completions.create(model="small", messages=ASK, n=2)
    raw = client(gw).chat.completions.with_raw_response.create(model="rung", messages=ASK, n=2)
    assert raw.headers["x-rung-tier"] == "large"
    assert len(raw.parse().choices) == 2
    assert small.stats.requests == 0
    assert large.stats.last_payload["n"] == 2  # a native tier is sent n as it is
