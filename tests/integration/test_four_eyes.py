"""Four eyes on overrides on the real Redis and on a 3-master cluster, through HTTP: asked by one
operator (202, nothing of the user's state touched), applied by another, refused to its
requester, to a late or second approval, to other roles; racing approvers apply it once; a
refused or stalled store leaves it pending; its log records replay identical and rebuild."""
from __future__ import annotations

import datetime as dt
import io
import json
import threading

import pytest
import redis

from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import replay as replaying
from service.usecases.rebuild import Rebuilder
from tests.conftest import NOW, memory_services, payload, redis_services
from tests.integration.conftest import SECRET
from tests.integration.test_reviews import CLIENT, REVIEWER, replay_source

pytestmark = pytest.mark.integration
ALICE, BOB, CAROL = ({"X-Admin-Key": f"{name}-key"} for name in ("alice", "bob", "carol"))
SINGLE = {"X-Admin-Key": "admin-key"}
LIFT = {"action": "lift_cooldown", "reason": "E2 misread the ID card"}


def four_eyes_api(services, single: bool = False):
    settings = Settings(api_keys=("client-key",), reviewer_keys=("reviewer-key",),
                        admin_keys=("admin-key",) if single else (),
                        operator_keys=tuple((n, f"{n}-key") for n in ("alice", "bob", "carol")))
    return create_app(settings, services=services).test_client()


@pytest.fixture
def api(service):
    return four_eyes_api(service)


def refused(api, user: str) -> dict:
    doc = dict(payload(age=17), user_id=user, application_id="a1")
    decision = api.post("/decide", json=doc, headers=CLIENT).json
    assert decision["reapply_after"], decision
    return decision


def ask(api, user: str, headers=ALICE, **extra):
    return api.post(f"/users/{user}/overrides", json={**LIFT, **extra}, headers=headers)


def approve(api, override_id: str, headers=BOB):
    return api.post(f"/admin/overrides/{override_id}/approve", headers=headers)


def window(api, user: str):
    return api.get(f"/users/{user}/state", headers=CLIENT).json["reapply_after"]


