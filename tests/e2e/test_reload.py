"""Rules reload across gunicorn workers: all switch, a respawned worker too, a bad directory is refused."""
import os
import shutil
import signal
import time

import pytest

from tests.conftest import KIT_E10_MIN_HEALTH_70, RULES_DIR, move_threshold, payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e
ADMIN = {"X-Admin-Key": "ops-secret"}


def versions_seen(url, n=24):
    seen = set()
    for i in range(n):
        status, body, _ = http("POST", url + "/decide", dict(payload(), user_id=f"v-{time.time_ns()}-{i}"))
        assert status == 200, body
        seen.add(body["rules_version"])
    return seen


def worker_pids(master_pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master_pid:
                    children.append(int(entry))
            except OSError:
                pass
    return children


def test_reload_reaches_every_worker_and_respawns(live_server, real_redis_url, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    server = live_server("--workers", "3", env={"REDIS_URL": real_redis_url, "RULES_DIR": str(rules),
                                                "ADMIN_API_KEY": "ops-secret"})
    (old,) = versions_seen(server.url)

    # a threshold moved on purpose, and the kit's cases with it (what goes live passes its kit)
    move_threshold(rules, "E10", "min_health_score", 70, kit=KIT_E10_MIN_HEALTH_70)
    status, result, _ = http("POST", server.url + "/admin/rules/reload", {}, ADMIN)
    assert status == 200 and result["previous_version"] == old
    new = result["rules_version"]
    assert result["sample"]["total"] >= 1
    time.sleep(1.2)                                   # each worker checks at most once a second
    assert versions_seen(server.url) == {new}

    # a worker killed and respawned from the master (which loaded the old rules) serves the new
    for pid in worker_pids(server.process.pid):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while len(worker_pids(server.process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert versions_seen(server.url) == {new}

    (rules / "groups.yaml").write_text("rules: not a list\n")
    status, body, _ = http("POST", server.url + "/admin/rules/reload", {}, ADMIN)
    assert status == 422 and "groups.yaml" in body["error"]["message"]
    assert versions_seen(server.url, 8) == {new}


def test_metrics_add_up_across_workers(live_server, real_redis_url):
    server = live_server("--workers", "3", env={"REDIS_URL": real_redis_url})
    for i in range(12):
        http("POST", server.url + "/decide", dict(payload("emergency"), user_id=f"m-{i}"))
    text = __import__("urllib.request").request.urlopen(server.url + "/metrics").read().decode()
    line = next(l for l in text.splitlines()
                if l.startswith("decisions_total{") and 'product="emergency"' in l and 'outcome="approved"' in l)
    assert float(line.rsplit(" ", 1)[1]) == 12
