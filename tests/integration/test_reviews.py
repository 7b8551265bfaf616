"""Reviews, overrides and erasure on the real Redis and on a 3-master cluster: roles, review cases, overrides, erasure.

Every status code of API.md "Human review" and "Audited overrides and erasure", as a hostile
client would try them (wrong role, bad ids, replays, concurrent reviewers).
"""
from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import quote

import pytest

from service.adapters import redis_connection
from service.entrypoints.bootstrap import policy_source
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases.errors import Conflict
from service.usecases.reviews_index import entry
from tests.conftest import NOW, RULES_DIR, payload, redis_services
from tests.integration.conftest import SECRET

pytestmark = pytest.mark.integration

CLIENT = {"X-API-Key": "client-key"}
REVIEWER = {"X-API-Key": "reviewer-key"}
ADMIN = {"X-Admin-Key": "admin-key"}


def api_for(services):
    settings = Settings(api_keys=("client-key",), reviewer_keys=("reviewer-key",),
                        admin_keys=("admin-key",))
    return create_app(settings, services=services).test_client()


@pytest.fixture
def api(service):
    return api_for(service)


def replay_source():
    """Each record under its own rules: the bundled ones (no archive)."""
    return policy_source(Settings(rules_dir=RULES_DIR))


def review_case(api, user: str, app: str, **applicant) -> dict:
    """A decision with outcome `review` (pay_score missing: MISSING_DATA)."""
    doc = dict(payload(drop=("pay_score",), **applicant), user_id=user, application_id=app)
    response = api.post("/decide", json=doc, headers=CLIENT)
    assert response.status_code == 200 and response.json["outcome"] == "review", response.json
    return response.json


def body(user: str, outcome: str = "approved", codes=(), reviewer: str = "rev-1", note: str = "ok"):
    return {"user_id": user, "reviewer_id": reviewer, "outcome": outcome,
            "reason_codes": list(codes), "note": note}


def test_roles_on_every_area(api):
    review_case(api, "u-roles", "a1")
    review_url = "/applications/a1/review"
    # a reviewer key never decides; a client key never reviews; neither reaches admin endpoints
    assert api.post("/decide", json=payload(), headers=REVIEWER).status_code == 403
    assert api.post("/applications/a1/cancel", json={"user_id": "u-roles"}, headers=REVIEWER).status_code == 403
    assert api.get("/reviews", headers=CLIENT).status_code == 403
    assert api.post(review_url, json=body("u-roles"), headers=CLIENT).status_code == 403
    for headers in (CLIENT, REVIEWER):
        assert api.post("/users/u-roles/overrides", json={"action": "lift_cooldown", "operator_id": "o",
                                                          "reason": "r"}, headers=headers).status_code == 403
        assert api.delete("/users/u-roles", json={"operator_id": "o", "reason": "r"},
                          headers=headers).status_code == 403
        assert api.get("/admin/erasures/er_x", headers=headers).status_code == 403
    # missing or unknown keys: 401; the admin key is no reviewer key
    assert api.get("/reviews").status_code == 401
    assert api.get("/reviews", headers={"X-API-Key": "nope"}).status_code == 401
    assert api.get("/reviews", headers={"X-API-Key": "admin-key"}).status_code == 401
    assert api.delete("/users/u-roles", json={"operator_id": "o", "reason": "r"},
                      headers={"X-Admin-Key": "wrong"}).status_code == 401
    # an admin endpoint needs only X-Admin-Key, wherever its path is
    assert api.get("/admin/erasures/er_x", headers=ADMIN).status_code == 404
    # reviewers read applications
    assert api.get("/applications/a1?user_id=u-roles", headers=REVIEWER).status_code == 200
    assert api.get("/reviews", headers=REVIEWER).status_code == 200


def test_reviewer_endpoints_are_off_without_reviewer_keys(service):
    app = create_app(Settings(api_keys=("client-key",)), services=service).test_client()
    assert app.get("/reviews", headers=CLIENT).status_code == 403


