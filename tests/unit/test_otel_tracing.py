"""OpenTelemetry, optional (service/adapters/otel_tracing.py): off (no endpoint, or the extra not
installed), nothing of it is imported and serving is unchanged; on, the request's span continues
the incoming traceparent (its trace id is the one the response, the log line and the record
show) and every rule evaluation is a span inside it. The Redis round trips' spans are checked
on the real Redis (tests/integration/test_otel_redis_spans.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import build_policy, memory_stores, tracing_from, wire
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from tests.conftest import NOW, payload

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

# A process that builds the app as `loan-decide serve` does (create_app(settings) from the
# environment), serves one /decide and says which OpenTelemetry modules it imported beyond those
# `import redis` alone brings: redis-py 8 probes for OpenTelemetry's metrics SDK when it is
# installed (redis/observability/providers.py), whatever the service does; the service itself
# must import none.
_SERVE_ONE = textwrap.dedent("""
    import json, sys
    {prelude}
    import redis
    baseline = {{m for m in sys.modules if m.startswith("opentelemetry")}}
    from service.entrypoints.http.app import create_app
    from service.entrypoints.settings import Settings
    from tests.conftest import payload
    app = create_app(Settings.from_env())
    response = app.test_client().post("/decide", json=payload())
    print(json.dumps({{"status": response.status_code, "traceparent": response.headers.get("traceparent"),
                      "tracing": app.extensions["services"].tracing is not None,
                      "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry") and m not in baseline),
                      "adapter": "service.adapters.otel_tracing" in sys.modules}}))
