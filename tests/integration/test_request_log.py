"""Follow one request by its id: echoed or generated, and (log_format: json) one JSON line per
request with what rung did, never the prompt or the key."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest

from rung.router.logs import JsonFormatter
from rung.tenants.keys import hash_key
from tests.integration.harness import make_config, tier, wait_until

pytestmark = pytest.mark.integration
KEY = "alice-key-0123456789"
SECRET_TEXT = "my password is hunter2, what is 2+2?"


def post(url: str, text: str, **headers: str) -> httpx.Response:
    body = {"model": "rung", "messages": [{"role": "user", "content": text}], "max_tokens": 8}
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}", **headers},
        timeout=10,
    )


def test_request_ids_are_echoed_or_made(fake: Any, gateway: Any) -> None:
    gw = gateway(make_config([tier("small", fake("small"))]))
    given = post(gw.url, "hi", **{"x-request-id": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    made = post(gw.url, "hi")
    assert len(made.headers["x-request-id"]) == 32
    weird = post(gw.url, "hi", **{"x-request-id": "has space " + "x" * 200})
    assert weird.headers["x-request-id"] != "has space " + "x" * 200
    refused = httpx.post(f"{gw.url}/v1/chat/completions", content=b"{", timeout=5)
    assert refused.status_code == 400
    assert len(refused.headers["x-request-id"]) == 32


def test_json_request_lines_carry_the_outcome_not_the_text(
    fake: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    small = fake("small")
    gw = gateway(
        make_config(
            [tier("small", small)],
            server={"log_format": "json"},
            tenants=[{"name": "alice", "keys": [hash_key(KEY)]}],
        )
    )
    caplog.set_level(logging.INFO, logger="rung.request")
    answer = post(gw.url, SECRET_TEXT, **{"x-request-id": "req-1"})
    assert answer.status_code == 200
    usage = answer.json()["usage"]
    unauthorised = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "rung", "messages": []}, timeout=5
    )
    assert unauthorised.status_code == 401
    wait_until(lambda: len(_lines(caplog)) == 2, what="two request lines")
    served, refused = _lines(caplog)
    assert served["request_id"] == "req-1"
    assert (served["tenant"], served["tier"], served["status"]) == ("alice", "small", 200)
    assert served["route_reason"].startswith("length")
    assert served["prompt_tokens"] == usage["prompt_tokens"]
    assert served["completion_tokens"] == usage["completion_tokens"]
    assert served["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    )
    assert set(served["stages_ms"]) == {"admit", "decide", "backend"}
    assert served["latency_ms"] > 0
    assert refused["status"] == 401
    assert "tenant" not in refused
    text = caplog.text + "".join(JsonFormatter().format(r) for r in caplog.records)
    assert "hunter2" not in text
    assert KEY not in text


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [orjson.loads(formatter.format(r)) for r in caplog.records if r.name == "rung.request"]