def test_review_status_codes(api):
    review_case(api, "u-codes", "a1")
    url = "/applications/a1/review"
    post = lambda doc, path=url: api.post(path, json=doc, headers=REVIEWER)
    # 400: each field named
    cases = [({**body("u-codes"), "outcome": "maybe"}, "outcome"),
             (body("u-codes", "rejected"), "reason_codes"),
             (body("u-codes", "rejected", ["NOT_A_CODE"]), "reason_codes"),
             ({**body("u-codes"), "extra": 1}, "extra"),
             ({k: v for k, v in body("u-codes").items() if k != "reviewer_id"}, "reviewer_id"),
             ({**body("u-codes"), "user_id": "a/b"}, "user_id")]
    for doc, field in cases:
        response = post(doc)
        assert response.status_code == 400 and field in response.json["error"]["fields"], (doc, response.json)
    assert api.post("/applications/%0A/review", json=body("u-codes"), headers=REVIEWER).status_code == 400
    assert api.post(url, data="{", headers={**REVIEWER, "Content-Type": "application/json"}).status_code == 400
    assert api.post(url, data="x", headers={**REVIEWER, "Content-Type": "text/plain"}).status_code == 415
    # 404: unknown application, or another user's
    assert post(body("u-codes"), "/applications/nope/review").status_code == 404
    assert post(body("u-other")).status_code == 404
    # 200, the same 200 again, 409 for a different body
    first = post(body("u-codes"))
    assert first.status_code == 200 and first.json["status"] == "approved"
    again = post(body("u-codes"))
    assert again.status_code == 200 and again.json == first.json
    assert post(body("u-codes", note="changed")).status_code == 409
    assert post(body("u-codes", "rejected", ["DEVICE_SWITCHING"])).status_code == 409
    # 409: an application that is not in review
    approved = dict(payload(), user_id="u-codes", application_id="a2")
    assert api.post("/decide", json=approved, headers=CLIENT).json["outcome"] == "approved"
    assert post(body("u-codes"), "/applications/a2/review").status_code == 409


