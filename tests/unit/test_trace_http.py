"""Trace context through the HTTP app, tracing off: a valid `traceparent` is continued, an
invalid or absent one replaced by a new trace, never refused; the response's `traceparent`,
the request's log line and the decision-log records it writes name the same trace, and the
decision itself (its response body, its replay) does not change."""
import io
import json
import logging
import re

import pytest

from schemas.request import DecideRequestSchema
from service.domain.clock import FixedClock
from service.entrypoints import logs
from service.entrypoints.bootstrap import policy_source
from service.entrypoints.settings import Settings
from service.entrypoints.http.app import create_app
from service.usecases import log_records, request_trace
from service.usecases.replay import replay_one
from tests.conftest import NOW, memory_services, payload

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_apps = iter(range(10**9))


@pytest.fixture
def served(policy):
    """(test client, services, the JSON log lines written so far) of one app on fresh stores."""
    services = memory_services(policy, FixedClock(NOW), erasure_secret=b"k" * 32)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    api = logging.getLogger("loan_decide.api")
    api.addHandler(handler)
    # whatever an earlier test left (a gunicorn config disables the loggers it finds)
    saved = api.level, api.disabled, logging.root.manager.disable
    api.level, api.disabled = logging.INFO, False
    logging.disable(logging.NOTSET)
    try:
        yield (create_app(services=services).test_client(), services,
               lambda: [json.loads(line) for line in stream.getvalue().splitlines()])
    finally:
        api.removeHandler(handler)
        api.level, api.disabled = saved[:2]
        logging.disable(saved[2])


def decide(client, headers=None, **changes):
    body = {**payload(), "user_id": f"trace-user-{next(_apps)}",
            "application_id": f"trace-app-{next(_apps)}", **changes}
    return client.post("/decide", json=body, headers=headers or {}), body


def records_of(services, user_id):
    return [json.loads(text) for _, _, text in services.stores.log.data.user(user_id).log]


def request_lines(lines):
    return [line for line in lines() if line["msg"] == "request"]


def test_a_valid_traceparent_is_kept_by_the_response_the_log_line_and_the_record(served):
    client, services, lines = served
    response, body = decide(client, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert response.status_code == 200
    trace_id, span_id, flags = TRACEPARENT.fullmatch(response.headers["traceparent"]).groups()
    assert (trace_id, flags) == (TRACE_ID, "01")
    assert span_id != PARENT_ID          # the request's own span, a child of the caller's
    [line] = request_lines(lines)
    assert line["trace_id"] == TRACE_ID and line["request_id"] == response.headers["X-Request-ID"]
    [record] = records_of(services, body["user_id"])
    assert record["kind"] == "decision" and record["trace_id"] == TRACE_ID
    assert list(record)[-1] == "trace_id"   # last: the export's order of the fields before it holds


@pytest.mark.parametrize("header", [
    "garbage", "", f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", f"00-{'0' * 32}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01", f"ff-{TRACE_ID}-{PARENT_ID}-01", f"00-{TRACE_ID}-{PARENT_ID}-01-x",
    f"00-{TRACE_ID}-{PARENT_ID}", "00-" + "a" * 5000,
])
def test_an_invalid_traceparent_is_replaced_not_refused(served, header):
    client, services, lines = served
    response, body = decide(client, {"traceparent": header})
    assert response.status_code == 200
    trace_id, span_id, flags = TRACEPARENT.fullmatch(response.headers["traceparent"]).groups()
    assert trace_id != TRACE_ID and flags == "00"
    assert request_lines(lines)[-1]["trace_id"] == trace_id
    assert records_of(services, body["user_id"])[-1]["trace_id"] == trace_id


def test_an_absent_traceparent_starts_a_new_trace_per_request(served):
    client, services, lines = served
    first, body = decide(client)
    second, _ = decide(client)
    trace_ids = [TRACEPARENT.fullmatch(r.headers["traceparent"])[1] for r in (first, second)]
    assert trace_ids[0] != trace_ids[1]
    assert [line["trace_id"] for line in request_lines(lines)] == trace_ids
    assert records_of(services, body["user_id"])[0]["trace_id"] == trace_ids[0]


def test_every_response_carries_a_traceparent_errors_and_open_paths_too(served):
    client, _, _ = served
    for response in (client.get("/healthz"), client.get("/no-such-path"),
                     client.post("/decide", data="not json", content_type="application/json",
                                 headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})):
        assert TRACEPARENT.fullmatch(response.headers["traceparent"]), response.status_code
    assert response.status_code == 400 and response.headers["traceparent"].startswith(f"00-{TRACE_ID}-")


