"""Trace context on a live `loan-decide serve` (gunicorn, gevent workers, Redis): the response's
`traceparent`, the request's log line and the decision-log record in Redis name one trace; with
OpenTelemetry on, the worker exports the request's spans, in that trace, to the OTLP endpoint."""
from __future__ import annotations

import http.server
import json
import re
import threading
import time

import pytest
import redis

from service.adapters.state_store import RedisStateStore
from tests.conftest import payload
from tests.e2e.conftest import http as call

pytestmark = pytest.mark.e2e

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _request_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "request"]


def test_a_live_server_keeps_the_trace_in_the_response_the_log_and_the_record(live_server, real_redis_url):
    server = live_server("--workers", "1", env={"REDIS_URL": real_redis_url})
    status, _, headers = call("POST", server.url + "/decide", dict(payload(), user_id="live-trace"),
                              {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert status == 200
    assert re.fullmatch(f"00-{TRACE_ID}-[0-9a-f]{{16}}-01", headers["traceparent"])
    status, _, headers = call("POST", server.url + "/decide", dict(payload(), user_id="live-new"),
                              {"traceparent": "00-not-a-trace"})
    assert status == 200
    new_trace = headers["traceparent"].split("-")[1]
    assert new_trace != TRACE_ID
    lines = _request_lines(server.stop())
    assert [line["trace_id"] for line in lines if line["route"] == "/decide"] == [TRACE_ID, new_trace]
    store = RedisStateStore(redis.Redis.from_url(real_redis_url))
    assert json.loads(store.log_records("live-trace")[0])["trace_id"] == TRACE_ID
    assert json.loads(store.log_records("live-new")[0])["trace_id"] == new_trace


class _Collector(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP endpoint that keeps the bodies of the trace exports it is sent."""

    def __init__(self):
        self.bodies: list[bytes] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    collector.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_live_server_exports_the_requests_spans_to_the_otlp_endpoint(live_server, real_redis_url):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                        reason="OpenTelemetry is not installed (pip install -e '.[otel]'): no export to test")
    collector = _Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        server = live_server("--workers", "1", env={
            "REDIS_URL": real_redis_url, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}"})
        status, _, headers = call("POST", server.url + "/decide", dict(payload(), user_id="live-otel"),
                                  {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert status == 200 and headers["traceparent"].startswith(f"00-{TRACE_ID}-")
        span_id = bytes.fromhex(headers["traceparent"].split("-")[2])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(span_id in body for body in collector.bodies):
            time.sleep(0.1)
        sent = b"".join(collector.bodies)
        assert span_id in sent, "the request's span was not exported"
        assert bytes.fromhex(TRACE_ID) in sent and b"POST /decide" in sent
        assert b"redis COMMIT" in sent and b"rules.evaluate" in sent
    finally:
        collector.shutdown()
