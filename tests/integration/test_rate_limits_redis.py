"""RATE_LIMITS on real Redis: one budget per key across replicas (two apps on one Redis, a server
or the cluster), the limiter's keys under their own prefix holding no key, and a limiter Redis
that stalls or dies mid-run: requests served within the timeout, logged and counted."""
import logging
import os
import signal
import time

import pytest
import redis

from service.adapters import redis_connection
from service.domain.clock import FixedClock
from service.entrypoints.http import rate_limits
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings, read_rate_limits
from tests.conftest import NOW, memory_services, payload, redis_services

pytestmark = pytest.mark.integration

KEY = "client-key-redis"


def replica(url: str, policy, rates: str, *, shared_state: bool = True, timeout: float = 2.0):
    """One replica's app: its use cases on the Redis at `url` (or in memory), RATE_LIMITS=`rates`
    counted on the Redis at `url`."""
    config = Settings(redis_url=url, redis_timeout=timeout, api_keys=(KEY,), rate_limits=read_rate_limits(rates))
    if shared_state:
        services = redis_services(url, policy, FixedClock(NOW), api_keys=(KEY,), redis_timeout=timeout)
    else:
        services = memory_services(policy, FixedClock(NOW), api_keys=(KEY,))
    return create_app(config, services=services).test_client()


def decide(client, n: int, key: str = KEY):
    doc = dict(payload(), user_id=f"u-rl-{n}", application_id=f"a-rl-{n}")
    return client.post("/decide", json=doc, headers={"X-API-Key": key})


def metric(client, name: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    found = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(found[0].split()[-1]) if found else 0.0


@pytest.fixture(params=["server", "cluster"])
def limiter_url(request):
    if request.param == "server":
        return request.getfixturevalue("real_redis_url")
    cluster = request.getfixturevalue("cluster")
    redis_connection.connect(cluster.url).flushall()
    return cluster.url


def test_two_replicas_share_each_keys_budget(policy, limiter_url):
    one, two = (replica(limiter_url, policy, "client=3/minute") for _ in range(2))
    assert [decide(one, 0).status_code, decide(two, 1).status_code, decide(one, 2).status_code] == [200] * 3
    assert decide(two, 3).status_code == 429 and decide(one, 4).status_code == 429
    assert decide(one, 5, key="another").status_code == 401


def test_the_limiters_keys_have_their_own_prefix_and_no_key(policy, real_redis_url):
    client = replica(real_redis_url, policy, "client=5/minute", shared_state=False)
    for n in range(3):
        assert decide(client, n).status_code == 200
    keys = [k.decode() for k in redis.Redis.from_url(real_redis_url).keys("*")]
    fingerprint = rate_limits.fingerprint(KEY)
    assert keys == [f"ld-ratelimit:LIMITER/client/{fingerprint}/5/1/minute"]
    assert redis.Redis.from_url(real_redis_url).llen(keys[0]) == 3
    assert 59 <= redis.Redis.from_url(real_redis_url).ttl(keys[0]) <= 60


def test_a_stalled_then_dead_own_redis_lets_requests_through(policy, own_redis, caplog, monkeypatch):
    """The use cases in memory, the limiter on a Redis of its own: stopped (SIGSTOP) each request
    waits at most one REDIS_TIMEOUT, then is served; one log line and one count per failure;
    running again, the limit holds again; killed, requests are served at once."""
    monkeypatch.setattr(rate_limits, "STORAGE_PAUSE_S", 0.0)   # every request tries the storage
    client = replica(own_redis.url, policy, "client=2/minute", shared_state=False, timeout=0.3)
    assert [decide(client, n).status_code for n in range(3)] == [200, 200, 429]
    errors_before = metric(client, "rate_limit_storage_errors_total")
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    with caplog.at_level(logging.WARNING, logger="loan_decide"):
        timed = []
        for n in range(3, 6):
            started = time.monotonic()
            timed.append((decide(client, n).status_code, time.monotonic() - started))
    assert [status for status, _ in timed] == [200, 200, 200]
    assert all(0.25 <= took < 0.9 for _, took in timed), timed     # one 0.3 s timeout, no retry
    lines = [r for r in caplog.records if r.getMessage().startswith("rate limit storage unavailable")]
    assert len(lines) == 3 and all("Timeout" in r.fields["error"] and KEY not in str(r.fields) for r in lines)
    assert metric(client, "rate_limit_storage_errors_total") == errors_before + 3

    os.kill(own_redis.process.pid, signal.SIGCONT)
    assert decide(client, 6).status_code == 429                    # counted again, still full
    own_redis.kill()
    started = time.monotonic()
    assert [decide(client, n).status_code for n in range(7, 10)] == [200, 200, 200]
    assert time.monotonic() - started < 0.9
    assert metric(client, "rate_limit_storage_errors_total") == errors_before + 6


def test_a_limiter_failure_beside_a_redis_the_request_needs_is_the_services_503(policy, own_redis):
    """Limiter and use cases on one Redis, stopped: the service's own 503 (store_unavailable),
    never an error of the limiter's."""
    client = replica(own_redis.url, policy, "client=100/minute", timeout=0.3)
    assert decide(client, 0).status_code == 200
    own_redis.kill()
    refused = decide(client, 1)
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "store_unavailable"
