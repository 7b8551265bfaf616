"""Issue 9's state bugs, on the real Redis server and on fakeredis (the embedded store)."""
import datetime as dt
import threading

import fakeredis
import pytest

from schemas.request import DecideRequestSchema
from service.adapters import redis_connection
from service.adapters.state_store import RedisStateStore
from service.domain.clock import FixedClock
from service.usecases.decide import Conflict, DecisionService
from tests.conftest import NOW, payload

pytestmark = pytest.mark.integration


@pytest.fixture(params=["server", "fakeredis"])
def service(request, policy):
    if request.param == "server":
        client = redis_connection.connect(request.getfixturevalue("real_redis_url"), timeout=2.0)
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


def log_and_diff(service):
    """The grace records in the user's log, and `state diff` between the log and the store."""
    import io
    import json

    from service.adapters import decision_log
    from service.usecases import rebuild
    from tests.conftest import embedded_service

    out = io.StringIO()
    decision_log.export(service.store.client, "ld", out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    implied = embedded_service(service.policy, FixedClock(NOW))
    result = rebuild.diff(implied, service, rebuild.records(enumerate(out.getvalue().splitlines(), 1)))
    return [r for r in records if r["kind"] == "grace"], result.differences


def grace_attempts(service, count, concurrent):
    """Try `count` grace uses for one user in the same clock second: (successes, conflicts)."""
    outcomes = []

    def attempt():
        try:
            service.use_grace("u-g", 1)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    if not concurrent:
        for _ in range(count):
            attempt()
    else:
        threads = [threading.Thread(target=attempt) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return outcomes.count("ok"), outcomes.count("conflict")


def test_grace_uses_in_one_second_each_count(service):
    """Issue 9.2: uses in the same second were one member; every use must count."""
    max_uses = service.policy.book.time.grace.max_uses
    assert grace_attempts(service, 6, concurrent=False) == (max_uses, 6 - max_uses)
    assert service.user_state("u-g")["grace"]["uses_in_period"] == max_uses
    logged, differences = log_and_diff(service)
    assert len(logged) == max_uses and differences == []


def test_concurrent_grace_uses_respect_the_limit(policy, real_redis_url):
    client = redis_connection.connect(real_redis_url, timeout=2.0)
    service = DecisionService(policy, RedisStateStore(client), clock=FixedClock(NOW))
    max_uses = policy.book.time.grace.max_uses
    assert grace_attempts(service, 30, concurrent=True) == (max_uses, 30 - max_uses)
    assert service.user_state("u-g")["grace"]["uses_in_period"] == max_uses
    logged, differences = log_and_diff(service)
    assert len(logged) == max_uses and differences == []


def test_grace_members_of_the_old_format_still_count(service):
    """Uses stored before the use id existed ("<second>:<days>") keep counting toward the limit."""
    old = int((NOW - dt.timedelta(days=10)).timestamp())
    service.store.client.zadd(service.store.keys("u-g", None)[4], {f"{old}:3": old})
    service.use_grace("u-g", 1)
    assert service.user_state("u-g")["grace"]["uses_in_period"] == 2
    with pytest.raises(Conflict):
        service.use_grace("u-g", 1)


def test_begin_and_commit_are_safe_to_run_twice(service):
    """Issue 9.3: a script retried after a timeout may run twice in Redis; the second run of
    BEGIN finds its own lock, the second run of COMMIT finds its own commit and writes nothing."""
    store = service.store
    snapshot = store.begin("u-1", "a-1", NOW, NOW, NOW)
    keys = store.keys("u-1", "a-1")
    again = store._begin(keys=keys, args=[snapshot.token, store.lock_ttl_ms, 0, 0, 0])
    assert int(again[0]) == 1                               # the lock is ours: proceed
    plan = service.plan_grace(1, NOW, "x")
    plan.log = '{"kind":"grace"}'
    first = store.commit(snapshot, plan)
    assert first and store.commit(snapshot, plan) == first  # recognised, not LOCK_LOST
    assert store.client.xlen(keys[5]) == 1 and store.client.zcard(keys[4]) == 1
    assert not store.client.exists(keys[0])                 # and the lock is free
