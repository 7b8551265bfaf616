"""The reviewers' desk on the real Redis and on a 3-master cluster: claims, notes, the listing's
new fields and filters, the overdue count, and the desk's log records replayed and rebuilt.

Tried as a hostile client would: the wrong role, another user's case, another reviewer's claim,
replays, concurrent claims, huge and malformed ids and notes, a store that is down.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import threading

import pytest

from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import replay as replaying
from service.usecases.rebuild import Rebuilder, diff, records
from tests.conftest import memory_services, payload, redis_services
from tests.integration.test_reviews import CLIENT, REVIEWER, api_for, body, replay_source, review_case

pytestmark = pytest.mark.integration
ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def api(service):   # `service`: the integration conftest's, on the real Redis or the cluster
    return api_for(service)


def claim(api, app: str, user: str, reviewer: str, method: str = "post", headers=REVIEWER):
    return getattr(api, method)(f"/reviews/{app}/claim", json={"user_id": user, "reviewer_id": reviewer},
                                headers=headers)


def note(api, app: str, user: str, reviewer: str, text: str, headers=REVIEWER):
    return api.post(f"/reviews/{app}/notes", json={"user_id": user, "reviewer_id": reviewer, "text": text},
                    headers=headers)


def listed(api, query: str = "") -> dict:
    response = api.get("/reviews" + query, headers=REVIEWER)
    assert response.status_code == 200, response.json
    return {i["application_id"]: i for i in response.json["items"]}


def log_lines(service) -> list[dict]:
    out = io.StringIO()
    service.stores.log.export(out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_claim_holds_the_case_for_its_reviewer_until_it_ends(api, clock):
    review_case(api, "u-c", "a1")
    first = claim(api, "a1", "u-c", "rev-1")
    until = (clock.now() + dt.timedelta(minutes=30)).strftime(ISO)
    assert first.status_code == 200
    assert first.json["review"] == {"notes": [], "claimed_by": "rev-1", "claimed_until": until}
    item = listed(api)["a1"]
    assert (item["claimed_by"], item["claimed_until"]) == ("rev-1", until)
    taken = claim(api, "a1", "u-c", "rev-2")
    assert taken.status_code == 409 and "rev-1" in taken.json["error"]["message"]
    clock.advance(minutes=10)
    again = claim(api, "a1", "u-c", "rev-1")                      # the holder again: extended
    assert again.json["review"]["claimed_until"] == (clock.now() + dt.timedelta(minutes=30)).strftime(ISO)
    clock.advance(minutes=30, seconds=1)                           # it ended: anyone may take it
    assert listed(api)["a1"]["claimed_by"] is None
    assert claim(api, "a1", "u-c", "rev-2").json["review"]["claimed_by"] == "rev-2"


def test_only_the_holder_closes_a_claimed_case(api, service):
    review_case(api, "u-h", "a1")
    claim(api, "a1", "u-h", "rev-1")
    other = api.post("/applications/a1/review", json=body("u-h", reviewer="rev-2"), headers=REVIEWER)
    assert other.status_code == 409 and "only its holder" in other.json["error"]["message"]
    assert api.get("/applications/a1?user_id=u-h", headers=REVIEWER).json["status"] == "review"
    done = api.post("/applications/a1/review", json=body("u-h", reviewer="rev-1"), headers=REVIEWER)
    assert done.status_code == 200 and done.json["status"] == "approved"
    assert done.json["review"]["claimed_by"] is None and done.json["review"]["outcome"] == "approved"
    assert "a1" not in listed(api)
    assert claim(api, "a1", "u-h", "rev-1").status_code == 409       # closed: nothing to claim


def test_release_by_the_holder_only(api):
    review_case(api, "u-r", "a1")
    assert claim(api, "a1", "u-r", "rev-1", "delete").json["review"]["claimed_by"] is None   # none held: 200
    claim(api, "a1", "u-r", "rev-1")
    refused = claim(api, "a1", "u-r", "rev-2", "delete")
    assert refused.status_code == 409
    assert listed(api)["a1"]["claimed_by"] == "rev-1"
    assert claim(api, "a1", "u-r", "rev-1", "delete").status_code == 200
    assert listed(api)["a1"]["claimed_by"] is None
    assert api.post("/applications/a1/review", json=body("u-r", reviewer="rev-2"),
                    headers=REVIEWER).status_code == 200


def test_notes_are_appended_oldest_first_and_a_retry_is_not_added_twice(api, clock):
    review_case(api, "u-n", "a1")
    assert note(api, "a1", "u-n", "rev-1", "called the applicant").status_code == 200
    assert note(api, "a1", "u-n", "rev-1", "called the applicant").status_code == 200   # a retry
    clock.advance(minutes=2)
    third = note(api, "a1", "u-n", "rev-2", "说明：收入证明已核对")
    notes = third.json["review"]["notes"]
    assert [(n["reviewer_id"], n["text"]) for n in notes] == [
        ("rev-1", "called the applicant"), ("rev-2", "说明：收入证明已核对")]
    assert notes[1]["at"] == clock.now().strftime(ISO)
    view = api.get("/applications/a1?user_id=u-n", headers=CLIENT).json
    assert view["review"]["notes"] == notes
    api.post("/applications/a1/review", json=body("u-n"), headers=REVIEWER)
    closed = api.get("/applications/a1?user_id=u-n", headers=REVIEWER).json
    assert closed["review"]["notes"] == notes and closed["review"]["note"] == "ok"
    assert note(api, "a1", "u-n", "rev-1", "late").status_code == 409        # closed: final


def test_bad_input_wrong_roles_and_other_users_cases(api):
    review_case(api, "u-b", "a1")
    approved = dict(payload(), user_id="u-b", application_id="a2")
    assert api.post("/decide", json=approved, headers=CLIENT).json["outcome"] == "approved"
    cases = [
        (note(api, "a1", "u-b", "rev-1", ""), 400, "text"),
        (note(api, "a1", "u-b", "rev-1", "x" * 2001), 400, "text"),
        (claim(api, "a1", "u-b", "rev\n1"), 400, "reviewer_id"),
        (claim(api, "a1", "u-b", "r" * 129), 400, "reviewer_id"),
        (claim(api, "a" * 129, "u-b", "rev-1"), 400, "application_id"),
        (api.post("/reviews/a1/claim", json={"user_id": "u-b"}, headers=REVIEWER), 400, "reviewer_id"),
        (api.post("/reviews/a1/claim", json={"user_id": "u-b", "reviewer_id": "r", "x": 1},
                  headers=REVIEWER), 400, "x"),
    ]
    for response, status, field in cases:
        assert response.status_code == status and field in response.json["error"]["fields"], response.json
    assert claim(api, "a1", "u-other", "rev-1").status_code == 404       # another user's id
    assert claim(api, "nope", "u-b", "rev-1").status_code == 404
    assert claim(api, "a2", "u-b", "rev-1").status_code == 409           # not a review case
    assert note(api, "a2", "u-b", "rev-1", "n").status_code == 409
    assert claim(api, "a1", "u-b", "rev-1", headers=CLIENT).status_code == 403
    assert note(api, "a1", "u-b", "rev-1", "n", headers={}).status_code == 401
    assert claim(api, "a1", "u-b", "rev-1", headers={"X-API-Key": "wrong"}).status_code == 401
    assert listed(api)["a1"]["claimed_by"] is None                        # none of it wrote


def test_listing_filters_and_the_overdue_count(api, service, clock):
    review_case(api, "u-f1", "a1")                                        # opened first
    clock.advance(hours=20)
    review_case(api, "u-f2", "a1", product="we2000")
    clock.advance(hours=5)                                                # u-f1's case: 25 h
    claim(api, "a1", "u-f2", "rev-1")
    everyone = api.get("/reviews", headers=REVIEWER).json["items"]
    ages = {i["user_id"]: (i["age_seconds"], i["overdue"], i["requested_by"]) for i in everyone}
    assert ages == {"u-f1": (25 * 3600, True, "rules"), "u-f2": (5 * 3600, False, "rules")}
    users = lambda query: [i["user_id"] for i in api.get("/reviews" + query, headers=REVIEWER).json["items"]]
    assert users("?overdue=true") == ["u-f1"] and users("?overdue=false") == ["u-f2"]
    assert users("?claimed_by=none") == ["u-f1"] and users("?claimed_by=rev-1") == ["u-f2"]
    assert users("?product=we2000") == ["u-f2"] and users("?requested_by=applicant") == []
    assert users("?requested_by=rules&limit=1") == ["u-f1"]
    for query, field in (("?overdue=yes", "overdue"), ("?requested_by=bank", "requested_by"),
                         ("?claimed_by=" + "r" * 129, "claimed_by"), ("?limit=٥", "limit")):
        response = api.get("/reviews" + query, headers=REVIEWER)
        assert response.status_code == 400 and field in response.json["error"]["fields"], query
    text = api.get("/metrics").data.decode()
    assert "review_cases_overdue 1.0" in text and "review_cases_pending 2.0" in text


def test_concurrent_claims_give_the_case_to_one_reviewer(api, service):
    review_case(api, "u-race", "a1")
    results, barrier = [], threading.Barrier(6)
    apis = [api_for(service) for _ in range(6)]

    def take(n):
        barrier.wait()
        results.append((n, claim(apis[n], "a1", "u-race", f"rev-{n}").status_code))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, status in results if status == 200]
    assert len(winners) == 1 and sorted(s for _, s in results) == [200] + [409] * 5
    assert listed(api)["a1"]["claimed_by"] == f"rev-{winners[0]}"
    claims = [r for r in log_lines(service) if r["kind"] == "review_claim"]
    assert [r["reviewer_id"] for r in claims] == [f"rev-{winners[0]}"]


def test_the_desk_log_replays_and_rebuilds(api, service, policy, clock):
    review_case(api, "u-l1", "a1")
    review_case(api, "u-l2", "a1")
    claim(api, "a1", "u-l1", "rev-1")
    note(api, "a1", "u-l1", "rev-1", "checked the documents")
    claim(api, "a1", "u-l2", "rev-2")
    claim(api, "a1", "u-l2", "rev-2", "delete")
    note(api, "a1", "u-l2", "rev-2", "needs a second look")
    api.post("/applications/a1/review", json=body("u-l1", reviewer="rev-1"), headers=REVIEWER)
    lines = log_lines(service)
    kinds = [r["kind"] for r in lines]
    assert kinds.count("review_claim") == 3 and kinds.count("review_note") == 2
    assert all("text" not in r for r in lines if r["kind"] == "review_claim")
    summary = replaying.replay(enumerate(map(json.dumps, lines), 1), replay_source()).to_dict()
    assert summary["identical"] == summary["total"] == 2 and summary["other_records"] == 5
    fresh = memory_services(policy, clock)   # an empty store beside the live one
    result = diff(Rebuilder(fresh.work, fresh.rules, fresh.stores.erased), service.work,
                  records(enumerate(map(json.dumps, lines), 1)))
    assert result.users == 2 and result.differences == []
    rebuilt = fresh.work.store.application("u-l2", "a1").view(clock.now())
    assert [n["text"] for n in rebuilt["review"]["notes"]] == ["needs a second look"]


def test_a_stalled_store_is_a_503_and_writes_nothing(policy, clock):
    services = redis_services("redis://127.0.0.1:1/0", policy, clock, redis_timeout=0.2)
    api = create_app(Settings(reviewer_keys=("reviewer-key",)), services=services).test_client()
    for response in (claim(api, "a1", "u-down", "rev-1"), note(api, "a1", "u-down", "rev-1", "n"),
                     api.get("/reviews", headers=REVIEWER)):
        assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    assert "review_cases_overdue" not in api.get("/metrics").data.decode()


def test_a_refused_write_mid_claim_leaves_the_case_unclaimed(api, service, monkeypatch):
    from service.usecases.ports import StoreRefused

    review_case(api, "u-full", "a1")
    store = service.work.store

    def refuse(snapshot, write):
        raise StoreRefused("OOM command not allowed when used memory > 'maxmemory'")

    monkeypatch.setattr(store, "commit", refuse)
    response = claim(api, "a1", "u-full", "rev-1")
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    monkeypatch.undo()
    assert listed(api)["a1"]["claimed_by"] is None
    assert not [r for r in log_lines(service) if r["kind"] == "review_claim"]
    assert claim(api, "a1", "u-full", "rev-1").status_code == 200
