"""OpenTelemetry traces (optional: `pip install rung[otel]`, `tracing.exporter` not `none`).

One SERVER span per completion request, a child of the caller's `traceparent` when it sent one;
child spans for the stages the request went through (admit, decide, cache, backend or
first_byte), placed at the times they ran; the request span's W3C trace context is sent on to
the backends, so a vLLM that traces joins the same trace. Span attributes are the request's
outcome (request id, tenant, tier, route reason, cache, escalation, status, tokens): never
prompt text or keys. The provider is rung's own (not the process-global one) and is shut down
with the app.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rung.config import TracingConfig
from rung.errors import RungError
from rung.router.notes import Notes

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span


class Tracing:
    def __init__(self, config: TracingConfig, exporter: SpanExporter | None = None) -> None:
        """`exporter` overrides the configured one (tests pass an in-memory exporter)."""
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            raise RungError(
                "tracing needs OpenTelemetry: pip install 'rung[otel]' (or tracing.exporter: none)"
            ) from None
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            self.provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
        self.tracer = self.provider.get_tracer("rung")
        self.propagator = TraceContextTextMapPropagator()

    def start(self, route: str, headers: Mapping[str, str], notes: Notes) -> Span:
        """The request's span (already started); its context goes into `notes.forward`."""
        from opentelemetry.trace import SpanKind, set_span_in_context

        parent = self.propagator.extract(carrier=dict(headers))
        span = self.tracer.start_span(f"POST {route}", context=parent, kind=SpanKind.SERVER)
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=set_span_in_context(span))
        notes.forward.update(carrier)
        return span

    def finish(self, span: Span, status: int, notes: Notes) -> None:
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter -> epoch ns
        context = set_span_in_context(span)
        for stage, start, end in notes.spans:
            child = self.tracer.start_span(
                stage, context=context, start_time=offset + int(start * 1e9)
            )
            child.end(end_time=offset + int(end * 1e9))
        span.set_attributes(_attributes(status, notes))
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _attributes(status: int, notes: Notes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "http.response.status_code": status,
        "rung.request_id": notes.request_id,
        "rung.upstream_request_id": notes.upstream_id,
    }
    record = notes.record
    if record is not None:
        out |= {
            "rung.tenant": record.tenant,
            "rung.tier": record.tier,
            "rung.route_reason": notes.reason,
            "rung.cache": record.cache or "off",
            "rung.escalated": record.escalated or "",
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "rung.cost_usd": record.cost / 1_000_000,
        }
    return out


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise RungError("tracing.exporter: otlp needs pip install 'rung[otel]'") from None
    return OTLPSpanExporter(endpoint=config.endpoint)
