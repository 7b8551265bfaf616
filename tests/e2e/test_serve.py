"""End to end: `loan-decide serve` under gunicorn with several worker processes."""
import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e


def test_serve_answers_decide_with_several_workers(live_server, real_redis_url):
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url})
    assert http("GET", server.url + "/healthz")[0] == 200
    outcomes = {}
    for product in ("weilidai", "we2000", "partner", "xiaoe", "zhouzhuanjin", "education", "emergency"):
        for n in range(4):   # several requests, so both workers answer
            doc = dict(payload(product), user_id=f"{product}-{n}")
            status, body, _ = http("POST", server.url + "/decide", doc)
            assert status == 200, body
            outcomes[(product, n)] = body["outcome"]
    assert set(outcomes.values()) == {"approved"}
    doc = dict(payload(age=17, whitelisted=False), user_id="minor")
    status, body, _ = http("POST", server.url + "/decide", doc)
    assert status == 200 and body["outcome"] == "rejected"
    assert [r["code"] for r in body["reasons"]] == ["AGE_OUT_OF_RANGE", "NOT_WHITELISTED"]


def test_serve_rejects_bad_input_with_json_errors(live_server):
    server = live_server()
    doc = payload()
    doc["applicant"]["pay_score"] = "680"
    status, body, _ = http("POST", server.url + "/decide", doc)
    assert status == 400 and "applicant.pay_score" in body["error"]["fields"]


def test_serve_logs_no_personal_data(live_server):
    server = live_server()
    doc = payload()
    doc["user_id"] = "110101199003071234"         # an ID number used as a user id
    assert http("POST", server.url + "/decide", doc)[0] == 200
    output = server.stop()
    assert '"outcome": "approved"' in output
    assert "110101199003071234" not in output


def test_embedded_store_refuses_several_workers():
    import subprocess
    import sys

    command = [sys.executable, "-m", "service.entrypoints.cli"]   # the CLI of the code under test
    env = {k: v for k, v in __import__("os").environ.items() if k != "REDIS_URL"}
    result = subprocess.run([*command, "serve", "--workers", "2", "--port", "1"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "embedded store" in result.stderr and "REDIS_URL" in result.stderr


def test_embedded_store_says_so_at_start_up(live_server):
    server = live_server(env={"REDIS_URL": ""})
    output = server.stop()
    assert "REDIS_URL is not set: using the embedded in-process store" in output


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_serve_starts_and_decides_in_either_store(live_server, mode, request):
    """Built through bootstrap.build_services: with REDIS_URL unset on the in-memory adapters,
    with it on Redis; either way /healthz, /readyz, a decision, its replay and the reads work."""
    url = "" if mode == "embedded" else request.getfixturevalue("real_redis_url")
    server = live_server(env={"REDIS_URL": url})
    assert http("GET", server.url + "/healthz")[:2] == (200, {"status": "ok"})
    status, ready, _ = http("GET", server.url + "/readyz")
    assert status == 200 and ready["status"] == "ready" and ready["rules_version"].startswith("sha256:")
    doc = dict(payload(), user_id=f"{mode}-user", application_id=f"{mode}-app")
    status, first, _ = http("POST", server.url + "/decide", doc)
    assert status == 200 and first["outcome"] == "approved" and first["rules_version"] == ready["rules_version"]
    assert http("POST", server.url + "/decide", doc)[:2] == (200, first)   # the stored decision again
    status, stored, _ = http("GET", server.url + f"/applications/{mode}-app?user_id={mode}-user")
    assert status == 200 and stored["decision"] == first
    status, state, _ = http("GET", server.url + f"/users/{mode}-user/state")
    assert status == 200 and state["applications_6m"] == 1
    output = server.stop()
    assert ("REDIS_URL is not set: using the embedded in-process store" in output) == (mode == "embedded")
    assert "Traceback" not in output
    assert "MonkeyPatchWarning" not in output   # nothing imported ssl before the gevent patch
