"""docker-compose.yml run for real: the image built, `up` healthy, the API through the
published port (nginx in front, slow clients held there), state that survives Redis restarts and `down`/`up`, nothing answered 200 lost
when containers are killed mid-load, and `docker compose exec api loan-decide log export`.

Needs a Docker engine with the compose plugin and the base images (scripts/docker-engine.sh,
scripts/docker-standins.sh); skipped with the reason otherwise. Run by .ci/run as its own step.
"""
from __future__ import annotations

import json
import socket
import threading
from collections import Counter
import time

import pytest

from tests.deploy.dockerrun import CLIENT_KEY, UP_BOUND_S, application, stack_fixture
from tests.e2e.conftest import http

pytestmark = pytest.mark.docker

stack = stack_fixture("docker-compose.yml", "loan-decide-dockertest")


def test_up_is_healthy_within_the_bound(stack, image):
    print(f"\nimage build {image:.0f} s; docker-compose.yml up --wait {stack.up_seconds[0]:.0f} s")
    assert stack.up_seconds[0] < UP_BOUND_S
    for service in ("api", "nginx", "redis"):
        (container,) = stack.containers(service)
        assert (container["State"], container["Health"]) == ("running", "healthy"), container


def test_decide_with_the_key_and_401_without(stack):
    doc = application("key")
    status, body, headers = stack.decide(doc, headers={"X-Request-ID": "docker-key-1"})
    assert status == 200, body
    assert body["outcome"] == "approved"
    assert headers["X-Request-ID"] == "docker-key-1"
    assert stack.decide(application("nokey"), key=None)[0] == 401
    assert stack.decide(application("badkey"), key="not-a-key")[0] == 401


def test_readyz_and_metrics(stack):
    status, body, _ = http("GET", stack.url + "/readyz")
    assert (status, body["status"]) == (200, "ready")
    status, text, headers = http("GET", stack.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "decisions_total" in text


def _in_cooldown(stack, user_id: str, reapply_after: str) -> None:
    doc = dict(application("again"), user_id=user_id)
    status, body, _ = stack.decide(doc)
    assert status == 200, body
    assert body["reasons"][0]["code"] == "REAPPLY_COOLDOWN", body
    assert body["reapply_after"] == reapply_after


def test_a_rejection_window_survives_redis_restart_and_down_up(stack):
    doc = application("window", age=17)
    status, first, _ = stack.decide(doc)
    assert status == 200 and first["outcome"] == "rejected", first
    reapply_after = first["reapply_after"]
    assert reapply_after

    stack.compose("restart", "redis")
    stack.wait_ready()
    _in_cooldown(stack, doc["user_id"], reapply_after)

    stack.down()                                   # containers gone, the named volume kept
    assert not stack.containers("redis")
    stack.up()
    print(f"\nup again after down: {stack.up_seconds[-1]:.0f} s")
    _in_cooldown(stack, doc["user_id"], reapply_after)
    status, stored, _ = stack.get(f"/applications/{doc['application_id']}?user_id={doc['user_id']}")
    assert status == 200, stored
    assert stored["decision"]["decision_id"] == first["decision_id"]


class Load:
    """Threads sending new applications until stopped (bounded in count): every answer kept."""

    def __init__(self, stack, threads: int = 4, cap: int = 3000):
        self.stack, self.cap = stack, cap
        self.answers: list[tuple[dict, int, dict | None]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        while not self.stop.is_set() and len(self.answers) < self.cap:
            doc = application("load")
            try:
                status, body, _ = self.stack.decide(doc)
            except OSError:                        # refused or reset while a container is down
                status, body = 0, None
                time.sleep(0.05)
            with self.lock:
                self.answers.append((doc, status, body))

    def ok(self) -> int:
        with self.lock:
            return sum(1 for _, status, _ in self.answers if status == 200)

    def wait_for_more(self, count: int, bound: float = 120) -> None:
        target = self.ok() + count
        deadline = time.monotonic() + bound
        while self.ok() < target:
            assert time.monotonic() < deadline, f"fewer than {count} more 200s in {bound} s"
            assert len(self.answers) < self.cap, "load cap reached"
            time.sleep(0.05)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_containers_killed_mid_load_lose_nothing_answered_200(stack):
    with Load(stack) as load:
        load.wait_for_more(40)
        stack.compose("kill", "-s", "SIGKILL", "redis")      # no shutdown: only the AOF on disk
        stack.compose("start", "redis")
        load.wait_for_more(40)
        stack.compose("kill", "-s", "SIGKILL", "api")        # in-flight requests die with it
        stack.compose("start", "api")
        load.wait_for_more(40)
    stack.wait_ready()
    answered = [(doc, body) for doc, status, body in load.answers if status == 200]
    statuses = Counter(status for _, status, _ in load.answers)
    print(f"\nkilled mid-load: answers by status {dict(statuses)} (0: connection refused or reset)")
    assert set(statuses) <= {0, 200, 503}, statuses
    for doc, body in answered:
        path = f"/applications/{doc['application_id']}?user_id={doc['user_id']}"
        status, stored, _ = stack.get(path)
        assert status == 200, (doc["application_id"], stored)
        assert stored["decision"]["decision_id"] == body["decision_id"]
    # the decision log holds each of them once
    exported = stack.compose("exec", "-T", "api", "loan-decide", "log", "export").stdout
    ids = [json.loads(line).get("decision", {}).get("decision_id")
           for line in exported.splitlines() if line.strip()]
    for _, body in answered:
        assert ids.count(body["decision_id"]) == 1, body["decision_id"]


def test_log_export_through_compose_exec_as_the_docs_say(stack):
    doc = application("export")
    status, body, _ = stack.decide(doc)
    assert status == 200
    # docs/operations.md: docker compose exec api loan-decide log export > decisions.jsonl
    result = stack.compose("exec", "-T", "api", "loan-decide", "log", "export")
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    mine = [r for r in records if r.get("decision", {}).get("decision_id") == body["decision_id"]]
    assert len(mine) == 1 and mine[0]["user_id"] == doc["user_id"], mine
    assert "exported" in result.stderr
    # and into the exports volume, the api user's only writable directory besides /tmp
    stack.compose("exec", "-T", "api", "sh", "-c",
                  "loan-decide log export > /app/exports/decisions.jsonl")
    count = stack.compose("exec", "-T", "api", "wc", "-l", "/app/exports/decisions.jsonl").stdout
    assert int(count.split()[0]) >= len(records)


def test_slow_clients_do_not_stop_the_service(stack):
    """200 connections that send half a request and stall: nginx holds them,
    and everybody else is answered; straight to gunicorn's 2 sync workers, 2 such were enough."""
    slow = []
    try:
        for n in range(200):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
            sock.sendall(b"POST /decide HTTP/1.1\r\nHost: slow\r\nX-API-Key: " + CLIENT_KEY.encode()
                         + b"\r\n")
            slow.append(sock)
        for n in range(10):
            assert http("GET", stack.url + "/healthz")[0] == 200
            status, body, _ = stack.decide(application("beside-slow"))
            assert status == 200, body
        for sock in slow:                          # one more header line each: still stalled
            sock.sendall(b"X-Slow: 1\r\n")
        assert stack.decide(application("beside-slow"))[0] == 200
    finally:
        for sock in slow:
            sock.close()


def test_client_key_is_not_in_the_logs(stack):
    assert CLIENT_KEY not in stack.logs("api")
