"""OpenTelemetry traces: a span per request (a child of the caller's traceparent), child spans
per stage, the trace context and request id sent on to the backend, no prompt text."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rung.router.tracing import Tracing
from tests.integration.harness import make_config, tier, wait_until

pytestmark = pytest.mark.integration
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_a_request_is_one_trace_from_the_caller_to_the_backend(fake: Any, gateway: Any) -> None:
    small = fake("small")
    config = make_config([tier("small", small)], tracing={"exporter": "console"})
    gw = gateway(config)
    exporter = InMemorySpanExporter()
    gw.app.state.tracing.shutdown()
    gw.app.state.tracing = Tracing(config.tracing, exporter)
    body = {"model": "rung", "messages": [{"role": "user", "content": "secret words"}]}
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body,
        headers={"traceparent": PARENT, "x-request-id": "req-7"},
        timeout=10,
    )
    assert answer.status_code == 200
    wait_until(lambda: len(exporter.get_finished_spans()) >= 4, what="spans")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["POST /v1/chat/completions"]
    assert f"{root.context.trace_id:032x}" == TRACE  # joined the caller's trace
    assert root.parent is not None
    assert f"{root.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert root.attributes["rung.request_id"] == "req-7"
    assert root.attributes["rung.tier"] == "small"
    assert root.attributes["http.response.status_code"] == 200
    assert (
        root.attributes["gen_ai.usage.output_tokens"] == answer.json()["usage"]["completion_tokens"]
    )
    for stage in ("admit", "decide", "backend"):
        child = spans[stage]
        assert child.parent is not None
        assert child.parent.span_id == root.context.span_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    sent = small.stats.last_headers
    assert sent["traceparent"].split("-")[1] == TRACE  # the backend joins the same trace
    assert sent["traceparent"].split("-")[2] == f"{root.context.span_id:016x}"
    # the backend gets rung's own UUID (unique, and one every server accepts), named on the span
    assert str(uuid.UUID(sent["x-request-id"])) == sent["x-request-id"]
    assert root.attributes["rung.upstream_request_id"] == sent["x-request-id"]
    assert root.attributes["rung.request_id"] == "req-7"
    text = repr([dict(s.attributes or {}) for s in spans.values()])
    assert "secret words" not in text


def test_tracing_off_sends_no_trace_context(fake: Any, gateway: Any) -> None:
    small = fake("small")
    gw = gateway(make_config([tier("small", small)]))
    assert gw.app.state.tracing is None
    body = {"model": "rung", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10).status_code == 200
    assert "traceparent" not in small.stats.last_headers
    sent = small.stats.last_headers["x-request-id"]
    assert str(uuid.UUID(sent)) == sent
