"""Each Redis round trip of a request is a span inside the request's (the state store's `_do`,
which every Redis store's command, pipeline and script goes through), when OpenTelemetry is on;
and the decision-log record in Redis carries the request's trace id."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("opentelemetry.sdk.trace",
                    reason="OpenTelemetry is not installed (pip install -e '.[otel]'): the otel path is not tested")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from service.adapters.otel_tracing import OtelTracing  # noqa: E402
from service.domain.clock import FixedClock  # noqa: E402
from service.entrypoints.bootstrap import build_policy, redis_stores, wire  # noqa: E402
from service.entrypoints.http.app import create_app  # noqa: E402
from service.entrypoints.settings import Settings  # noqa: E402
from tests.conftest import NOW, payload  # noqa: E402

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_redis_round_trips_are_spans_of_the_request(real_redis_url, book):
    exporter = InMemorySpanExporter()
    tracing = OtelTracing(SimpleSpanProcessor(exporter), environ={})
    settings, clock = Settings(redis_url=real_redis_url, redis_timeout=2.0), FixedClock(NOW)
    services = wire(settings, clock, redis_stores(settings, tracing), build_policy(book, tracing), tracing)
    client = create_app(services=services).test_client()
    try:
        response = client.post("/decide", json=dict(payload(), user_id="otel-redis"),
                               headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert response.status_code == 200, response.get_json()
        spans = exporter.get_finished_spans()
        [server] = [s for s in spans if s.kind == SpanKind.SERVER]
        trips = [s for s in spans if s.kind == SpanKind.CLIENT]
        names = [s.name for s in trips]
        assert "redis BEGIN" in names and "redis COMMIT" in names, names
        for span in trips:
            assert span.context.trace_id == server.context.trace_id
            assert span.parent.span_id == server.context.span_id
            assert span.attributes["db.system.name"] == "redis"
        assert len(trips) == services.stores.users.round_trips   # every round trip, one span each
        [text] = services.stores.users.log_records("otel-redis")
        assert json.loads(text)["trace_id"] == TRACE_ID
    finally:
        tracing.shutdown()
