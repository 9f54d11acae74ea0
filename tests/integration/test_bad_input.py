"""Bad input never gets a 500 or a hang: each case gets the right 4xx in OpenAI's error shape."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest

from tests.integration.harness import client, make_config, tier

OK = {"model": "rung", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(fake, gateway):
    return gateway(make_config([tier("small", fake("small"))], server={"max_body_bytes": 4096}))


def post(gw, body: bytes | dict, path: str = "/v1/chat/completions", **kw) -> httpx.Response:
    if isinstance(body, dict):
        return httpx.post(gw.url + path, json=body, timeout=5, **kw)
    return httpx.post(
        gw.url + path, content=body, timeout=5, headers={"content-type": "application/json"}, **kw
    )


CASES = [
    ("malformed json", b'{"model": "rung", "messages": [', 400, None, "not valid JSON"),
    ("empty body", b"", 400, None, "empty"),
    ("not an object", b"[1, 2]", 400, None, "JSON object"),
    ("missing messages", {"model": "rung"}, 400, "messages", "missing required parameter"),
    ("missing model", {"messages": OK["messages"]}, 400, "model", "missing required"),
    ("empty messages", {**OK, "messages": []}, 400, "messages", "at least 1"),
    (
        "unknown role",
        {**OK, "messages": [{"role": "wizard", "content": "x"}]},
        400,
        "messages[0].role",
        "invalid role",
    ),
    ("message not an object", {**OK, "messages": ["hi"]}, 400, "messages[0]", "invalid value"),
    ("wrong type", {**OK, "temperature": "hot"}, 400, "temperature", "valid number"),
    ("out of range", {**OK, "temperature": 7}, 400, "temperature", "less than or equal"),
    ("string for bool", {**OK, "stream": "yes"}, 400, "stream", "valid boolean"),
    ("bad max_tokens", {**OK, "max_tokens": 0}, 400, "max_tokens", "greater than"),
    (
        "bad content",
        {**OK, "messages": [{"role": "user", "content": 5}]},
        400,
        "messages[0].content",
        "invalid value",
    ),
    ("unknown model", {**OK, "model": "gpt-9"}, 404, "model", "does not exist"),
]


@pytest.mark.parametrize(
    ("body", "status", "param", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_chat_requests_get_openai_errors(gw, body, status, param, message):
    response = post(gw, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]


def test_bad_completions_request(gw):
    response = post(gw, {"model": "rung"}, path="/v1/completions")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(gw):
    big = {**OK, "messages": [{"role": "user", "content": "x" * 10_000}]}
    response = post(gw, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no content-length: the limit must hold while reading
        yield b'{"model": "rung", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(gw.url + "/v1/chat/completions", content=chunks(), timeout=5)
    assert response.status_code == 413


def test_unknown_paths_and_methods_use_the_same_error_shape(gw):
    response = httpx.get(gw.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = httpx.get(gw.url + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_sdk_raises_its_own_typed_errors(gw):
    sdk = client(gw)
    with pytest.raises(openai.NotFoundError) as excinfo:
        sdk.chat.completions.create(model="nope", messages=OK["messages"])
    assert excinfo.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="rung", messages=[])


def test_a_client_that_sends_half_a_body_and_leaves_does_not_wedge_rung(gw, caplog):
    host, port = "127.0.0.1", int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"model"'
        )
    assert post(gw, OK).status_code == 200
    # Issue 13, defect 6: a client leaving mid-body is not an error with a traceback.
    assert "unexpected error" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_stalled_body_gets_408_within_the_body_timeout(fake, gateway, caplog):
    """Issue 13, defect 3: a Content-Length larger than what is sent held the connection for
    40 s and more. Now the body must arrive within server.body_timeout_s."""
    import time

    config = make_config([tier("small", fake("small"))], server={"body_timeout_s": 0.5})
    gw = gateway(config)
    host, port = "127.0.0.1", int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"model"'
        )
        answer = sock.recv(4096)
        waited = time.monotonic() - started
        while b"request_timeout" not in answer and (more := sock.recv(4096)):
            answer += more  # headers and body may come in two segments
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in answer
    assert waited < 3
    assert "unexpected error" not in caplog.text
    assert post(gw, OK).status_code == 200


def test_a_body_that_arrives_in_pieces_is_read_whole(gw):
    """A body still arriving when the handler starts takes the timed read (the whole-body fast
    path only serves bodies the server already holds): both halves are read, in order."""
    import json
    import time

    body = json.dumps({**OK, "messages": [{"role": "user", "content": "pieces " * 50}]}).encode()
    host, port = "127.0.0.1", int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:40]
        )
        time.sleep(0.3)
        sock.sendall(body[40:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(payload)["choices"][0]["message"]["content"]


def test_a_huge_model_name_is_not_echoed_whole(gw):
    answer = post(gw, {**OK, "model": "m" * 2_000})  # the body limit here is 4 KB
    assert answer.status_code == 404
    assert len(answer.content) < 1000
    assert "m" * 64 + "…" in answer.json()["error"]["message"]


def test_oversized_headers_get_431_and_the_gateway_goes_on(gw):
    huge = {"authorization": "Bearer " + "k" * 1_000_000}
    answer = httpx.post(f"{gw.url}/v1/chat/completions", json=OK, headers=huge, timeout=10)
    assert answer.status_code == 431
    assert post(gw, OK).status_code == 200


@pytest.mark.parametrize("sent", [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"])
def test_headers_that_never_finish_are_answered_408_and_closed(fake, gateway, sent):
    """A connection that sends nothing, or headers that never end, was held forever."""
    import time

    config = make_config([tier("small", fake("small"))], server={"header_timeout_s": 0.5})
    port = int(gateway(config).url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        answer = b""
        while more := sock.recv(4096):
            answer += more
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request headers not received within 0.5s" in answer
    assert waited < 3
