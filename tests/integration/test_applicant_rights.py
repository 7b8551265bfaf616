"""An applicant's rights on the real Redis and on a 3-master cluster, through HTTP: a person
instead of the rules (every 409, the deadline's last second, concurrent requests, the window
after an approval and after a rejection) and a copy of one's data (exactly the user's, with a
receipt that holds no personal data), and both across an erasure and a replay."""
from __future__ import annotations

import datetime as dt
import io
import json
import threading

import pytest

from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import replay as replaying
from tests.conftest import NOW, payload, redis_services
from tests.integration.conftest import SECRET
from tests.integration.test_reviews import ADMIN, CLIENT, REVIEWER, api_for, body, replay_source

pytestmark = pytest.mark.integration
ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def api(service):
    return api_for(service)


def rejected(api, user: str, app: str, **applicant) -> dict:
    """A rejection the rules made (E2: age 17), with its 90-day window."""
    doc = dict(payload(**{"age": 17, **applicant}), user_id=user, application_id=app)
    decision = api.post("/decide", json=doc, headers=CLIENT).json
    assert decision["outcome"] == "rejected" and decision["reapply_after"], decision
    return decision


def ask(api, user: str, app: str, statement=None, headers=CLIENT):
    doc = {"user_id": user} if statement is None else {"user_id": user, "statement": statement}
    return api.post(f"/applications/{app}/human-review", json=doc, headers=headers)


