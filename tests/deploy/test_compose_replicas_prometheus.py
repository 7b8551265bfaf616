"""docker-compose.replicas.yml's Prometheus, run for real: it finds both api replicas in Docker's
DNS, scrapes each directly, and the decisions made through nginx add up, over the replicas, to
exactly the number made.

A stack of its own (not test_compose_replicas_run.py's), so no other test's decisions are in the
sum: it starts from fresh volumes and makes N decisions, and sum(decisions_total) must be N once
the scrapes catch up (2 s apart) and stay N (a replica scraped twice, or through nginx, would
not). Needs what test_compose_run.py needs (skipped with the reason otherwise).
"""
from __future__ import annotations

import time
import urllib.parse

import pytest

from tests.deploy.dockerrun import application, stack_fixture
from tests.e2e.conftest import http

pytestmark = pytest.mark.docker

stack = stack_fixture("docker-compose.replicas.yml", "loan-decide-dockertest-prometheus")
DECISIONS = 40
CATCH_UP_S = 60           # a scrape every 2 s; the bound leaves room for a busy machine


def query(stack, promql: str) -> list[dict]:
    """The instant vector of one PromQL query (Prometheus' HTTP API)."""
    status, body, _ = http("GET", f"{stack.prometheus_url}/api/v1/query?"
                           + urllib.parse.urlencode({"query": promql}))
    assert status == 200 and body["status"] == "success", body
    return body["data"]["result"]


def scalar(stack, promql: str) -> float | None:
    result = query(stack, promql)
    return float(result[0]["value"][1]) if result else None


def wait_for(stack, promql: str, wanted=None, bound: float = CATCH_UP_S) -> tuple[float, float]:
    """Poll until the query's one value is `wanted` (None: until it has a value at all, as a
    filter like `count(...) >= 2` has only when it holds); (the value, seconds waited)."""
    started = time.monotonic()
    value = None
    while time.monotonic() - started < bound:
        value = scalar(stack, promql)
        if value is not None and wanted in (None, value):
            return value, time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {value}, not {wanted}, after {bound} s:\n{stack.logs('prometheus')}")


def test_prometheus_scrapes_each_replica_directly(stack):
    wait_for(stack, 'count(up{job="api"} == 1)', 2)
    status, body, _ = http("GET", stack.prometheus_url + "/api/v1/targets?state=active")
    assert status == 200, body
    targets = [t for t in body["data"]["activeTargets"] if t["labels"]["job"] == "api"]
    scraped = {t["labels"]["instance"].rsplit(":", 1)[0] for t in targets}
    print(f"\nPrometheus targets: {sorted(t['labels']['instance'] for t in targets)}")
    assert scraped == stack.replica_addresses(), "every replica, by its own address, and nothing else"
    assert all(t["health"] == "up" for t in targets), targets


def test_the_rules_are_loaded_and_nothing_fires(stack):
    status, body, _ = http("GET", stack.prometheus_url + "/api/v1/rules")
    assert status == 200, body
    rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
    assert len(rules) >= 18 and all(rule["health"] in ("ok", "unknown") for rule in rules), rules
    assert {rule["name"] for rule in rules} >= {"job:decisions:rate5m", "ApiNoReplicaUp"}
    status, body, _ = http("GET", stack.prometheus_url + "/api/v1/alerts")
    assert [a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"] == []


def test_the_decisions_through_nginx_add_up_over_the_replicas(stack):
    up, _ = wait_for(stack, 'count(up{job="api"} == 1) >= 2')
    assert up == 2
    started = time.monotonic()
    for n in range(DECISIONS):
        status, body, _ = stack.decide(application(f"prom-{n}"))
        assert status == 200, body
    made_in = time.monotonic() - started
    total, waited = wait_for(stack, "sum(decisions_total)", DECISIONS)
    per_replica = {r["metric"]["instance"]: float(r["value"][1])
                   for r in query(stack, "sum by (instance) (decisions_total)")}
    print(f"\n{DECISIONS} decisions through nginx in {made_in:.1f} s; Prometheus sum(decisions_total) "
          f"= {total:.0f} after {waited:.1f} s; per replica {per_replica}")
    assert len(per_replica) == 2 and all(v > 0 for v in per_replica.values()), per_replica
    assert sum(per_replica.values()) == DECISIONS
    time.sleep(5)                                              # two more scrapes: still N
    assert scalar(stack, "sum(decisions_total)") == DECISIONS


def test_the_recorded_decision_rate_follows_a_second_batch(stack):
    """A series' first sample is its start, not an increase: N decisions made between two
    scrapes leave rate() at 0. A second batch on the same series is an increase."""
    before = scalar(stack, "sum(decisions_total)") or 0
    for n in range(DECISIONS):
        assert stack.decide(application(f"prom-again-{n}"))[0] == 200
    wait_for(stack, "sum(decisions_total)", before + DECISIONS)
    rate, waited = wait_for(stack, "job:decisions:rate5m > 0")   # the next rule evaluation
    print(f"\njob:decisions:rate5m = {rate:.3f}/s, {waited:.1f} s after the sum caught up")