def test_the_decision_is_the_same_with_or_without_a_trace(served):
    """The response body is the decision: the trace changes none of it, and a replay of the
    record (trace id and all) finds it identical."""
    client, services, _ = served
    traced, body = decide(client, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    other, _ = decide(client, application_id="trace-untraced", user_id=body["user_id"] + "-b")
    strip = lambda doc: {k: v for k, v in doc.items() if k not in ("decision_id", "application_id",
                                                                   "user_id", "decided_at")}
    assert "trace_id" not in traced.get_json() and "trace_id" not in traced.get_data(as_text=True)
    assert strip(traced.get_json()) == strip(other.get_json())
    [text] = [t for _, _, t in services.stores.log.data.user(body["user_id"]).log]
    record = json.loads(text)
    assert record["trace_id"] == TRACE_ID and record["decision"] == traced.get_json()
    replayed = replay_one(policy_source(Settings()), 1, text)   # each record under its own rules
    assert replayed.exact and not replayed.changed


def test_the_other_records_a_request_writes_carry_its_trace(served):
    client, services, _ = served
    user_id = f"trace-grace-{next(_apps)}"
    decide(client, user_id=user_id, application_id="trace-grace-app")
    response = client.post(f"/users/{user_id}/grace-uses", json={"days": 3},
                           headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert response.status_code == 200
    grace = records_of(services, user_id)[-1]
    assert grace["kind"] == "grace" and grace["trace_id"] == TRACE_ID


def test_an_erasure_record_carries_the_trace_of_the_request_that_erased(served):
    client, services, _ = served
    _, body = decide(client)
    token = request_trace.trace_id.set(TRACE_ID)
    try:
        services.audit.erase(body["user_id"], "op-1", "the applicant asked")
    finally:
        request_trace.trace_id.reset(token)
    [(_, _, text)] = services.stores.log.data.erasure_log
    assert json.loads(text)["trace_id"] == TRACE_ID


def test_outside_a_request_records_have_no_trace_id(served, policy):
    """A replay, a rebuild, a simulation or the CLI write records with no request: no trace id,
    and none left over from the last request served (the context is reset at its end)."""
    client, services, _ = served
    decide(client, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert request_trace.trace_id.get() is None
    doc = dict(payload(), user_id="trace-core")
    services.decisions.decide(doc, DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(doc))
    assert "trace_id" not in records_of(services, "trace-core")[0]


def test_the_export_keeps_a_records_trace_id_and_adds_none():
    """`log export` encodes the records it reads back: a record keeps its own trace id even
    when exported while another request is served (no second one is spliced in)."""
    record = {"v": 2, "kind": "cancel", "at": "2026-11-23T08:00:00Z", "trace_id": TRACE_ID}
    token = request_trace.trace_id.set("f" * 32)
    try:
        assert json.loads(log_records.encode(record)) == record
        assert json.loads(log_records.log_text({"v": 2}))["trace_id"] == "f" * 32
    finally:
        request_trace.trace_id.reset(token)


def test_a_line_logged_while_serving_carries_the_trace_id():
    """Any line written while a request runs, not only the request line: the record factory
    stamps it, as it stamps the request id."""
    record = logging.getLogger("loan_decide.test").makeRecord(
        "loan_decide.test", logging.WARNING, __file__, 1, "user busy", None, None)
    assert "trace_id" not in json.loads(logs.JsonFormatter().format(record))
    token = request_trace.trace_id.set(TRACE_ID)
    try:
        record = logging.getLogger("loan_decide.test").makeRecord(
            "loan_decide.test", logging.WARNING, __file__, 1, "user busy", None, None)
    finally:
        request_trace.trace_id.reset(token)
    assert json.loads(logs.JsonFormatter().format(record))["trace_id"] == TRACE_ID


def test_a_trace_id_holding_a_phone_number_is_replaced_and_never_logged(served):
    client, services, lines = served
    phone_trace = "4bf92f3577b34da6a3cea13812345678"
    response, body = decide(client, {"traceparent": f"00-{phone_trace}-{PARENT_ID}-01"})
    assert response.status_code == 200
    trace_id = TRACEPARENT.fullmatch(response.headers["traceparent"])[1]
    assert trace_id != phone_trace and request_lines(lines)[-1]["trace_id"] == trace_id
    assert records_of(services, body["user_id"])[-1]["trace_id"] == trace_id
    assert "13812345678" not in json.dumps(lines())
