"""The rule-change workflow through a live server (2 gunicorn workers, real Redis): archive,
kit gate, shadow (counts equal a replay), challenger (arms, replay 100% exact), promote, history."""
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
import yaml

from service.adapters import decision_log
from service.entrypoints.bootstrap import policy_source
from service.entrypoints.settings import Settings
from service.usecases import replay
from tests.conftest import RULES_DIR, payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e
ADMIN = {"X-Admin-Key": "ops-secret"}


def candidate(tmp_path, name: str, min_health: int, update_kit: bool, min_age: int = 18):
    """The bundled rules with E10's minimum (and E2's) moved; the kit moved along with E10 or not."""
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / "eligibility.yaml").read_text())
    next(r for r in doc["rules"] if r["id"] == "E10")["params"]["min_health_score"] = min_health
    next(r for r in doc["rules"] if r["id"] == "E2")["params"]["min_age"] = min_age
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    if update_kit:
        kit = (rules / "tests" / "eligibility.yaml").read_text()
        kit = kit.replace("health_score: 60}", f"health_score: {min_health}}}")
        kit = kit.replace("health_score: 59}", f"health_score: {min_health - 1}}}")
        (rules / "tests" / "eligibility.yaml").write_text(kit)
    return rules


def archive(directory, redis_url) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-m", "service.entrypoints.cli", "rules", "archive",
                           str(directory)], env={**os.environ, "REDIS_URL": redis_url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


def decide_many(url, prefix: str, n: int) -> list[dict]:
    out = []
    for i in range(n):
        doc = dict(payload("xiaoe", health_score=62 + i % 10), user_id=f"{prefix}-{i}",
                   application_id=f"{prefix}-app-{i}")
        status, body, _ = http("POST", url + "/decide", doc)
        assert status == 200, body
        out.append(body)
    return out


def until(check, what: str, limit: float = 15):
    """Poll a condition the workers reach on their own (sync once a second, flush after send)."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def logged(redis_url) -> list[tuple[int, str]]:
    out = io.StringIO()
    decision_log.export(redis.Redis.from_url(redis_url), "ld", out)
    return list(enumerate(out.getvalue().splitlines(), 1))


def test_rule_change_workflow(live_server, real_redis_url, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(RULES_DIR, live)
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url, "RULES_DIR": str(live),
                                                "ADMIN_API_KEY": "ops-secret"})
    good_dir = candidate(tmp_path, "good", 70, update_kit=True)
    good, report = archive(good_dir, real_redis_url)
    assert good.startswith("sha256:") and "kit: 106/106 cases pass" in report
    broken, report = archive(candidate(tmp_path, "broken", 70, update_kit=True, min_age=19), real_redis_url)
    assert "FAIL eligibility.yaml: E2 age 18 is accepted" in report and broken != good

    # a candidate that breaks a pinned boundary is refused as challenger; nothing changes
    status, body, _ = http("POST", server.url + "/admin/rules/challenger",
                           {"rules_version": broken, "share": 0.5}, ADMIN)
    assert status == 422 and "E2 age 18 is accepted" in json.dumps(body)

    # shadow: the answers stay the champion's; the report counts what a replay under the candidate counts
    status, body, _ = http("POST", server.url + "/admin/rules/shadow", {"rules_version": good}, ADMIN)
    assert status == 200, body
    time.sleep(1.1)   # both workers pick the shadow up at their next once-a-second sync
    live_version = decide_many(server.url, "s", 2)[0]["rules_version"]
    decisions = decide_many(server.url, "shadow", 40)
    assert {d["rules_version"] for d in decisions} == {live_version} and all("arm" not in d for d in decisions)
    total = 42
    shadow = until(lambda: (lambda r: r[1] if r[1]["evaluated"] == total else None)(
        http("GET", server.url + "/admin/shadow", headers=ADMIN)), "shadow counted every decision")
    summary = replay.replay(logged(real_redis_url), policy_source(Settings(), rules_dir=good_dir)).to_dict()
    assert summary["total"] == total
    assert (shadow["identical"], shadow["changed"]) == (summary["identical"], summary["changed"])
    assert shadow["transitions"] == summary["transitions"] == {"approved->rejected": 34}
    assert shadow["rules"] == summary["rules"]
    assert http("DELETE", server.url + "/admin/rules/shadow", headers=ADMIN)[0] == 200
    assert http("DELETE", server.url + "/admin/rules/shadow", headers=ADMIN)[0] == 409   # none runs

    # a version archived without a kit may shadow, never go live
    kitless = tmp_path / "kitless"
    shutil.copytree(good_dir, kitless, ignore=shutil.ignore_patterns("tests"))
    (kitless / "products.yaml").write_text((kitless / "products.yaml").read_text() + "\n# no kit\n")
    bare, report = archive(kitless, real_redis_url)
    assert "kit: no case" in report
    status, body, _ = http("POST", server.url + "/admin/rules/challenger", {"rules_version": bare, "share": 1}, ADMIN)
    assert status == 422 and "no policy test kit" in body["error"]["message"]

    # challenger: a stable half of the users, each decision naming its arm and version
    status, body, _ = http("POST", server.url + "/admin/rules/challenger",
                           {"rules_version": good, "share": 0.5}, ADMIN)
    assert status == 200 and body["kit"]["ok"] is True, body
    time.sleep(1.1)   # past every worker's once-a-second sync: each next request runs the challenger
    until(lambda: all("arm" in d for d in decide_many(server.url, f"w{time.time_ns()}", 4)),
          "both workers run the challenger")
    arms = decide_many(server.url, "arm", 40)
    assert {d["arm"] for d in arms} == {"champion", "challenger"}
    for d in arms:
        assert d["rules_version"] == (good if d["arm"] == "challenger" else live_version)
    again = decide_many(server.url, "arm", 40)   # same users, same applications: same answers
    assert [d["arm"] for d in again] == [d["arm"] for d in arms]
    metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    assert 'decisions_by_arm_total{arm="challenger"' in metrics

    # replay of a log holding both arms: every record under its own version, 100% exact
    source = policy_source(Settings(redis_url=real_redis_url))
    both = replay.replay(logged(real_redis_url), source).to_dict()
    assert both["exact"] == both["total"] and both["changed"] == 0

    status, body, _ = http("POST", server.url + "/admin/rules/promote", {}, ADMIN)
    assert status == 200 and body["rules_version"] == good
    until(lambda: {d["rules_version"] for d in decide_many(server.url, f"p{time.time_ns()}", 6)} == {good},
          "every worker runs the promoted version")

    status, body, _ = http("GET", server.url + "/admin/rules/history", headers=ADMIN)
    events = [(e["event"], e["rules_version"]) for e in body["history"]]
    assert events == [("start-up", live_version), ("shadow", good), ("shadow_stopped", good),
                      ("challenger", good), ("promote", good)]
    assert body["history"][0]["admin"] == "service" and body["history"][0]["kit"]["ok"] is True
    assert all(e["admin"].startswith("admin-key:") and "ops-secret" not in json.dumps(e)
               for e in body["history"][1:])
    assert body["history"][-1]["previous_version"] == live_version
    assert body["history"][-1]["kit"]["ok"] is True and "sample" in body["history"][-1]