def log_lines(service) -> list[dict]:
    out = io.StringIO()
    service.stores.log.export(out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def state(api, user: str) -> dict:
    return api.get(f"/users/{user}/state", headers=CLIENT).json


def test_a_request_opens_an_applicant_case_and_the_same_request_answers_the_same(api, service, clock):
    decision = rejected(api, "u-ask", "a1")
    clock.advance(days=3)
    first = ask(api, "u-ask", "a1", "我已满18岁，请人工复核")
    assert first.status_code == 200, first.json
    view = first.json
    assert view["status"] == "review_requested"
    assert view["decision"] == decision                        # the refusal stands
    assert view["human_review"] == {"requested_by": "applicant", "requested_at": clock.now().strftime(ISO),
                                    "statement": "我已满18岁，请人工复核",
                                    "rules_version": decision["rules_version"]}
    assert state(api, "u-ask")["reapply_after"] == decision["reapply_after"]   # and its window
    items = api.get("/reviews", headers=REVIEWER).json["items"]
    assert [(i["application_id"], i["requested_by"], i["reason_codes"]) for i in items] == [
        ("a1", "applicant", ["AGE_OUT_OF_RANGE"])]
    again = ask(api, "u-ask", "a1", "我已满18岁，请人工复核")
    assert again.status_code == 200 and again.json == view
    assert ask(api, "u-ask", "a1", "another statement").status_code == 409
    assert api.get("/applications/a1?user_id=u-ask", headers=CLIENT).json == view
    records = [r for r in log_lines(service) if r["kind"] == "human_review"]
    assert len(records) == 1
    assert records[0]["deadline"] == (dt.datetime.strptime(decision["decided_at"], ISO)
                                      + dt.timedelta(days=30)).strftime(ISO + "")
    assert records[0]["request"]["applicant"]["age"] == 17


def test_every_refusal_is_a_409_naming_why(api, clock):
    approved = dict(payload(), user_id="u-409", application_id="ok")
    assert api.post("/decide", json=approved, headers=CLIENT).json["outcome"] == "approved"
    review = dict(payload(drop=("pay_score",)), user_id="u-409-r", application_id="rv")
    assert api.post("/decide", json=review, headers=CLIENT).json["outcome"] == "review"
    rejected(api, "u-409-c", "first")
    by_state = api.post("/decide", json=dict(payload(), user_id="u-409-c", application_id="second"),
                        headers=CLIENT).json
    assert by_state["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
    cases = [("u-409", "ok", "not a rejection"), ("u-409-r", "rv", "not a rejection"),
             ("u-409-c", "second", "refusal by the user's state")]
    for user, app, why in cases:
        response = ask(api, user, app)
        assert response.status_code == 409 and why in response.json["error"]["message"], response.json
    # a second request once a person decided
    assert ask(api, "u-409-c", "first").status_code == 200
    assert api.post("/applications/first/review", json=body("u-409-c", "rejected", ["AGE_OUT_OF_RANGE"]),
                    headers=REVIEWER).status_code == 200
    response = ask(api, "u-409-c", "first")
    assert response.status_code == 409 and "reviewed by a person" in response.json["error"]["message"]
    assert api.get("/applications/first?user_id=u-409-c", headers=CLIENT).json["status"] == "rejected"


def test_the_deadline_last_second_in_the_next_one_out(api, clock):
    decided = dt.datetime.strptime(rejected(api, "u-in", "a1")["decided_at"], ISO).replace(tzinfo=dt.timezone.utc)
    rejected(api, "u-out", "a1")
    clock.set(decided + dt.timedelta(days=30))
    assert ask(api, "u-in", "a1").status_code == 200
    clock.set(decided + dt.timedelta(days=30, seconds=1))
    late = ask(api, "u-out", "a1")
    assert late.status_code == 409 and "30 days to ask ended at" in late.json["error"]["message"]
    assert api.get("/applications/a1?user_id=u-out", headers=CLIENT).json["status"] == "rejected"


def test_bad_input_and_wrong_roles(api):
    rejected(api, "u-bad", "a1")
    assert ask(api, "u-bad", "a1", headers=REVIEWER).status_code == 403
    assert ask(api, "u-bad", "a1", headers={}).status_code == 401
    assert ask(api, "u-bad", "a1", headers=ADMIN).status_code == 401
    assert ask(api, "u-other", "a1").status_code == 404                    # another user's application
    assert ask(api, "u-bad", "nope").status_code == 404
    for doc, field in [({"user_id": "u-bad", "statement": "x" * 2001}, "statement"),
                       ({"user_id": "u-bad", "extra": 1}, "extra"), ({}, "user_id"),
                       ({"user_id": "a/b"}, "user_id"), ({"user_id": "u-bad", "statement": 5}, "statement")]:
        response = api.post("/applications/a1/human-review", json=doc, headers=CLIENT)
        assert response.status_code == 400 and field in response.json["error"]["fields"], (doc, response.json)
    assert api.post("/applications/%0A/human-review", json={"user_id": "u-bad"}, headers=CLIENT).status_code == 400
    assert api.post("/applications/a1/human-review", data="x",
                    headers={**CLIENT, "Content-Type": "text/plain"}).status_code == 415
    assert api.get("/applications/a1?user_id=u-bad", headers=CLIENT).json["status"] == "rejected"


def test_concurrent_requests_open_one_case(api, service):
    rejected(api, "u-race", "a1")
    results: list[int] = []

    def one() -> None:
        results.append(ask(api_for(service), "u-race", "a1", "please").status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    assert sum(r["kind"] == "human_review" for r in log_lines(service)) == 1
    assert len(api.get("/reviews", headers=REVIEWER).json["items"]) == 1


def test_an_approval_gives_the_offer_at_review_time_and_ends_the_window(api, clock):
    rejected(api, "u-yes", "a1")
    ask(api, "u-yes", "a1", "my ID was misread")
    reviewed_at = clock.advance(days=2)
    view = api.post("/applications/a1/review", json=body("u-yes"), headers=REVIEWER).json
    assert view["status"] == "approved" and view["offer"]["limit"] > 0 and view["reapply_after"] is None
    assert view["review"]["reviewed_at"] == reviewed_at.strftime(ISO)
    assert view["human_review"]["statement"] == "my ID was misread"
    assert state(api, "u-yes")["reapply_after"] is None
    again = api.post("/decide", json=dict(payload(), user_id="u-yes", application_id="a2"), headers=CLIENT).json
    assert again["outcome"] == "approved"
    assert api.get("/reviews", headers=REVIEWER).json["items"] == []


def test_an_approval_leaves_a_window_another_refusal_set(api, clock):
    """Only the window this refusal opened ends: a later one (here, an erased user's kept one
    would be alike) is another decision's."""
    rejected(api, "u-two", "a1")
    ask(api, "u-two", "a1")
    clock.advance(days=1)
    assert api.post("/users/u-two/overrides", json={"action": "lift_cooldown", "operator_id": "op",
                                                    "reason": "wrong"}, headers=ADMIN).status_code == 200
    later = rejected(api, "u-two", "a2")
    view = api.post("/applications/a1/review", json=body("u-two"), headers=REVIEWER).json
    assert view["status"] == "approved"
    assert state(api, "u-two")["reapply_after"] == later["reapply_after"]


def test_a_rejection_keeps_the_original_window(api, clock):
    decision = rejected(api, "u-no", "a1")
    ask(api, "u-no", "a1")
    clock.advance(days=10)
    view = api.post("/applications/a1/review", json=body("u-no", "rejected", ["AGE_OUT_OF_RANGE"]),
                    headers=REVIEWER).json
    assert view["status"] == "rejected" and view["reapply_after"] == decision["reapply_after"]
    assert state(api, "u-no")["reapply_after"] == decision["reapply_after"]   # not moved to review time


def test_export_holds_exactly_the_users_data_and_its_receipt_none(api, service, clock):
    rejected(api, "u-me", "a1")
    ask(api, "u-me", "a1", "call me on 13812345678")
    clock.advance(hours=1)
    api.post("/decide", json=dict(payload(), user_id="u-me", application_id="a2"), headers=CLIENT)
    rejected(api, "u-else", "b1")
    url = "/users/u-me/export?operator_id=dpo-1&reason=" + "PIPL art. 45 request, phone 13912345678"
    response = api.get(url, headers=ADMIN)
    assert response.status_code == 200, response.json
    copy = response.json
    assert copy["user_id"] == "u-me" and copy["receipt_id"].startswith("ex_")
    assert copy["state"] == state(api, "u-me") | {"as_of": copy["state"]["as_of"]}
    assert [(a["application_id"], a["status"]) for a in copy["applications"]] == [
        ("a1", "review_requested"), ("a2", "rejected")]
    for app in copy["applications"]:
        assert app["request"]["application_id"] == app["application_id"]
        view = api.get(f"/applications/{app['application_id']}?user_id=u-me", headers=CLIENT).json
        assert {k: v for k, v in app.items() if k != "request"} == view
    exported = [r for r in log_lines(service) if r["user_id"] == "u-me"]
    assert copy["log"] == exported and len(exported) == 3
    assert "u-else" not in json.dumps(copy)
    receipt = next(r for r in log_lines(service) if r["kind"] == "export")
    assert receipt["receipt_id"] == copy["receipt_id"] and receipt["user_id"] == ""
    assert receipt["exported"] == {"applications": 2, "log_records": 3, "state": True}
    text = json.dumps(receipt, ensure_ascii=False)
    assert "u-me" not in text and "13912345678" not in text and "dpo-1" in text
    assert api.get(f"/admin/erasures/{copy['receipt_id']}", headers=ADMIN).status_code == 404


def test_export_status_codes(api):
    rejected(api, "u-exp", "a1")
    good = "/users/u-exp/export?operator_id=o&reason=r"
    assert api.get(good, headers=CLIENT).status_code == 403
    assert api.get(good, headers=REVIEWER).status_code == 403
    assert api.get(good, headers={"X-Admin-Key": "wrong"}).status_code == 401
    assert api.get("/users/u-nobody/export?operator_id=o&reason=r", headers=ADMIN).status_code == 404
    for query, field in [("reason=r", "operator_id"), ("operator_id=o", "reason"),
                         ("operator_id=o&reason=r&x=1", "x"), ("operator_id=a%0Ab&reason=r", "operator_id")]:
        response = api.get(f"/users/u-exp/export?{query}", headers=ADMIN)
        assert response.status_code == 400 and field in response.json["error"]["fields"], (query, response.json)
    assert api.get("/users/%0A/export?operator_id=o&reason=r", headers=ADMIN).status_code == 400


def test_erasure_after_a_request_leaves_no_case_and_no_record(api, service):
    rejected(api, "u-gone", "a1")
    ask(api, "u-gone", "a1", "please")
    erased = api.delete("/users/u-gone", json={"operator_id": "o", "reason": "r"}, headers=ADMIN)
    assert erased.status_code == 200 and erased.json["erased"]["review_cases"] == 1
    assert api.get("/reviews", headers=REVIEWER).json["items"] == []
    assert api.get("/users/u-gone/export?operator_id=o&reason=r", headers=ADMIN).status_code == 404
    assert not [r for r in log_lines(service) if r["kind"] == "human_review"]
    assert ask(api, "u-gone", "a1").status_code == 404


def test_the_log_of_requests_reviews_and_exports_replays_identical(api, service, clock):
    rejected(api, "u-r1", "a1")
    rejected(api, "u-r2", "a1")
    rejected(api, "u-r3", "a1")
    for user in ("u-r1", "u-r2", "u-r3"):
        clock.advance(hours=5)
        assert ask(api, user, "a1", "statement").status_code == 200
    clock.advance(days=1)
    api.post("/applications/a1/review", json=body("u-r1"), headers=REVIEWER)
    api.post("/applications/a1/review", json=body("u-r2", "rejected", ["AGE_OUT_OF_RANGE"]), headers=REVIEWER)
    api.get("/users/u-r1/export?operator_id=o&reason=r", headers=ADMIN)
    lines = [json.dumps(r) for r in log_lines(service)]
    summary = replaying.replay(enumerate(lines, 1), replay_source()).to_dict()
    assert summary["human_reviews"] == {"total": 3, "identical": 3}
    assert summary["reviews"] == {"total": 2, "identical": 2}
    assert summary["identical"] == summary["total"]
    # a request whose deadline was tampered with is told apart
    tampered = [json.loads(line) for line in lines]
    next(r for r in tampered if r["kind"] == "human_review")["deadline"] = "2030-01-01T00:00:00Z"
    summary = replaying.replay(enumerate(map(json.dumps, tampered), 1), replay_source()).to_dict()
    assert summary["human_reviews"] == {"total": 3, "identical": 2}


def test_a_stalled_store_is_a_503_and_writes_nothing(policy, clock):
    services = redis_services("redis://127.0.0.1:1/0", policy, clock, erasure_secret=SECRET,
                              redis_timeout=0.2)
    api = create_app(Settings(api_keys=("client-key",), admin_keys=("admin-key",)),
                     services=services).test_client()
    response = ask(api, "u-down", "a1")
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    assert api.get("/users/u-down/export?operator_id=o&reason=r", headers=ADMIN).status_code == 503
    text = api.get("/metrics").data.decode()
    assert 'applicant_rights_requests_total{outcome="unavailable",request="human_review"}' in text


def test_a_receipt_the_store_refuses_hands_out_no_copy(api, service, monkeypatch):
    from service.usecases.ports import StoreRefused

    rejected(api, "u-full", "a1")

    def refuse(receipt, record):
        raise StoreRefused("OOM command not allowed when used memory > 'maxmemory'")

    monkeypatch.setattr(service.rights.receipts, "save", refuse)
    response = api.get("/users/u-full/export?operator_id=o&reason=r", headers=ADMIN)
    assert response.status_code == 503 and "u-full" not in response.get_data(as_text=True)
    assert not [r for r in log_lines(service) if r["kind"] == "export"]
    monkeypatch.undo()
    assert api.get("/users/u-full/export?operator_id=o&reason=r", headers=ADMIN).status_code == 200
