"""The state bugs found in hardening, on the real Redis server and on the embedded store (in memory); what
only the Redis adapter's scripts and key layout can show, on the server and on a cluster."""
import datetime as dt
import threading
from dataclasses import replace

import pytest

from schemas.request import DecideRequestSchema
from service.adapters.state_store import _s, plan_of
from service.domain.clock import FixedClock
from service.usecases.decide import grace_write
from service.usecases.errors import Conflict
from service.usecases.ports import Windows
from tests.conftest import NOW, memory_services, payload, redis_services

pytestmark = pytest.mark.integration


@pytest.fixture(params=["server", "memory"])
def service(request, policy):
    if request.param == "server":
        return redis_services(request.getfixturevalue("real_redis_url"), policy, FixedClock(NOW))
    return memory_services(policy, FixedClock(NOW))


@pytest.fixture
def redis_service(policy, store_url):
    """The Redis adapter itself (a server, or the cluster): its scripts and its key layout."""
    return redis_services(store_url, policy, FixedClock(NOW))


def decide(service, doc, user="u-1", app="a-1"):
    doc = dict(doc, user_id=user, application_id=app)
    request = DecideRequestSchema(term_ranges=service.rules.policy.book.term_ranges()).load(doc)
    return service.decisions.decide(doc, request).decision


def test_grace_uses_are_not_counted_as_applications(service):
    """COMMIT's and/or idiom added each grace use to the applications set."""
    service.decisions.use_grace("u-1", 1)
    service.clock.set(NOW + dt.timedelta(minutes=1))
    service.decisions.use_grace("u-1", 2)
    service.clock.set(NOW + dt.timedelta(minutes=2))
    assert decide(service, payload(credit_applications_6m=0), app="a-1")["outcome"] == "approved"
    service.clock.set(NOW + dt.timedelta(minutes=3))
    second = decide(service, payload(credit_applications_6m=0), app="a-2")
    assert "TOO_MANY_APPLICATIONS" not in [r["code"] for r in second["reasons"]]
    assert second["outcome"] == "approved"
    assert service.decisions.user_state("u-1")["applications_6m"] == 2


def log_and_diff(service):
    """The grace records in the user's log, and `state diff` between the log and the store."""
    import io
    import json

    from service.usecases import rebuild

    out = io.StringIO()
    service.stores.log.export(out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    implied = memory_services(service.rules.policy, FixedClock(NOW))
    rebuilder = rebuild.Rebuilder(implied.work, implied.rules, implied.stores.erased,
                                  implied.settings.erasure_secret)
    result = rebuild.diff(rebuilder, service.work, rebuild.records(enumerate(out.getvalue().splitlines(), 1)))
    return [r for r in records if r["kind"] == "grace"], result.differences


def grace_attempts(service, count, concurrent):
    """Try `count` grace uses for one user in the same clock second: (successes, conflicts)."""
    outcomes = []

    def attempt():
        try:
            service.decisions.use_grace("u-g", 1)
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
    max_uses = service.rules.policy.book.time.grace.max_uses
    assert grace_attempts(service, 6, concurrent=False) == (max_uses, 6 - max_uses)
    assert service.decisions.user_state("u-g")["grace"]["uses_in_period"] == max_uses
    logged, differences = log_and_diff(service)
    assert len(logged) == max_uses and differences == []


def test_concurrent_grace_uses_respect_the_limit(policy, real_redis_url):
    service = redis_services(real_redis_url, policy, FixedClock(NOW))
    max_uses = policy.book.time.grace.max_uses
    assert grace_attempts(service, 30, concurrent=True) == (max_uses, 30 - max_uses)
    assert service.decisions.user_state("u-g")["grace"]["uses_in_period"] == max_uses
    logged, differences = log_and_diff(service)
    assert len(logged) == max_uses and differences == []


def test_grace_members_of_the_old_format_still_count(redis_service):
    """Uses stored before the use id existed ("<second>:<days>") keep counting toward the limit.
    (A Redis member format: the in-memory store never held the old one.)"""
    service, store = redis_service, redis_service.stores.users
    old = int((NOW - dt.timedelta(days=10)).timestamp())
    store.client.zadd(store.keys("u-g", None)[4], {f"{old}:3": old})
    service.decisions.use_grace("u-g", 1)
    assert service.decisions.user_state("u-g")["grace"]["uses_in_period"] == 2
    with pytest.raises(Conflict):
        service.decisions.use_grace("u-g", 1)


def test_begin_and_commit_are_safe_to_run_twice(redis_service):
    """Issue 9.3: a script retried after a timeout may run twice in Redis; the second run of
    BEGIN finds its own lock, the second run of COMMIT finds its own commit and writes nothing."""
    store = redis_service.stores.users
    snapshot = store.begin("u-1", "a-1", Windows(NOW, NOW, NOW))
    keys = store.keys("u-1", "a-1")
    again = store._begin(keys=keys, args=[snapshot.token, store.lock_ttl_ms, 0, 0, 0])
    assert int(again[0]) == 1                               # the lock is ours: proceed
    write = replace(grace_write(redis_service.rules.policy, 1, NOW, "x"), log='{"kind":"grace"}')
    store.commit(snapshot, write)
    [(log_id, _)] = store.client.xrange(keys[5])
    # COMMIT run again (the port returns nothing: the script itself answers with its log id)
    commit_keys = keys + [f"{store._base('u-1')}:commit:{snapshot.token}"]
    args = [snapshot.token, *plan_of(snapshot, write).encode(store.app_ttl, store.user_ttl, store.log_ttl)]
    assert _s(store._commit(keys=commit_keys, args=args)) == _s(log_id)   # recognised, not LOCK_LOST
    store.commit(snapshot, write)                           # and through the port: no StoreBusy
    assert store.client.xlen(keys[5]) == 1 and store.client.zcard(keys[4]) == 1
    assert not store.client.exists(keys[0])                 # and the lock is free
