"""A script whose answer is lost (Redis ran it, the reply timed out) is retried safely, and a
commit whose outcome stays unknown is a 503 that says so. On the real Redis server."""
import pytest
import redis

from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from service.usecases.ports import Windows
from tests.conftest import NOW, payload, redis_services

pytestmark = pytest.mark.integration


@pytest.fixture
def service(policy, real_redis_url):
    return redis_services(real_redis_url, policy, FixedClock(NOW), lock_ttl_ms=300)


def lose_replies(store, name, lost, run=True):
    """The next `lost` calls of script `name` run in Redis (if `run`) but their reply times out."""
    script = getattr(store, name)
    calls = []

    def flaky(keys, args):
        calls.append(args[0])
        if len(calls) <= lost:
            if run:
                script(keys=keys, args=args)
            raise redis.TimeoutError("Timeout reading from socket")
        return script(keys=keys, args=args)

    setattr(store, name, flaky)
    return calls


def test_a_begin_whose_reply_was_lost_keeps_its_lock(service):
    calls = lose_replies(service.stores.users, "_begin", 1)
    snapshot = service.stores.users.begin("u-1", "a-1", Windows(NOW, NOW, NOW))
    assert snapshot is not None and calls == [snapshot.token, snapshot.token]


def test_a_commit_whose_reply_was_lost_is_recognised(service):
    client = create_app(service.settings, services=service).test_client()
    store = service.stores.users
    lose_replies(store, "_commit", 2)
    response = client.post("/decide", json=dict(payload(), user_id="u-1", application_id="a-1"))
    assert response.status_code == 200, response.get_json()
    log = store.keys("u-1", None)[5]
    assert store.client.xlen(log) == 1 and service.decisions.user_state("u-1")["applications_6m"] == 1
    again = client.post("/decide", json=dict(payload(), user_id="u-1", application_id="a-1"))
    assert again.get_json() == response.get_json()


def test_a_commit_never_confirmed_is_an_honest_503(service):
    client = create_app(service.settings, services=service).test_client()
    lose_replies(service.stores.users, "_commit", 10_000, run=False)   # it never arrives: Redis is gone
    response = client.post("/decide", json=dict(payload(), user_id="u-1", application_id="a-1"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    body = response.get_json()["error"]
    assert body["code"] == "outcome_unknown" and "nothing was written" not in body["message"]
