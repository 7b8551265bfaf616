"""Many workers, one user: outcomes and stored state are those of some serial order."""
import threading
from collections import Counter

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e


def fire_together(url: str, bodies: list[dict]) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(len(bodies))
    results: list = [None] * len(bodies)

    def send(i: int) -> None:
        barrier.wait()
        status, body, _ = http("POST", url + "/decide", bodies[i])
        results[i] = (status, body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_50_applications_of_one_user_serialise(live_server, real_redis_url):
    server = live_server("--workers", "4", env={"REDIS_URL": real_redis_url})
    bodies = [dict(payload(credit_applications_6m=0), user_id="busy", application_id=f"app-{i}")
              for i in range(50)]
    results = fire_together(server.url, bodies)
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:3]
    kinds = Counter(body["outcome"] if body["outcome"] != "rejected" else body["reasons"][0]["code"]
                    for _, body in results)
    assert kinds == {"approved": 3, "TOO_MANY_APPLICATIONS": 1, "REAPPLY_COOLDOWN": 46}
    refused = next(body for _, body in results if body["reasons"]
                   and body["reasons"][0]["code"] == "TOO_MANY_APPLICATIONS")
    status, state, _ = http("GET", server.url + "/users/busy/state")
    assert status == 200
    assert state["applications_6m"] == 4
    assert state["reapply_after"] == refused["reapply_after"]


def test_50_copies_of_one_application_are_decided_once(live_server, real_redis_url):
    server = live_server("--workers", "4", env={"REDIS_URL": real_redis_url})
    body = dict(payload(), user_id="dup", application_id="same-app")
    results = fire_together(server.url, [body] * 50)
    assert {status for status, _ in results} == {200}
    assert len({repr(sorted(b.items())) for _, b in results}) == 1      # 50 identical responses
    status, state, _ = http("GET", server.url + "/users/dup/state")
    assert state["applications_6m"] == 1                                # one evaluation counted
