"""Faults under load, each on a Redis the test starts itself (AOF, fsync always, DEBUG allowed):
no 5xx other than 503, no lost or duplicated decision in the log, `state diff` = 0 afterwards."""
import os
import signal
import time

import pytest
import redis

from tests.e2e.conftest import http
from tests.e2e.load import Load, check_log_and_state
from tests.e2e.test_reload import worker_pids

pytestmark = pytest.mark.e2e


def serve(live_server, own_redis, workers=2):
    return live_server("--workers", str(workers), env={
        "REDIS_URL": own_redis.url, "REDIS_TIMEOUT": "0.3", "USER_LOCK_TTL_MS": "1000",
        "USER_LOCK_WAIT_S": "2"})


def wait_ready(url, timeout=15):
    deadline = time.monotonic() + timeout
    while http("GET", url + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "never ready again"
        time.sleep(0.1)


def test_redis_killed_under_load_and_restarted(live_server, own_redis, policy):
    server = serve(live_server, own_redis)
    with Load(server.url) as load:
        time.sleep(1.0)
        own_redis.kill()
        time.sleep(1.0)
        own_redis.start()
        wait_ready(server.url)
        time.sleep(1.0)
    assert any(s.status == 503 for s in load.results) and any(s.status == 200 for s in load.results)
    load.retry_unanswered()
    figures = check_log_and_state(load, own_redis.url, policy)
    assert figures["answered"] == figures["sent"]


def test_redis_slower_than_the_timeout(live_server, own_redis, policy):
    server = serve(live_server, own_redis)
    admin = redis.Redis(port=own_redis.port)
    with Load(server.url) as load:
        time.sleep(0.8)
        admin.execute_command("DEBUG", "SLEEP", "1.5")     # blocks the server past REDIS_TIMEOUT
        time.sleep(1.0)
    assert any(s.status == 503 for s in load.results)
    load.retry_unanswered()
    check_log_and_state(load, own_redis.url, policy)


def test_worker_killed_mid_request(live_server, own_redis, policy):
    server = serve(live_server, own_redis, workers=3)
    with Load(server.url, threads=6) as load:
        for _ in range(3):
            time.sleep(0.5)
            for pid in worker_pids(server.process.pid)[:1]:
                os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
    load.retry_unanswered()
    figures = check_log_and_state(load, own_redis.url, policy)
    assert figures["answered"] == figures["sent"]


def test_bad_rules_reload_under_load(live_server, own_redis, policy, tmp_path):
    import shutil

    from tests.conftest import RULES_DIR

    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    server = live_server("--workers", "2", env={"REDIS_URL": own_redis.url, "RULES_DIR": str(rules),
                                                "ADMIN_API_KEY": "ops"})
    version = http("GET", server.url + "/readyz")[1]["rules_version"]
    (rules / "pricing.yaml").write_text("params: {}\nrules:\n  - id: TIER\n    check: high\n")
    with Load(server.url) as load:
        time.sleep(0.5)
        for _ in range(3):
            status, body, _ = http("POST", server.url + "/admin/rules/reload", {}, {"X-Admin-Key": "ops"})
            assert status == 422 and "pricing.yaml" in body["error"]["message"]
            time.sleep(0.3)
    assert {s.status for s in load.results} == {200}
    assert {s.body["rules_version"] for s in load.results} == {version}
    check_log_and_state(load, own_redis.url, policy)