def test_approval_gets_offer_and_hold_from_review_time(api, clock):
    # amount above 60% of income: T2's condition holds
    review_case(api, "u-hold", "a1", monthly_income=6000)
    reviewed_at = clock.advance(hours=3)
    response = api.post("/applications/a1/review", json=body("u-hold"), headers=REVIEWER)
    view = response.json
    hold = (reviewed_at + dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert view["status"] == "cooling_off" and view["funds_available_at"] == hold == view["cancel_until"]
    assert view["offer"]["limit"] == 5000 and view["offer"]["apr"] > 0
    assert view["review"]["reviewed_at"] == reviewed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert api.get("/users/u-hold/state", headers=CLIENT).json["cooling_off"]["application_id"] == "a1"
    # the hold is cancellable like a decided one, and releases at its end
    assert api.post("/applications/a1/cancel", json={"user_id": "u-hold"},
                    headers=CLIENT).json["status"] == "cancelled"


def test_approval_without_t2_is_approved(api):
    review_case(api, "u-ok", "a1")
    view = api.post("/applications/a1/review", json=body("u-ok"), headers=REVIEWER).json
    assert view["status"] == "approved" and view["funds_available_at"] is None
    assert api.get("/applications/a1?user_id=u-ok", headers=CLIENT).json["review"]["outcome"] == "approved"



@pytest.mark.parametrize("product, amount, missing, limit", [
    ("we2000", 4000, "lingqiantong_balance", 2000),      # the base line, not the raised one
    ("weilidai", 50000, "payments_per_month", 5000),     # the lowest tier, not the amount
    ("we2000", 1500, "lingqiantong_balance", 1500),      # within the base line: as asked
])
def test_approval_of_a_missing_data_case_keeps_the_limits(api, service, product, amount, missing, limit):
    """A limit that depends on the missing field takes its least favourable value; an amount
    above it is approved at it (limits.yaml `review_approval_amount`), and replays so."""
    import io
    import json

    from service.usecases import replay as replaying

    user = f"u-lim-{product}-{amount}"
    doc = dict(payload(product, amount=amount, **{missing: None}), user_id=user, application_id="a1")
    decided = api.post("/decide", json=doc, headers=CLIENT).json
    assert decided["outcome"] == "review" and [r["code"] for r in decided["reasons"]] == ["MISSING_DATA"]
    view = api.post("/applications/a1/review", json=body(user), headers=REVIEWER).json
    assert view["status"] == "approved" and view["offer"]["limit"] == limit
    assert api.get(f"/applications/a1?user_id={user}", headers=CLIENT).json["offer"]["limit"] == limit
    out = io.StringIO()
    service.stores.log.export(out)
    lines = out.getvalue().splitlines()
    assert json.loads(lines[-1])["review"]["offer"]["limit"] == limit
    summary = replaying.replay(enumerate(lines, 1), replay_source())
    assert summary.to_dict()["reviews"] == {"total": 1, "identical": 1}

def test_rejection_opens_the_window_from_review_time_only_for_window_codes(api, clock):
    review_case(api, "u-rej", "a1")
    review_case(api, "u-rej2", "a1")
    reviewed_at = clock.advance(days=2)
    view = api.post("/applications/a1/review", json=body("u-rej", "rejected", ["DEVICE_SWITCHING"]),
                    headers=REVIEWER).json
    until = (reviewed_at + dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert view["status"] == "rejected" and view["reapply_after"] == until
    assert api.get("/users/u-rej/state", headers=CLIENT).json["reapply_after"] == until
    refused = api.post("/decide", json=dict(payload(), user_id="u-rej", application_id="a2"), headers=CLIENT).json
    assert refused["outcome"] == "rejected" and refused["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
    # ID_CARD_EXPIRING does not start the window
    view = api.post("/applications/a1/review", json=body("u-rej2", "rejected", ["ID_CARD_EXPIRING"]),
                    headers=REVIEWER).json
    assert view["status"] == "rejected" and view["reapply_after"] is None
    assert api.get("/users/u-rej2/state", headers=CLIENT).json["reapply_after"] is None


def test_pending_list_oldest_first_with_cursor(api, clock):
    opened = []
    for n in range(5):
        review_case(api, f"u-list-{n}", f"a{n}")
        opened.append((f"u-list-{n}", f"a{n}"))
        clock.advance(minutes=1)
    api.post("/decide", json=dict(payload(), user_id="u-list-x", application_id="ax"), headers=CLIENT)
    api.post("/applications/a2/review", json=body("u-list-2"), headers=REVIEWER)
    seen, cursor = [], None
    while True:
        query = "/reviews?status=pending&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(query, headers=REVIEWER).json
        seen += [(i["user_id"], i["application_id"]) for i in page["items"]]
        assert all(set(i) == {"application_id", "user_id", "product", "amount", "reason_codes",
                              "decided_at", "requested_by", "age_seconds", "overdue", "claimed_by",
                              "claimed_until"} for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [o for o in opened if o[1] != "a2"]
    for bad in ("limit=0", "limit=101", "limit=x", "cursor=%%%", "cursor=Zm9v", "status=reviewed", "x=1"):
        response = api.get(f"/reviews?{bad}", headers=REVIEWER)
        assert response.status_code == 400, bad


def test_lost_index_writes_are_repaired(api, service):
    review_case(api, "u-rep", "a1")
    review_case(api, "u-rep", "a2")
    index = service.stores.queue
    decided = int(NOW.timestamp())
    index.remove([entry("u-rep", "a1", decided)])             # an add lost after the commit
    assert [i["application_id"] for i in api.get("/reviews", headers=REVIEWER).json["items"]] == ["a2"]
    assert service.cases.repair() == {"pending": 2, "added": 1}
    assert [i["application_id"] for i in api.get("/reviews", headers=REVIEWER).json["items"]] == ["a1", "a2"]
    # a removal lost after a review: the listing drops the stale entry itself
    api.post("/applications/a1/review", json=body("u-rep"), headers=REVIEWER)
    index.add(entry("u-rep", "a1", decided))
    assert [i["application_id"] for i in api.get("/reviews", headers=REVIEWER).json["items"]] == ["a2"]
    assert index.stats()[0] == 1


def test_two_reviewers_at_once_one_wins(api, service):
    for n in range(6):
        review_case(api, f"u-race-{n}", "a1")
    for n in range(6):
        barrier, results = threading.Barrier(2), []

        def close(reviewer: str, outcome: str, codes: list[str], user=f"u-race-{n}"):
            barrier.wait()
            try:
                data = body(user, outcome, codes, reviewer=reviewer)
                results.append(("ok", service.reviews.review("a1", data).view["review"]["reviewer_id"]))
            except Conflict:
                results.append(("conflict", reviewer))

        threads = [threading.Thread(target=close, args=("rev-a", "approved", [])),
                   threading.Thread(target=close, args=("rev-b", "rejected", ["DEVICE_SWITCHING"]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r[0] for r in results) == ["conflict", "ok"], results
        winner = next(r[1] for r in results if r[0] == "ok")
        stored = api.get(f"/applications/a1?user_id=u-race-{n}", headers=CLIENT).json
        assert stored["review"]["reviewer_id"] == winner
        store = service.stores.users
        log = store.client.xrange(store.keys(f"u-race-{n}", None)[5])
        assert sum(b'"kind":"review"' in fields[b"r"] for _, fields in log) == 1


def test_override_status_codes(api, clock):
    review_case(api, "u-ovr", "a1")
    api.post("/applications/a1/review", json=body("u-ovr", "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    url = "/users/u-ovr/overrides"
    good = {"action": "lift_cooldown", "operator_id": "op-1", "reason": "wrongly refused"}
    for doc, field in (({**good, "operator_id": ""}, "operator_id"),
                       ({k: v for k, v in good.items() if k != "reason"}, "reason"),
                       ({**good, "action": "grant_loan"}, "action")):
        response = api.post(url, json=doc, headers=ADMIN)
        assert response.status_code == 400 and field in response.json["error"]["fields"]
    assert api.post("/users/%0A/overrides", json=good, headers=ADMIN).status_code == 400
    clock.advance(hours=1)
    lifted = api.post(url, json=good, headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json["reapply_after"] is None
    assert api.post(url, json=good, headers=ADMIN).status_code == 409        # a replay: nothing left
    assert api.post("/users/u-nobody/overrides", json=good, headers=ADMIN).status_code == 409
    again = api.post("/decide", json=dict(payload(), user_id="u-ovr", application_id="a2"), headers=CLIENT)
    assert again.json["outcome"] == "approved"


def _all_keys(url: str) -> dict[str, object]:
    client = redis_connection.connect(url)
    out = {}
    for key in client.scan_iter(match="*"):
        name = key.decode()
        kind = client.type(key).decode()
        if kind == "string":
            out[name] = client.get(key)
        elif kind == "stream":
            out[name] = client.xrange(key)
        elif kind == "zset":
            out[name] = client.zrange(key, 0, -1)
        elif kind == "hash":
            out[name] = client.hgetall(key)
    return out


def test_erasure_keeps_only_the_hashed_window(api, service, store_url, clock):
    user = "u-erase-110101199003071234"
    review_case(api, user, "a1")
    review_case(api, user, "a2")
    api.post("/applications/a1/review", json=body(user, "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    api.post(f"/users/{user}/grace-uses", json={"days": 1}, headers=CLIENT)
    review_case(api, "u-keep", "a1")
    clock.advance(hours=1)
    erased = api.delete(f"/users/{user}", json={"operator_id": "op-9", "reason": "PIPL art. 47 request"},
                        headers=ADMIN)
    assert erased.status_code == 200, erased.json
    assert erased.json["erased"] == {"applications": 2, "review_cases": 2, "log_records": 4, "state_keys": 3}
    keys = _all_keys(store_url)
    mine = [k for k, v in keys.items() if quote(user, safe="") in k or user.encode() in repr(v).encode()]
    assert mine == []
    erased_keys = [k for k in keys if k.startswith("ld:erased:")]
    assert len(erased_keys) == 1 and user not in erased_keys[0]
    assert keys[erased_keys[0]] == str(int((NOW + dt.timedelta(days=90)).timestamp())).encode()
    # the other user is untouched, and still pending
    assert [i["user_id"] for i in api.get("/reviews", headers=REVIEWER).json["items"]] == ["u-keep"]
    # afterwards: 404s, the receipt, and the window still enforced
    assert api.get(f"/users/{user}/state", headers=CLIENT).status_code == 404
    assert api.get(f"/applications/a1?user_id={user}", headers=CLIENT).status_code == 404
    receipt = api.get(f"/admin/erasures/{erased.json['receipt_id']}", headers=ADMIN).json
    assert receipt["operator_id"] == "op-9" and receipt["erased"] == erased.json["erased"]
    assert receipt["window_kept"] is True and user not in repr(receipt)
    assert api.get(f"/admin/erasures/{erased.json['receipt_id']}", headers=REVIEWER).status_code == 403
    assert api.delete(f"/users/{user}", json={"operator_id": "op-9", "reason": "again"},
                      headers=ADMIN).status_code == 404
    refused = api.post("/decide", json=dict(payload(), user_id=user, application_id="a9"), headers=CLIENT).json
    assert refused["outcome"] == "rejected" and refused["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
    assert refused["reapply_after"] == (NOW + dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused = api.post("/decide", json=dict(payload(), user_id=user, application_id="a10"), headers=CLIENT).json
    assert refused["reasons"][0]["code"] == "REAPPLY_COOLDOWN"     # from the user's own state now


def test_erasure_status_codes(api, policy, store_url, clock):
    assert api.delete("/users/u-none", json={"operator_id": "o", "reason": "r"}, headers=ADMIN).status_code == 404
    assert api.delete("/users/u-none", json={"operator_id": "o"}, headers=ADMIN).status_code == 400
    assert api.delete("/users/u-none", headers=ADMIN).status_code == 415
    review_case(api, "u-off", "a1")
    api = api_for(redis_services(store_url, policy, clock))   # the same store, no erasure secret
    response = api.delete("/users/u-off", json={"operator_id": "o", "reason": "r"}, headers=ADMIN)
    assert response.status_code == 503 and response.json["error"]["code"] == "erasure_off"
    assert api.get("/users/u-off/state", headers=CLIENT).status_code == 200    # nothing erased


def test_mixed_log_replays_rebuilds_and_diffs(api, service, store_url, clock, tmp_path, monkeypatch):
    """Decisions, reviews (approval with T2 hold, rejection with window, without), an override
    and an erasure in one log: export shows them, replay reproduces every review and override,
    rebuild and diff apply them."""
    import json

    from click.testing import CliRunner

    from service.entrypoints.cli import main
    from tests.loggen import generate

    monkeypatch.setenv("REDIS_URL", store_url)
    monkeypatch.setenv("ERASURE_HMAC_SECRET", SECRET.decode())
    generate(service, 60, users=12)
    for n in range(8):
        review_case(api, f"u-mix-{n}", "r1", monthly_income=6000 if n % 2 else 1_000_000)
        clock.advance(minutes=5)
    outcomes = [("approved", []), ("rejected", ["DEVICE_SWITCHING"]), ("rejected", ["ID_CARD_EXPIRING"])]
    for n in range(8):
        outcome, codes = outcomes[n % 3]
        clock.advance(minutes=7)
        assert api.post("/applications/r1/review", json=body(f"u-mix-{n}", outcome, codes),
                        headers=REVIEWER).status_code == 200
    clock.advance(hours=1)
    assert api.post("/users/u-mix-1/overrides", json={"action": "lift_cooldown", "operator_id": "op",
                                                      "reason": "wrong"}, headers=ADMIN).status_code == 200
    assert api.delete("/users/u-mix-4", json={"operator_id": "op", "reason": "request"},
                      headers=ADMIN).status_code == 200
    service.rules.archive_own()
    runner = CliRunner()
    exported = runner.invoke(main, ["log", "export"])
    assert exported.exit_code == 0, exported.output
    lines = [line for line in exported.stdout.splitlines() if line.strip()]
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds.count("review") == 7 and kinds.count("override") == 1 and kinds.count("erasure") == 1
    assert all(json.loads(line)["v"] == 2 for line in lines)
    assert "u-mix-4" not in exported.stdout
    log = tmp_path / "mixed.jsonl"
    log.write_text("\n".join(lines) + "\n")

    summary = json.loads(runner.invoke(main, ["replay", str(log), "--json"]).stdout)
    assert summary["reviews"] == {"total": 7, "identical": 7}
    assert summary["overrides"] == {"total": 1, "identical": 1}
    assert summary["identical"] == summary["total"] > 60
    text = runner.invoke(main, ["replay", str(log)])
    assert "reviews 7 (identical 7)" in text.stdout

    assert runner.invoke(main, ["state", "diff", str(log)]).exit_code == 0
    client = redis_connection.connect(store_url)
    for key in list(client.scan_iter(match="ld:{*}:*")):
        if not key.decode().endswith(":log"):
            client.delete(key)                      # lose the state, keep the log
    assert runner.invoke(main, ["state", "diff", str(log)]).exit_code == 1
    assert runner.invoke(main, ["state", "rebuild", str(log)]).exit_code == 0
    after = runner.invoke(main, ["state", "diff", str(log)])
    assert after.exit_code == 0, after.output
    state = api.get("/users/u-mix-7/state", headers=CLIENT).json      # a rebuilt review's window
    assert state["reapply_after"] is not None
    assert api.get("/users/u-mix-1/state", headers=CLIENT).json["reapply_after"] is None


def test_replay_spots_a_review_whose_effects_were_tampered(api, service, clock, tmp_path):
    import io
    import json

    from service.usecases import replay as replaying

    review_case(api, "u-tamper", "a1")
    api.post("/applications/a1/review", json=body("u-tamper", "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    out = io.StringIO()
    service.stores.log.export(out)
    lines = out.getvalue().splitlines()
    record = json.loads(lines[-1])
    assert record["kind"] == "review"
    record["review"]["reapply_after"] = "2030-01-01T00:00:00Z"
    lines[-1] = json.dumps(record)
    source = replay_source()
    summary = replaying.replay(enumerate(lines, 1), source)
    assert summary.to_dict()["reviews"] == {"total": 1, "identical": 0}


def test_metrics_show_the_review_queue(api, clock):
    review_case(api, "u-met", "a1")
    review_case(api, "u-met", "a2")
    clock.advance(minutes=10)
    api.post("/applications/a2/review", json=body("u-met", "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    text = api.get("/metrics").data.decode()
    assert "review_cases_pending 1.0" in text
    assert "review_oldest_pending_age_seconds 600.0" in text
    assert 'reviews_total{outcome="rejected"}' in text


def test_a_review_case_decided_before_cases_kept_requests(api, service):
    """A record written before this feature has no request: listed, and a 409 to close, not a 500."""
    import json

    review_case(api, "u-old", "a1")
    store = service.stores.users
    key = store.keys("u-old", "a1")[3]
    doc = json.loads(store.client.get(key))
    del doc["case"]
    store.client.set(key, json.dumps(doc))
    items = api.get("/reviews", headers=REVIEWER).json["items"]
    assert [(i["application_id"], i["amount"]) for i in items] == [("a1", None)]
    response = api.post("/applications/a1/review", json=body("u-old"), headers=REVIEWER)
    assert response.status_code == 409


def test_erased_window_holds_after_a_grace_use_and_costs_known_users_nothing(api, service, clock):
    user = "u-erase-grace"
    review_case(api, user, "a1")
    api.post("/applications/a1/review", json=body(user, "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    assert api.delete(f"/users/{user}", json={"operator_id": "o", "reason": "r"}, headers=ADMIN).status_code == 200
    api.post(f"/users/{user}/grace-uses", json={"days": 1}, headers=CLIENT)   # a key again, no hash
    refused = api.post("/decide", json=dict(payload(), user_id=user, application_id="a2"), headers=CLIENT).json
    assert refused["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
    # round trips of a decision: BEGIN and COMMIT; a user who looks new also reads the kept windows
    store = service.stores.users
    before = store.round_trips
    api.post("/decide", json=dict(payload(), user_id="u-new", application_id="a1"), headers=CLIENT)
    assert store.round_trips - before == 3
    before = store.round_trips
    api.post("/decide", json=dict(payload(), user_id="u-new", application_id="a2"), headers=CLIENT)
    assert store.round_trips - before == 2


def test_rebuild_of_an_export_taken_before_an_erasure_erases_again(api, service, store_url, monkeypatch,
                                                                   tmp_path):
    """An export made before the erasure still names the user: rebuilding it with the erasure
    record (and the same secret) leaves nothing of the user but the kept window."""
    import io

    from click.testing import CliRunner

    from service.entrypoints.cli import main

    monkeypatch.setenv("REDIS_URL", store_url)
    monkeypatch.setenv("ERASURE_HMAC_SECRET", SECRET.decode())
    user = "u-old-export"
    review_case(api, user, "a1")
    review_case(api, "u-stays", "a1")
    api.post("/applications/a1/review", json=body(user, "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    before = io.StringIO()
    service.stores.log.export(before)
    assert api.delete(f"/users/{user}", json={"operator_id": "o", "reason": "r"}, headers=ADMIN).status_code == 200
    after = io.StringIO()
    service.stores.log.export(after)
    erasure = [line for line in after.getvalue().splitlines() if '"kind":"erasure"' in line]
    combined = before.getvalue() + "\n".join(erasure) + "\n"
    client = redis_connection.connect(store_url)
    for key in list(client.scan_iter(match="ld:*")):
        if not key.decode().startswith("ld:rules"):
            client.delete(key)
    path = tmp_path / "old.jsonl"
    path.write_text(combined)
    runner = CliRunner()
    assert runner.invoke(main, ["state", "rebuild", str(path)]).exit_code == 0
    keys = _all_keys(store_url)
    assert not [k for k in keys if quote(user, safe="") in k]
    assert len([k for k in keys if k.startswith("ld:erased:")]) == 1
    assert any(quote("u-stays", safe="") in k for k in keys)
    assert [i["user_id"] for i in api.get("/reviews", headers=REVIEWER).json["items"]] == ["u-stays"]
    refused = api.post("/decide", json=dict(payload(), user_id=user, application_id="a5"), headers=CLIENT).json
    assert refused["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
    assert runner.invoke(main, ["state", "diff", str(path)]).exit_code == 0