""")


def serve_one(env: dict[str, str], prelude: str = "") -> tuple[dict, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", _SERVE_ONE.format(prelude=prelude)], cwd=ROOT,
                          env={**environ, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_without_the_endpoint_nothing_of_opentelemetry_is_imported():
    result, _ = serve_one({})
    assert result["status"] == 200 and result["traceparent"]
    assert result == dict(result, tracing=False, otel=[], adapter=False)


def test_with_the_endpoint_but_without_the_extra_serving_is_unchanged_and_says_why():
    """The extra not installed (here: its import made to fail): a warning at start-up, no
    spans, the same answers."""
    result, stderr = serve_one({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
                               prelude="sys.modules['opentelemetry'] = None")
    assert result["status"] == 200 and result["traceparent"] and result["tracing"] is False
    assert "OpenTelemetry is not installed" in stderr


def test_sdk_disabled_means_no_tracing():
    assert tracing_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_from({}) is None


otel = pytest.importorskip("opentelemetry.sdk.trace",
                           reason="OpenTelemetry is not installed (pip install -e '.[otel]'): "
                                  "the otel path is not tested")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator  # noqa: E402

from service.adapters.otel_tracing import LoggableIds, OtelTracing  # noqa: E402


def test_with_the_endpoint_and_the_extra_tracing_is_on():
    tracing = tracing_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert isinstance(tracing, OtelTracing)
    finally:
        tracing.shutdown()   # no span was made: nothing to send


@pytest.fixture
def traced(book):
    """(test client, services, exporter): the app on the in-memory stores, spans kept in memory."""
    exporter = InMemorySpanExporter()
    tracing = OtelTracing(SimpleSpanProcessor(exporter), environ={})
    clock = FixedClock(NOW)
    settings = Settings()
    services = wire(settings, clock, memory_stores(settings, clock), build_policy(book, tracing), tracing)
    yield create_app(services=services).test_client(), services, exporter
    tracing.shutdown()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def test_the_request_span_continues_the_incoming_trace(traced):
    client, services, exporter = traced
    body = dict(payload(), user_id="otel-1")
    response = client.post("/decide", json=body, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server.name == "POST /decide"
    assert _hex(server.context.trace_id, 32) == TRACE_ID
    assert _hex(server.parent.span_id, 16) == PARENT_ID and server.parent.is_remote
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{_hex(server.context.span_id, 16)}-01"
    assert server.attributes["http.route"] == "/decide" and server.attributes["http.response.status_code"] == 200
    [record] = [json.loads(t) for _, _, t in services.stores.log.data.user("otel-1").log]
    assert record["trace_id"] == TRACE_ID


def test_each_rule_evaluation_is_a_span_inside_the_request(traced):
    client, services, exporter = traced
    client.post("/decide", json=dict(payload(), user_id="otel-2"))
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    evaluations = [s for s in spans if s.name == "rules.evaluate"]
    assert evaluations, [s.name for s in spans]
    for span in evaluations:
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes["loan.product"] == "weilidai"
        assert span.attributes["rules.version"] == services.rules.version


def test_without_a_traceparent_the_span_starts_the_trace_the_response_names(traced):
    client, _, exporter = traced
    response = client.post("/decide", json=dict(payload(), user_id="otel-3"),
                           headers={"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"})   # invalid
    [server] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.parent is None
    trace_id, flags = _hex(server.context.trace_id, 32), int(server.context.trace_flags)
    assert trace_id != "0" * 32 and flags & 1   # sampled (the SDK may set its random-id flag too)
    assert response.headers["traceparent"] == f"00-{trace_id}-{_hex(server.context.span_id, 16)}-{flags:02x}"


def test_an_unsampled_parent_is_followed_and_nothing_is_exported(traced):
    client, services, exporter = traced
    response = client.post("/decide", json=dict(payload(), user_id="otel-4"),
                           headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert exporter.get_finished_spans() == ()
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert response.headers["traceparent"].endswith("-00")
    [record] = [json.loads(t) for _, _, t in services.stores.log.data.user("otel-4").log]
    assert record["trace_id"] == TRACE_ID


def test_a_failed_request_span_is_marked_and_closed(traced):
    client, _, exporter = traced
    response = client.post("/decide", data="{", content_type="application/json")
    assert response.status_code == 400
    [server] = exporter.get_finished_spans()
    assert server.attributes["http.response.status_code"] == 400
    assert server.status.status_code != StatusCode.ERROR   # the client's error, not the server's


def test_a_shadows_evaluation_after_the_response_is_in_the_requests_trace(traced, tmp_path):
    """The shadow decides once the response is sent, after the request's span ended: its rule
    evaluations are still children of that span, not traces of their own."""
    import dataclasses
    import shutil

    import yaml

    from service.adapters import rules_files
    from tests.conftest import RULES_DIR

    _, services, exporter = traced
    rules = tmp_path / "candidate"
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / "eligibility.yaml").read_text())
    next(r for r in doc["rules"] if r["id"] == "E2")["params"]["min_age"] = 21
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    candidate = rules_files.load(rules)
    services.stores.archive.save(candidate)
    settings = dataclasses.replace(Settings(), admin_keys=("admin-key-456",))
    client = create_app(settings, services=services).test_client()
    shadow = client.post("/admin/rules/shadow", json={"rules_version": candidate.version},
                         headers={"X-Admin-Key": "admin-key-456"})
    assert shadow.status_code == 200, shadow.get_json()
    exporter.clear()
    answer = client.post("/decide", json=dict(payload(age=20), user_id="otel-shadow"),
                         headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    before = len([s for s in exporter.get_finished_spans() if s.name == "rules.evaluate"])
    answer.close()                                      # the shadow runs now
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER and s.name == "POST /decide"]
    evaluations = [s for s in spans if s.name == "rules.evaluate"]
    assert len(evaluations) > before
    shadowed = [s for s in evaluations if s.attributes["rules.version"] == candidate.version]
    assert shadowed
    for span in evaluations:
        assert _hex(span.context.trace_id, 32) == TRACE_ID
        assert span.parent.span_id == server.context.span_id


def test_the_tracer_makes_no_trace_id_the_log_would_mask(monkeypatch):
    """The SDK's root spans draw their trace ids from the provider's generator: one that holds
    a phone number is drawn again, as the header's own ids are."""
    phone_like, plain = int("4bf92f3577b34da6a3cea13812345678", 16), int(TRACE_ID, 16)
    drawn = iter([phone_like, plain])
    monkeypatch.setattr(RandomIdGenerator, "generate_trace_id", lambda self: next(drawn))
    assert LoggableIds().generate_trace_id() == plain