def log_lines(service) -> list[dict]:
    out = io.StringIO()
    service.stores.log.export(out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_asked_by_one_applied_by_another(api, service, clock):
    decision = refused(api, "u-4e")
    asked = ask(api, "u-4e")
    assert asked.status_code == 202, asked.json
    override_id = asked.json["override_id"]
    assert asked.json == {"override_id": override_id, "status": "pending", "requested_by": "alice",
                          "expires_at": (clock.now() + dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert window(api, "u-4e") == decision["reapply_after"]          # nothing of the state moved
    assert approve(api, override_id, ALICE).status_code == 403        # the requester's own key
    clock.advance(hours=1)
    approved = approve(api, override_id)
    assert approved.status_code == 200 and approved.json["reapply_after"] is None, approved.json
    assert window(api, "u-4e") is None
    assert api.post("/decide", json=dict(payload(), user_id="u-4e", application_id="a2"),
                    headers=CLIENT).json["outcome"] == "approved"
    again = approve(api, override_id)
    assert again.status_code == 409 and "already applied" in again.json["error"]["message"]
    assert approve(api, override_id, CAROL).status_code == 409
    kinds = [(r["kind"], r.get("requested_by"), r.get("approved_by")) for r in log_lines(service)
             if r["kind"].startswith("override")]
    assert kinds == [("override_request", "alice", None), ("override", "alice", "bob")]


def test_the_body_operator_must_be_the_keys(api):
    refused(api, "u-op")
    assert ask(api, "u-op", operator_id="alice").status_code == 202
    response = ask(api, "u-op", operator_id="bob")
    assert response.status_code == 400 and "operator_id" in response.json["error"]["fields"]


def test_expired_unknown_bad_ids_and_no_window(api, clock):
    refused(api, "u-late")
    override_id = ask(api, "u-late").json["override_id"]
    clock.advance(hours=23, minutes=59, seconds=59)
    other = ask(api, "u-late").json["override_id"]
    clock.advance(seconds=1)
    late = approve(api, override_id)
    assert late.status_code == 409 and "expired" in late.json["error"]["message"]
    assert window(api, "u-late") is not None
    assert approve(api, "ov_unknown").status_code == 404
    for bad in ("x" * 129, "%0A"):
        response = approve(api, bad)
        assert response.status_code == 400 and "override_id" in response.json["error"]["fields"]
    assert approve(api, other).status_code == 200                    # still pending: applies
    nothing = ask(api, "u-late")                                      # the window is gone
    assert nothing.status_code == 409
    assert ask(api, "u-never").status_code == 409


def test_other_roles_and_the_single_key(policy, store_url, clock):
    service = redis_services(store_url, policy, clock, erasure_secret=SECRET)
    api = four_eyes_api(service, single=True)
    refused(api, "u-role")
    override_id = ask(api, "u-role").json["override_id"]
    for headers in (CLIENT, REVIEWER, {}):
        assert ask(api, "u-role", headers=headers).status_code == 403
        assert approve(api, override_id, headers).status_code == 403
    assert approve(api, override_id, {"X-Admin-Key": "wrong"}).status_code == 401
    single = ask(api, "u-role", SINGLE, operator_id="op")               # no one-step power left
    assert single.status_code == 403 and "two operators" in single.json["error"]["message"]
    assert approve(api, override_id, SINGLE).status_code == 403
    assert api.get("/admin/erasures/er_x", headers=SINGLE).status_code == 404   # still an admin key
    assert api.get("/admin/erasures/er_x", headers=BOB).status_code == 404      # so is an operator's
    assert window(api, "u-role") is not None


def test_the_single_key_alone_stays_one_step(policy, store_url, clock):
    service = redis_services(store_url, policy, clock)
    api = create_app(Settings(api_keys=("client-key",), admin_keys=("admin-key",)),
                     services=service).test_client()
    refused(api, "u-one")
    response = ask(api, "u-one", SINGLE, operator_id="op")
    assert response.status_code == 200 and response.json["reapply_after"] is None
    assert approve(api, "ov_x", SINGLE).status_code == 403
    assert [r["kind"] for r in log_lines(service)] == ["decision", "override"]


def test_racing_approvers_apply_it_once(api, service):
    refused(api, "u-race")
    override_id = ask(api, "u-race").json["override_id"]
    results: list[int] = []
    clients = [four_eyes_api(service) for _ in range(8)]   # built before: app set-up is not for threads

    def one(client, headers) -> None:
        results.append(approve(client, override_id, headers).status_code)

    threads = [threading.Thread(target=one, args=(clients[n], (BOB, CAROL)[n % 2])) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7
    assert sum(r["kind"] == "override" for r in log_lines(service)) == 1


def test_erasure_removes_the_pending_override(api, service):
    refused(api, "u-erase")
    override_id = ask(api, "u-erase").json["override_id"]
    erased = api.delete("/users/u-erase", json={"operator_id": "o", "reason": "r"}, headers=ALICE)
    assert erased.status_code == 200, erased.json
    assert approve(api, override_id).status_code == 404


def test_the_log_replays_identical_and_rebuilds(api, service, policy, clock):
    refused(api, "u-log")
    refused(api, "u-log2")
    first = ask(api, "u-log").json["override_id"]
    ask(api, "u-log2")                                                # asked, never approved
    clock.advance(hours=2)
    approve(api, first)
    lines = [json.dumps(r) for r in log_lines(service)]
    summary = replaying.replay(enumerate(lines, 1), replay_source()).to_dict()
    assert summary["override_requests"] == {"total": 2, "identical": 2}
    assert summary["overrides"] == {"total": 1, "identical": 1}
    assert summary["identical"] == summary["total"]
    fresh = memory_services(policy, FixedClock(clock.now()))
    Rebuilder(fresh.work, fresh.rules, fresh.stores.erased, overrides=fresh.stores.overrides).rebuild(
        json.loads(line) for line in lines)
    assert fresh.decisions.user_state("u-log")["reapply_after"] is None
    assert fresh.decisions.user_state("u-log2")["reapply_after"] is not None
    assert fresh.stores.users.pending_override("u-log", first).approved_by == "bob"


def test_a_refused_approval_is_a_503_and_leaves_it_pending(own_redis, policy, clock, monkeypatch):
    service = redis_services(own_redis.url, policy, clock)
    api = four_eyes_api(service)
    refused(api, "u-oom")
    override_id = ask(api, "u-oom").json["override_id"]
    admin = redis.Redis(port=own_redis.port)
    commit = service.stores.users.commit

    def full_then_commit(snapshot, write):   # the lock is taken: the commit itself is refused
        admin.config_set("maxmemory", "1")
        return commit(snapshot, write)

    monkeypatch.setattr(service.stores.users, "commit", full_then_commit)
    response = approve(api, override_id)
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    monkeypatch.undo()
    admin.config_set("maxmemory", "0")
    assert window(api, "u-oom") is not None
    assert service.stores.users.pending_override("u-oom", override_id).approved_by is None
    assert [r["kind"] for r in log_lines(service)] == ["decision", "override_request"]
    assert approve(api, override_id).status_code == 200


def test_a_stalled_store_is_a_503_and_leaves_it_pending(own_redis, policy, clock):
    service = redis_services(own_redis.url, policy, clock, redis_timeout=0.2)
    api = four_eyes_api(service)
    refused(api, "u-stall")
    override_id = ask(api, "u-stall").json["override_id"]
    redis.Redis(port=own_redis.port).execute_command("CLIENT", "PAUSE", "1500", "WRITE")
    response = approve(api, override_id)
    assert response.status_code == 503, response.json
    assert response.json["error"]["code"] in ("store_unavailable", "busy")
    redis.Redis(port=own_redis.port).execute_command("CLIENT", "UNPAUSE")
    assert window(api, "u-stall") is not None
    assert approve(api, override_id).status_code == 200
