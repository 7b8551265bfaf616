"""OpenTelemetry behind the service's tracing hooks: the request's span, Redis's, the engine's.

Optional twice over: the `otel` extra installs the OpenTelemetry packages, and bootstrap imports
this module only when OTEL_EXPORTER_OTLP_ENDPOINT is set as well; otherwise no module of
OpenTelemetry is ever imported and the hooks are None (service.adapters.span_hook).

The request's span continues the incoming `traceparent` the HTTP app parsed (the trace id its
log line and its decision-log record show is the span's), or starts a trace when there is none;
the Redis round trips and the rule evaluations are its children, through OpenTelemetry's
context (a context variable: each request, thread or greenlet, has its own).

The tracer provider is this object's own, not OpenTelemetry's global one: nothing else in the
process changes, and a test builds one on an in-memory exporter. The exporter is OTLP, over
HTTP/protobuf (the OTLP default) or gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc); it reads its
other OTEL_EXPORTER_OTLP_* settings itself, and the sampler its OTEL_TRACES_SAMPLER.
"""
from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Mapping, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from service.adapters.span_hook import AttributeValue
from service.adapters.span_hook import SpanKind as HookKind
from service.domain.privacy import mask

SERVICE_NAME = "loan-decide"
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


class RequestSpan:
    """One request's server span, current from `begin_request` until `end`."""

    def __init__(self, span: trace.Span, token: object):
        self._span, self._token = span, token
        context = span.get_span_context()
        self.trace_id = trace.format_trace_id(context.trace_id)
        self.span_id = trace.format_span_id(context.span_id)
        self.flags = f"{int(context.trace_flags):02x}"

    def end(self, status: Optional[int]) -> None:
        """Close the span with the response's status (None: the request failed without one)."""
        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        if status is None or status >= 500:
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.end()
        otel_context.detach(self._token)


class LoggableIds(RandomIdGenerator):
    """OpenTelemetry's random ids, less the trace ids the log's masking would change: a trace id
    is logged unmasked, and none of ours may look like a phone or ID number."""

    def generate_trace_id(self) -> int:
        while True:
            value = super().generate_trace_id()
            if mask(f"{value:032x}") == f"{value:032x}":
                return value


class OtelTracing:
    """The service's tracing hooks on one OpenTelemetry tracer provider."""

    def __init__(self, processor: SpanProcessor, environ: Optional[Mapping[str, str]] = None):
        env = os.environ if environ is None else environ
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
        self.provider = TracerProvider(resource=Resource.create(attributes), id_generator=LoggableIds())
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("loan_decide")

    @classmethod
    def to_collector(cls, environ: Optional[Mapping[str, str]] = None) -> "OtelTracing":
        """Spans batched to the OTLP endpoint the environment names."""
        env = os.environ if environ is None else environ
        return cls(BatchSpanProcessor(_otlp_exporter(env)), env)

    def span(self, name: str, attributes: Mapping[str, AttributeValue],
             kind: HookKind = "internal") -> AbstractContextManager[object]:
        return self._tracer.start_as_current_span(name, kind=_KINDS[kind], attributes=attributes)

    def begin_request(self, name: str, attributes: Mapping[str, AttributeValue],
                      parent: Optional[tuple[str, str, str]]) -> RequestSpan:
        """The request's span, made current: a child of `parent` (trace id, parent span id,
        flags: a valid incoming traceparent) or the root of a new trace."""
        if parent is None:
            context = otel_context.Context()   # a root, whatever the ambient context holds
        else:
            trace_id, parent_id, flags = parent
            remote = SpanContext(int(trace_id, 16), int(parent_id, 16), is_remote=True,
                                 trace_flags=TraceFlags(int(flags, 16)))
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = self._tracer.start_span(name, context=context, kind=SpanKind.SERVER,
                                       attributes=attributes)
        return RequestSpan(span, otel_context.attach(trace.set_span_in_context(span)))

    def shutdown(self) -> None:
        """Export what is still batched (at exit, and in tests)."""
        self.provider.shutdown()


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()
