"""The README's front door, run as written against the real local ladder (config/local.yaml
with its llama.cpp servers): the curl example and its headers, the cache hits it promises, the
SDK example with its streamed answer to the end, a client's own x-request-id, `n`. The code is
read out of README.md, so the page cannot drift from what rung does."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import client

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCUMENTED = "http://127.0.0.1:8080"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of `text` whose info string is `language` ("" for bare fences)."""
    found: list[str] = []
    lines: list[str] | None = None
    kind = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if lines is None:
                lines, kind = [], line[3:].strip()
            else:
                if kind == language:
                    found.append("\n".join(lines) + "\n")
                lines = None
        elif lines is not None:
            lines.append(line)
    return found


def curl_json(command: str) -> dict[str, Any]:
    """The JSON body of the README's curl command (its -d '...')."""
    found = re.search(r"-d '(.*?)'", command, re.DOTALL)
    assert found is not None, command
    body: dict[str, Any] = json.loads(found.group(1))
    return body


def headers_of(raw: str) -> dict[str, str]:
    head = raw.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")[1:]
    return {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


def run_curl(command: str, port: int, body: dict[str, Any] | None = None) -> tuple[str, str]:
    """The README's curl, as a shell runs it, against this test's gateway (optionally with
    another body). Returns (status line, raw response)."""
    command = command.replace(DOCUMENTED, f"http://127.0.0.1:{port}")
    if body is not None:
        quoted = shlex.quote(json.dumps(body))
        command = re.sub(r"-d '.*?'", lambda _: "-d " + quoted, command, flags=re.DOTALL)
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, timeout=300, check=True
    ).stdout.decode()
    return out.split("\r\n", 1)[0], out


@pytest.fixture(scope="module")
def served(local_ladder: Any, loop_thread: Any) -> Any:
    """rung as `make run` serves it: config/local.yaml (classifier, cache) in front of the
    ladder, with health checks every second so that long streams meet many of them."""
    from tests.integration.harness import Gateway

    config = local_ladder.model_copy(
        update={"health": local_ladder.health.model_copy(update={"interval_s": 1.0})}
    )
    gw = Gateway(loop_thread, config)
    yield gw
    gw.stop()


def test_the_curl_example_answers_with_the_headers_shown(served: Any) -> None:
    talk = section("Talk to it")
    command, shown = blocks(talk, "bash")[0], blocks(talk, "")[0]
    status, raw = run_curl(command, served.port)
    assert status == shown.splitlines()[0].strip() == "HTTP/1.1 200 OK"
    headers = headers_of(raw)
    for name in re.findall(r"^(x-rung-[a-z-]+):", shown, re.MULTILINE):
        assert name in headers, name
    assert headers["x-rung-tier"] in ("small", "large")
    tiers = {t.name: t.model for t in served.config.tiers}
    assert headers["x-rung-model"] == tiers[headers["x-rung-tier"]]
    assert headers["x-rung-route-reason"].startswith("classifier small=")
    assert headers["x-rung-cache"] == "miss"
    body = json.loads(raw.split("\r\n\r\n", 1)[1])
    assert "paris" in body["choices"][0]["message"]["content"].lower()
    assert body["choices"][0]["finish_reason"] == "stop"


def test_the_cache_hits_the_readme_promises(served: Any) -> None:
    talk = section("Talk to it")
    command = blocks(talk, "bash")[0]
    run_curl(command, served.port)  # stored (a no-op if the previous test already did)
    _, again = run_curl(command, served.port)
    assert headers_of(again)["x-rung-cache"] == "hit-exact"
    promised = re.search(r'a rephrasing such as\s+"(.+?)"\s+is a `hit-semantic`', talk, re.DOTALL)
    assert promised is not None
    rephrased = " ".join(promised.group(1).split())
    body = curl_json(command)
    body["messages"][0]["content"] = rephrased
    _, raw = run_curl(command, served.port, body)
    assert headers_of(raw)["x-rung-cache"] == "hit-semantic", rephrased
    pinned = {**curl_json(command), "model": "large"}
    _, raw = run_curl(command, served.port, pinned)
    assert headers_of(raw)["x-rung-route-reason"] == "pinned"


def test_the_sdk_example_runs_as_written_and_streams_to_the_end(served: Any) -> None:
    code = blocks(section("Talk to it"), "python")[0]
    code = code.replace(DOCUMENTED, served.url)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    first = out.splitlines()[0]
    assert first.split()[0] in {t.model for t in served.config.tiers}
    assert len(first.split()) > 1  # the model's id, then its answer
    finish = re.findall(r"\[finish_reason: (\w+)\]", out)
    assert finish in (["stop"], ["length"]), out  # never None: the stream was not cut
    assert "def " in out  # the function it was asked for
    tier, reason = out.strip().splitlines()[-1].split(" ", 1)
    assert tier in ("small", "large")
    assert reason.startswith("classifier")
    assert time.monotonic() - started > 2  # several health checks came and went meanwhile


def test_a_long_stream_runs_to_its_end_through_many_health_checks(
    served: Any, local_ladder: Any
) -> None:
    """≥ 200 tokens streamed while the health check runs every second and someone else's
    `GET /v1/models` (another gateway replica's probe) reaches the llama.cpp server directly
    every half second: llama-cpp-python's server cut such streams after ~27 chunks."""
    servers = [b.url for t in local_ladder.tiers if t.name == "small" for b in t.backends]
    stop = threading.Event()
    probes = [0]

    def probe() -> None:
        while not stop.wait(0.5):
            httpx.get(servers[0] + "/models", timeout=5)
            probes[0] += 1

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        chunks = list(
            client(served, timeout=300).chat.completions.create(
                model="small",
                stream=True,
                max_tokens=240,
                temperature=0,
                stream_options={"include_usage": True},
                messages=[
                    {
                        "role": "user",
                        "content": "Write a Python class for a bank account with deposit, "
                        "withdraw, transfer and statement methods, with docstrings.",
                    }
                ],
            )
        )
    finally:
        stop.set()
        prober.join(5)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert finishes[-1] in ("stop", "length")
    assert len(usage) == 1
    assert usage[0].completion_tokens >= 200 or finishes[-1] == "stop"
    assert usage[0].completion_tokens >= 100
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "class" in text
    assert probes[0] >= 5  # the stream outlived many probes


def test_a_clients_own_request_id_and_n_work_on_the_ladder(served: Any) -> None:
    """A UUID or any token as x-request-id (llama-cpp-python's server gave an empty 400 for
    rung's `<id>.<suffix>`); `n: 3` gives three choices (it gave one, silently)."""
    ask = {
        "model": "small",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 6,
        "temperature": 1.0,
    }
    for given in ("my-req-42", "7b0b3ad5-6f8f-4f4a-93a4-0f9a3f1c5b10"):
        answer = httpx.post(
            f"{served.url}/v1/chat/completions",
            json=ask,
            headers={"x-request-id": given},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == given
    three = httpx.post(f"{served.url}/v1/chat/completions", json={**ask, "n": 3}, timeout=300)
    assert three.status_code == 200, three.text
    assert [c["index"] for c in three.json()["choices"]] == [0, 1, 2]
