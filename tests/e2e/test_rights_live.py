"""An applicant's rights through a live `loan-decide serve` (gunicorn, 2 workers, real Redis):
requests for a person racing over both workers, the reviewer's approval ending the window, a
copy of the data, and no log line of the server holding the applicant's statement."""
import json
import threading

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

CLIENT = {"X-API-Key": "client-live"}
REVIEWER = {"X-API-Key": "reviewer-live"}
ADMIN = {"X-Admin-Key": "admin-live"}
STATEMENT = "我已年满18岁，电话 13812345678"


def test_a_refused_applicant_asks_for_a_person_and_a_copy(live_server, real_redis_url):
    server = live_server("--workers", "2", env={
        "REDIS_URL": real_redis_url, "API_KEYS": "client-live", "REVIEWER_API_KEYS": "reviewer-live",
        "ADMIN_API_KEY": "admin-live", "ERASURE_HMAC_SECRET": "live-secret"})
    url = server.url
    doc = dict(payload(age=17), user_id="u-rights", application_id="a1")
    status, decision, _ = http("POST", url + "/decide", doc, CLIENT)
    assert status == 200 and decision["outcome"] == "rejected" and decision["reapply_after"]
    ask = {"user_id": "u-rights", "statement": STATEMENT}
    assert http("POST", url + "/applications/a1/human-review", ask, REVIEWER)[0] == 403

    barrier, results = threading.Barrier(6), []

    def one() -> None:
        barrier.wait()
        results.append(http("POST", url + "/applications/a1/human-review", ask, CLIENT))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 6
    assert len({json.dumps(r[1], sort_keys=True) for r in results}) == 1
    assert results[0][1]["status"] == "review_requested"
    status, page, _ = http("GET", url + "/reviews", headers=REVIEWER)
    assert [(i["application_id"], i["requested_by"]) for i in page["items"]] == [("a1", "applicant")]

    status, view, _ = http("POST", url + "/applications/a1/review", {
        "user_id": "u-rights", "reviewer_id": "rev-1", "outcome": "approved", "reason_codes": [],
        "note": "age misread"}, REVIEWER)
    assert status == 200 and view["status"] == "approved" and view["offer"]["limit"] > 0
    assert http("GET", url + "/users/u-rights/state", headers=CLIENT)[1]["reapply_after"] is None
    assert http("POST", url + "/applications/a1/human-review", ask, CLIENT)[0] == 409

    status, copy, _ = http("GET", url + "/users/u-rights/export?operator_id=dpo&reason=art45", headers=ADMIN)
    assert status == 200
    kinds = [r["kind"] for r in copy["log"]]
    assert kinds == ["decision", "human_review", "review"]
    assert copy["applications"][0]["human_review"]["statement"] == STATEMENT
    metrics = http("GET", url + "/metrics")[1]
    assert 'applicant_rights_requests_total{outcome="ok",request="human_review"} 1.0' in metrics
    assert 'applicant_rights_requests_total{outcome="replayed",request="human_review"} 5.0' in metrics
    assert 'applicant_rights_requests_total{outcome="refused",request="human_review"} 1.0' in metrics
    assert 'applicant_rights_requests_total{outcome="ok",request="export"} 1.0' in metrics
    lines = server.stop()
    assert "13812345678" not in lines and "年满18岁" not in lines
