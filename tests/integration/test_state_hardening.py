"""Issue 9's state bugs, on the real Redis server and on fakeredis (the embedded store)."""
import datetime as dt
import threading

import fakeredis
import pytest

from schemas.request import DecideRequestSchema
from service import redisconn
from service.clock import FixedClock
from service.decide import Conflict, DecisionService
from service.statestore import RedisStateStore
from tests.conftest import NOW, payload

pytestmark = pytest.mark.integration


@pytest.fixture(params=["server", "fakeredis"])
def service(request, policy):
    if request.param == "server":
        client = redisconn.connect(request.getfixturevalue("real_redis_url"), timeout=2.0)
    else:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return DecisionService(policy, RedisStateStore(client), clock=FixedClock(NOW))


def decide(service, doc, user="u-1", app="a-1"):
    doc = dict(doc, user_id=user, application_id=app)
    request = DecideRequestSchema(term_ranges=service.policy.book.term_ranges()).load(doc)
    return service.decide(doc, request).decision


def test_grace_uses_are_not_counted_as_applications(service):
    """Issue 9.1: COMMIT's and/or idiom added each grace use to the applications set."""
    service.use_grace("u-1", 1)
    service.clock.set(NOW + dt.timedelta(minutes=1))
    service.use_grace("u-1", 2)
    service.clock.set(NOW + dt.timedelta(minutes=2))
    assert decide(service, payload(credit_applications_6m=0), app="a-1")["outcome"] == "approved"
    service.clock.set(NOW + dt.timedelta(minutes=3))
    second = decide(service, payload(credit_applications_6m=0), app="a-2")
    assert "TOO_MANY_APPLICATIONS" not in [r["code"] for r in second["reasons"]]
    assert second["outcome"] == "approved"
    assert service.user_state("u-1")["applications_6m"] == 2
