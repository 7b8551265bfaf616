"""docker-compose.replicas.yml run for real: two api replicas behind nginx on one Redis.

nginx spreads requests over both replicas, a decision made through one is seen through the
other, and `docker compose exec api loan-decide log export` works here too. Needs what
test_compose_run.py needs (skipped with the reason otherwise).
"""
from __future__ import annotations

import json
from collections import Counter
import uuid

import pytest

from tests.deploy.dockerrun import UP_BOUND_S, application, stack_fixture
from tests.e2e.conftest import http

pytestmark = pytest.mark.docker

stack = stack_fixture("docker-compose.replicas.yml", "loan-decide-dockertest-replicas")


def test_up_is_healthy_within_the_bound(stack):
    print(f"\ndocker-compose.replicas.yml up --wait {stack.up_seconds[0]:.0f} s")
    assert stack.up_seconds[0] < UP_BOUND_S
    replicas = stack.containers("api")
    assert len(replicas) == 2
    for service, containers in (("api", replicas), ("nginx", stack.containers("nginx")),
                                ("redis", stack.containers("redis")),
                                ("prometheus", stack.containers("prometheus"))):
        for container in containers:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container


def test_through_nginx_with_the_key_and_401_without(stack):
    status, body, headers = stack.decide(application("nginx"), headers={"X-Request-ID": "rep-1"})
    assert status == 200 and body["outcome"] == "approved", body
    assert headers["X-Request-ID"] == "rep-1"                 # passed through nginx and back
    assert stack.decide(application("nginx-nokey"), key=None)[0] == 401
    assert http("GET", stack.url + "/readyz")[0] == 200
    status, text, _ = http("GET", stack.url + "/metrics")       # one replica's (docs/operations.md: scrape each)
    assert status == 200 and "# TYPE http_request_duration_seconds histogram" in text


def test_nginx_spreads_requests_over_both_replicas(stack):
    tag = uuid.uuid4().hex[:8]
    request_ids = {f"spread-{tag}-{n}" for n in range(20)}
    for request_id in sorted(request_ids):
        status, body, _ = stack.decide(application("spread"), headers={"X-Request-ID": request_id})
        assert status == 200, body
    upstreams = {}
    for line in stack.compose("logs", "--no-color", "--no-log-prefix", "nginx").stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("request_id") in request_ids:
            upstreams[record["request_id"]] = record["upstream"].rsplit(":", 1)[0]
    assert set(upstreams) == request_ids
    used = set(upstreams.values())
    print(f"\nrequests per replica: {dict(Counter(upstreams.values()))}")
    assert len(used) == 2, upstreams
    assert used == stack.replica_addresses()


def test_a_decision_through_one_replica_is_seen_through_the_other(stack):
    doc = application("cross", age=17)
    status, first = stack.exec_decide(1, doc)
    assert status == 200 and first["outcome"] == "rejected", first
    again = dict(application("cross"), user_id=doc["user_id"])
    status, second = stack.exec_decide(2, again)
    assert status == 200, second
    assert second["reasons"][0]["code"] == "REAPPLY_COOLDOWN", second
    assert second["reapply_after"] == first["reapply_after"]
    status, repeat = stack.exec_decide(2, doc)                # the same application: the stored answer
    assert (status, repeat) == (200, first)


def test_log_export_through_compose_exec(stack):
    status, body, _ = stack.decide(application("rep-export"))
    assert status == 200
    result = stack.compose("exec", "-T", "api", "loan-decide", "log", "export")
    ids = [json.loads(line).get("decision", {}).get("decision_id")
           for line in result.stdout.splitlines() if line.strip()]
    assert ids.count(body["decision_id"]) == 1


def test_a_traceparent_through_nginx_reaches_the_replica_and_its_record(stack):
    trace_id = uuid.uuid4().hex
    sent = f"00-{trace_id}-00f067aa0ba902b7-01"
    status, body, headers = stack.decide(application("rep-trace"), headers={"traceparent": sent})
    assert status == 200, body
    returned = {k.lower(): v for k, v in headers.items()}["traceparent"]
    assert returned.split("-")[1] == trace_id and returned != sent   # the same trace, the replica's span
    result = stack.compose("exec", "-T", "api", "loan-decide", "log", "export")
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    mine = [r for r in records if r.get("decision", {}).get("decision_id") == body["decision_id"]]
    assert [r["trace_id"] for r in mine] == [trace_id]
