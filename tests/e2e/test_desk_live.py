"""The reviewers' desk and four-eyes overrides through a live `loan-decide serve` (gunicorn, 2
workers, real Redis): reviewers racing for one claim, the holder alone closing the case, two
operators racing to approve one override, and the exported log replaying it all identical."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

CLIENT = {"X-API-Key": "client-live"}
REVIEWER = {"X-API-Key": "reviewer-live"}
ALICE, BOB, CAROL = ({"X-Admin-Key": f"{name}-live"} for name in ("alice", "bob", "carol"))
CLI = str(Path(sys.executable).with_name("loan-decide"))


def race(calls) -> list:
    """Run the calls at once (a barrier releases them together); their answers in call order."""
    barrier, answers = threading.Barrier(len(calls)), [None] * len(calls)

    def one(i: int, call) -> None:
        barrier.wait()
        answers[i] = call()

    threads = [threading.Thread(target=one, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


@pytest.fixture
def server(live_server, real_redis_url):
    return live_server("--workers", "2", env={
        "REDIS_URL": real_redis_url, "API_KEYS": "client-live", "REVIEWER_API_KEYS": "reviewer-live",
        "ADMIN_API_KEYS": "alice:alice-live,bob:bob-live,carol:carol-live"})


def test_racing_claims_one_holder_closes(server):
    url = server.url
    doc = dict(payload(drop=("pay_score",)), user_id="u-desk", application_id="a1")
    assert http("POST", url + "/decide", doc, CLIENT)[1]["outcome"] == "review"

    def claim(reviewer: str):
        return lambda: http("POST", url + "/reviews/a1/claim", {"user_id": "u-desk", "reviewer_id": reviewer},
                            REVIEWER)

    answers = race([claim(f"rev-{i}") for i in range(4)])
    assert sorted(a[0] for a in answers) == [200, 409, 409, 409], [a[:2] for a in answers]
    holder = next(a[1]["review"]["claimed_by"] for a in answers if a[0] == 200)
    item = http("GET", url + "/reviews?status=pending", headers=REVIEWER)[1]["items"][0]
    assert item["claimed_by"] == holder and item["claimed_until"]

    other = next(f"rev-{i}" for i in range(4) if f"rev-{i}" != holder)
    noted = http("POST", url + "/reviews/a1/notes", {"user_id": "u-desk", "reviewer_id": other,
                                                    "text": "电话 13812345678 已核对"}, REVIEWER)
    assert noted[0] == 200 and [n["reviewer_id"] for n in noted[1]["review"]["notes"]] == [other]
    close = {"user_id": "u-desk", "outcome": "approved", "note": "ok"}
    assert http("POST", url + "/applications/a1/review", {**close, "reviewer_id": other}, REVIEWER)[0] == 409
    done = http("POST", url + "/applications/a1/review", {**close, "reviewer_id": holder}, REVIEWER)
    assert done[0] == 200 and done[1]["status"] == "approved" and done[1]["review"]["claimed_by"] is None
    assert http("GET", url + "/reviews?status=pending", headers=REVIEWER)[1]["items"] == []
    metrics = http("GET", url + "/metrics")[1]
    assert 'review_desk_steps_total{result="written",step="claim"} 1.0' in metrics
    assert "13812345678" not in server.output()


def test_racing_approvers_apply_one_override_and_the_log_replays(server, real_redis_url, tmp_path):
    url = server.url
    doc = dict(payload(age=17), user_id="u-4e", application_id="a1")
    refused = http("POST", url + "/decide", doc, CLIENT)[1]
    assert refused["reapply_after"]
    lift = {"action": "lift_cooldown", "reason": "E2 misread the ID card"}
    assert http("POST", url + "/users/u-4e/overrides", lift, CLIENT)[0] == 403
    status, asked, _ = http("POST", url + "/users/u-4e/overrides", lift, ALICE)
    assert status == 202 and asked["requested_by"] == "alice" and asked["status"] == "pending"
    assert http("GET", url + "/users/u-4e/state", headers=CLIENT)[1]["reapply_after"] == refused["reapply_after"]
    approve = url + f"/admin/overrides/{asked['override_id']}/approve"
    assert http("POST", approve, headers=ALICE)[0] == 403                     # the requester's own key

    answers = race([lambda key=key: http("POST", approve, headers=key) for key in (BOB, CAROL, BOB, CAROL)])
    assert sorted(a[0] for a in answers) == [200, 409, 409, 409], [a[:2] for a in answers]
    assert http("GET", url + "/users/u-4e/state", headers=CLIENT)[1]["reapply_after"] is None
    assert http("POST", approve, headers=BOB)[0] == 409

    exported = subprocess.run([CLI, "log", "export"], env={"REDIS_URL": real_redis_url, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True).stdout
    kinds = [json.loads(line)["kind"] for line in exported.splitlines()]
    assert kinds.count("override_request") == 1 and kinds.count("override") == 1, kinds
    log = tmp_path / "log.jsonl"
    log.write_text(exported, encoding="utf-8")
    replayed = subprocess.run([CLI, "replay", str(log), "--json"], capture_output=True, text=True,
                              env={"REDIS_URL": real_redis_url, "PATH": "/usr/bin:/bin"})
    summary = json.loads(replayed.stdout)
    assert replayed.returncode == 0, replayed.stderr
    assert (summary["total"], summary["identical"], summary["changed"]) == (1, 1, 0), summary
    assert summary["override_requests"] == summary["overrides"] == {"total": 1, "identical": 1}, summary
