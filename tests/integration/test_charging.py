"""Every request charged what it cost and no budget overrun (issue 28), against scripted bad
backends: streams longer than their reservation's lease, backends that ignore max_tokens or lie
about usage, JSON too deep to send on, spec-following backends that stream usage only when
asked, clients that hang up mid-stream; with the memory ledger and a real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson
import pytest

from rung.backends.fake_server import Behavior
from rung.tenants.keys import hash_key
from tests.integration.harness import make_config, tier, wait_until
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.integration
ALICE, ADMIN = "alice-key-0123456789", "admin-key-0123456789"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
WORDS = " ".join(f"w{i}" for i in range(80))


def config(server: Any, alice: dict[str, Any], limits: dict[str, Any] | None = None) -> Any:
    return make_config(
        [tier("small", server)],
        server={"admin_key": ADMIN, "request_timeout_s": 30},
        tenants=[{"name": "alice", "keys": [hash_key(ALICE)], "policy": alice}],
        limits=limits or {},
    )


def budget(gw: Any) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {ADMIN}"}
    usage = httpx.get(f"{gw.url}/admin/usage", params={"tenant": "alice"}, headers=headers)
    return dict(usage.json()["budget"])


def records(gw: Any) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {ADMIN}"}
    got = httpx.get(f"{gw.url}/admin/usage/records", params={"tenant": "alice"}, headers=headers)
    assert got.status_code == 200, got.text
    return list(got.json()["records"])


def chat(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "small", "messages": [{"role": "user", "content": text}], **extra}


def post(gw: Any, payload: Any) -> httpx.Response:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    return httpx.post(f"{gw.url}/v1/chat/completions", content=data, headers=headers, timeout=60)


async def _stream(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> str:
    headers = {"authorization": f"Bearer {ALICE}"}
    async with client.stream(
        "POST", f"{url}/v1/chat/completions", json=payload, headers=headers
    ) as response:
        if response.status_code != 200:
            return str(response.status_code)
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    return "error" if b'"error"' in body else "ok"


def waves(gw: Any, payload: dict[str, Any], size: int, pause_s: float) -> list[str]:
    """`size` streams at once, a pause (longer than the lease), `size` more, all to the end."""

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=60) as client:
            first = [asyncio.create_task(_stream(client, gw.url, payload)) for _ in range(size)]
            await asyncio.sleep(pause_s)
            second = [asyncio.create_task(_stream(client, gw.url, payload)) for _ in range(size)]
            return list(await asyncio.gather(*first, *second))

    return asyncio.run(run())


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_streams_longer_than_the_lease_never_overrun_the_budget(
    fake: Any, gateway: Any, request: pytest.FixtureRequest, store: str
) -> None:
    """The attack: lease 1 s, streams of 3 s, a wave, a pause past the lease, another wave.
    Before, each wave was admitted against the same money (spent 0.60 of 0.40)."""
    slow = fake("small")
    slow.behavior = Behavior(reply=WORDS[:119], chunk_delay_s=0.1)  # 40 chunks, ~4 s
    limits: dict[str, Any] = {"reservation_lease_s": 1.0}
    if store == "redis":
        redis = request.getfixturevalue("redis_server")
        limits |= {"store": "redis", "redis_url": redis.url}
    payload = chat(stream=True, max_tokens=40)
    one = post(gateway(config(fake("probe"), {})), chat(max_tokens=40))  # the size of one
    assert one.status_code == 200
    daily = 0.0012  # a handful of reservations' worth
    gw = gateway(config(slow, {"daily_budget_usd": daily, "on_budget": "reject"}, limits))
    outcomes = waves(gw, payload, 12, 1.6)
    wait_until(lambda: budget(gw)["reserved_usd"] == 0, timeout=15, what="all settled")
    spent = budget(gw)["spent_today_usd"]
    assert spent <= daily
    served = outcomes.count("ok")
    assert 0 < served < 24
    assert set(outcomes) <= {"ok", "429"}
    assert len(records(gw)) == served  # refused ones were never admitted: no record owed


def test_a_backend_ignoring_max_tokens_is_cut_and_charged_no_more_than_reserved(
    fake: Any, gateway: Any
) -> None:
    runaway = fake("small")
    runaway.behavior = Behavior(reply=WORDS, ignore_max_tokens=True, stream_usage=False)
    gw = gateway(config(runaway, {"daily_budget_usd": 10.0}))
    headers = {"authorization": f"Bearer {ALICE}"}
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json=chat(stream=True, max_tokens=5),
        headers=headers,
        timeout=30,
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    pieces = [e for e in events if '"content"' in e]
    assert len(pieces) == 5 + 8  # max_tokens and the slack, not one more
    assert "went on past max_tokens" in events[-1]
    wait_until(lambda: budget(gw)["reserved_usd"] == 0, what="settled")
    (record,) = records(gw)
    assert record["status"] == 502
    assert record["completion_tokens"] <= 5


@pytest.mark.parametrize(
    ("usage", "kind"),
    [
        ({"prompt_tokens": -1_000_000, "completion_tokens": -1_000_000}, "invalid"),
        ({"prompt_tokens": 10**12, "completion_tokens": 10**12}, "invalid"),
        ({"prompt_tokens": 3.5, "completion_tokens": "7"}, "invalid"),
    ],
)
def test_usage_no_request_could_have_is_charged_the_reservation_never_credited(
    fake: Any, gateway: Any, caplog: pytest.LogCaptureFixture, usage: Any, kind: str
) -> None:
    liar = fake("small")
    liar.behavior = Behavior(usage=usage)
    gw = gateway(config(liar, {"daily_budget_usd": 10.0}))
    caplog.set_level(logging.WARNING, logger="rung.tenants")
    for _ in range(3):
        assert post(gw, chat(max_tokens=5)).status_code == 200
    wait_until(lambda: len(records(gw)) == 3, what="three records")
    spent = budget(gw)["spent_today_usd"]
    assert 0 < spent < 0.01  # charged, never credited, never 10^12 tokens' worth
    recorded = records(gw)
    assert all(r["completion_tokens"] == 5 for r in recorded)  # the bound, not the claim
    assert all(r["extra"] == {"usage": kind} for r in recorded)
    headers = {"authorization": f"Bearer {ADMIN}"}
    summary = httpx.get(f"{gw.url}/admin/usage", params={"tenant": "alice"}, headers=headers)
    assert abs(summary.json()["today"]["saved_usd"]) < 0.01  # not 199,999,799 USD
    samples = scrape(gw.url)  # a 500 here before (a negative counter increment)
    assert value(samples, "rung_usage_unreliable_total", tier="small", kind=kind) == 3
    assert value(samples, "rung_requests_total", status="200") == 3
    assert caplog.text.count("reported usage no request could have") == 1  # once per tier


@pytest.mark.parametrize("where", ["messages", "content_part", "completions"])
def test_json_deeper_than_rung_can_send_on_is_a_400_at_the_door(
    fake: Any, gateway: Any, where: str
) -> None:
    server = fake("small")
    gw = gateway(config(server, {"daily_budget_usd": 10.0}))
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    if where == "messages":
        payload: dict[str, Any] = {**chat(), "metadata": {"deep": deep}}
        url = "/v1/chat/completions"
    elif where == "content_part":
        part = {"type": "text", "text": "hi", "extra": deep}
        payload = {"model": "small", "messages": [{"role": "user", "content": [part]}]}
        url = "/v1/chat/completions"
    else:
        payload = {"model": "small", "prompt": "hi", "logit_bias": {"deep": deep}}
        url = "/v1/completions"
    headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    data = _dumps(payload)  # orjson writes at most 255 levels
    answer = httpx.post(f"{gw.url}{url}", content=data, headers=headers, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "nested deeper than 128" in answer.json()["error"]["message"]
    assert server.stats.requests == 0
    assert budget(gw)["reserved_usd"] == 0


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def test_a_backend_answer_too_deep_to_send_settles_and_is_recorded(fake: Any, gateway: Any) -> None:
    """Any failure after admission settles the reservation and writes a record (only
    RungError did before; a TypeError from orjson held the reservation for the whole lease)."""
    server = fake("small")
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "small-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "deep": deep,
    }
    server.behavior = Behavior(raw_body=_dumps(body))
    gw = gateway(config(server, {"daily_budget_usd": 10.0}))
    answer = post(gw, chat(max_tokens=5))
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"
    assert budget(gw)["reserved_usd"] == 0
    (record,) = records(gw)
    assert record["status"] == 500


def test_streams_are_charged_their_reported_usage_and_the_chunk_goes_only_to_who_asked(
    fake: Any, gateway: Any
) -> None:
    """A spec-following backend sends usage on a stream only when asked: rung always asks, so
    a 5-token stream costs 5 tokens, not its whole reservation (15x before)."""
    server = fake("small")
    server.behavior = Behavior(reply="a b c d e")
    gw = gateway(config(server, {"daily_budget_usd": 10.0}))
    headers = {"authorization": f"Bearer {ALICE}"}

    def stream(**extra: Any) -> list[dict[str, Any]]:
        payload = chat(stream=True, max_tokens=200, **extra)
        with httpx.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=payload, headers=headers, timeout=30
        ) as response:
            lines = [x[6:] for x in response.iter_lines() if x.startswith("data: {")]
        return [orjson.loads(x) for x in lines]

    plain = stream()
    assert all("usage" not in c for c in plain)
    assert server.stats.last_payload["stream_options"] == {"include_usage": True}
    asked = stream(stream_options={"include_usage": True})
    assert [c["usage"]["completion_tokens"] for c in asked if c.get("usage")] == [5]
    wait_until(lambda: len(records(gw)) == 2, what="two records")
    for record in records(gw):
        assert record["completion_tokens"] == 5
        assert record["extra"] == {}  # reported, checked, believed
        assert record["cost"] == record["prompt_tokens"] * 1 + 5 * 2


def test_a_stream_without_usage_is_charged_what_was_relayed(fake: Any, gateway: Any) -> None:
    server = fake("small")
    server.behavior = Behavior(reply="one two three four", stream_usage=False)
    gw = gateway(config(server, {"daily_budget_usd": 10.0}))
    headers = {"authorization": f"Bearer {ALICE}"}
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json=chat(stream=True, max_tokens=500),
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        response.read()
    wait_until(lambda: len(records(gw)) == 1, what="a record")
    (record,) = records(gw)
    assert record["extra"] == {"usage": "estimated"}
    assert record["completion_tokens"] == 5  # "one two three four" is 18 chars: 5 by chars/4
    assert record["cost"] < 500 * 2  # not the reservation


def test_a_client_hanging_up_mid_stream_is_499_charged_what_was_relayed(
    fake: Any, gateway: Any
) -> None:
    server = fake("small")
    server.behavior = Behavior(reply=WORDS, chunk_delay_s=0.05)
    gw = gateway(config(server, {"daily_budget_usd": 10.0}))
    headers = {"authorization": f"Bearer {ALICE}"}
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json=chat(stream=True, max_tokens=80),
        headers=headers,
        timeout=30,
    ) as response:
        seen = 0
        for line in response.iter_lines():
            seen += '"content"' in line
            if seen == 5:
                break  # hang up
    wait_until(lambda: len(records(gw)) == 1, timeout=10, what="a record")
    (record,) = records(gw)
    assert record["status"] == 499
    assert 5 <= record["completion_tokens"] < 80  # what was relayed, not max_tokens
    assert record["extra"] == {"usage": "estimated"}
    assert budget(gw)["reserved_usd"] == 0
    samples = scrape(gw.url)
    assert value(samples, "rung_requests_total", status="499") == 1
    assert value(samples, "rung_requests_total", status="502") == 0
    time.sleep(0.3)
    assert server.stats.streams_aborted == 1
