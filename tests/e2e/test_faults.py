"""Redis stopped mid-run: 503s with Retry-After, nothing half-written; restarted: 200s, state intact.

The Redis here is the test's own (AOF, fsync always) on its own port: never the shared one.
"""
import time

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http
from tests.servers import RedisServer

pytestmark = pytest.mark.e2e


def test_redis_stopped_and_restarted(live_server, tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        server = live_server("--workers", "2", env={"REDIS_URL": redis_server.url,
                                                     "REDIS_TIMEOUT": "0.3"})
        url = server.url
        first = http("POST", url + "/decide", dict(payload(age=17), user_id="f", application_id="a1"))[1]
        assert first["outcome"] == "rejected"
        state_before = http("GET", url + "/users/f/state")[1]

        redis_server.kill()
        for n in range(6):
            status, body, headers = http("POST", url + "/decide",
                                         dict(payload(), user_id=f"f{n}", application_id=f"b{n}"))
            assert status == 503, body
            assert body["error"]["code"] == "store_unavailable"
            assert headers.get("Retry-After") == "1"
        assert http("GET", url + "/readyz")[0] == 503
        assert http("GET", url + "/healthz")[0] == 200          # the process keeps running
        assert http("GET", url + "/users/f/state")[0] == 503

        redis_server.start()                                     # same port, same AOF directory
        deadline = time.monotonic() + 10
        while http("GET", url + "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http("GET", url + "/readyz")[0] == 200
        again = http("POST", url + "/decide", dict(payload(age=17), user_id="f", application_id="a1"))
        assert again[0] == 200 and again[1] == first            # the stored decision survived
        assert http("GET", url + "/users/f/state")[1]["reapply_after"] == state_before["reapply_after"]
        later = http("POST", url + "/decide", dict(payload(), user_id="f", application_id="a2"))[1]
        assert later["reasons"][0]["code"] == "REAPPLY_COOLDOWN"
        for n in range(6):                                       # what got a 503 wrote nothing
            status, body, _ = http("GET", url + f"/applications/b{n}?user_id=f{n}")
            assert status == 404
    finally:
        redis_server.stop()
