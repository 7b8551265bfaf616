"""Issue 11 through a live `loan-decide serve` (gunicorn, 2 workers, real Redis): the main flow
of review, override and erasure, with the roles and two reviewers racing on one case."""
import threading

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

CLIENT = {"X-API-Key": "client-live"}
REVIEWER = {"X-API-Key": "reviewer-live"}
ADMIN = {"X-Admin-Key": "admin-live"}


def test_review_override_erasure_flow(live_server, real_redis_url):
    server = live_server("--workers", "2", env={
        "REDIS_URL": real_redis_url, "API_KEYS": "client-live", "REVIEWER_API_KEYS": "reviewer-live",
        "ADMIN_API_KEY": "admin-live", "ERASURE_HMAC_SECRET": "live-secret"})
    url = server.url
    doc = dict(payload(drop=("pay_score",)), user_id="u-live", application_id="a1")
    assert http("POST", url + "/decide", doc, REVIEWER)[0] == 403
    status, decision, _ = http("POST", url + "/decide", doc, CLIENT)
    assert status == 200 and decision["outcome"] == "review"
    assert http("GET", url + "/reviews", headers=CLIENT)[0] == 403
    status, page, _ = http("GET", url + "/reviews?status=pending&limit=10", headers=REVIEWER)
    assert status == 200 and [i["application_id"] for i in page["items"]] == ["a1"]

    # two reviewers at once: one wins, the other gets a 409
    barrier, results = threading.Barrier(2), {}

    def close(reviewer, outcome, codes):
        barrier.wait()
        results[reviewer] = http("POST", url + "/applications/a1/review", {
            "user_id": "u-live", "reviewer_id": reviewer, "outcome": outcome,
            "reason_codes": codes, "note": "checked"}, REVIEWER)

    threads = [threading.Thread(target=close, args=("rev-a", "rejected", ["DEVICE_SWITCHING"])),
               threading.Thread(target=close, args=("rev-b", "rejected", ["DEBT_TOO_HIGH"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for r in results.values()) == [200, 409]
    winner = next(name for name, r in results.items() if r[0] == 200)
    view = results[winner][1]
    assert view["status"] == "rejected" and view["reapply_after"] and view["review"]["reviewer_id"] == winner
    again = http("POST", url + "/applications/a1/review", {
        "user_id": "u-live", "reviewer_id": winner, "outcome": "rejected",
        "reason_codes": view["review"]["reason_codes"], "note": "checked"}, REVIEWER)
    assert again[0] == 200 and again[1] == view
    assert http("GET", url + "/reviews", headers=REVIEWER)[1]["items"] == []

    override = {"action": "lift_cooldown", "operator_id": "op-1", "reason": "wrongly refused"}
    assert http("POST", url + "/users/u-live/overrides", override, CLIENT)[0] == 403
    status, state, _ = http("POST", url + "/users/u-live/overrides", override, ADMIN)
    assert status == 200 and state["reapply_after"] is None
    assert http("POST", url + "/users/u-live/overrides", override, ADMIN)[0] == 409

    status, erased, _ = http("DELETE", url + "/users/u-live", {"operator_id": "op-1", "reason": "request"}, ADMIN)
    assert status == 200 and erased["erased"]["applications"] == 1
    status, receipt, _ = http("GET", url + f"/admin/erasures/{erased['receipt_id']}", headers=ADMIN)
    assert status == 200 and "u-live" not in str(receipt)
    assert http("GET", url + "/users/u-live/state", headers=CLIENT)[0] == 404
    metrics = http("GET", url + "/metrics")[1]
    assert "review_cases_pending 0.0" in metrics and 'reviews_total{outcome="rejected"} 1.0' in metrics
