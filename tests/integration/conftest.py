"""Integration fixtures: the use cases on the real Redis on 127.0.0.1:6379 (logical db 15,
flushed per test) and on the 3-master Redis Cluster of the session (tests/conftest.py)."""
from __future__ import annotations

import pytest

from service.adapters import redis_connection
from service.domain.clock import FixedClock
from tests.conftest import NOW, redis_services


@pytest.fixture(params=["server", "cluster"])
def store_url(request):
    if request.param == "server":
        return request.getfixturevalue("real_redis_url")
    cluster = request.getfixturevalue("cluster")
    client = redis_connection.connect(cluster.url)
    client.flushall()
    return cluster.url


@pytest.fixture
def clock():
    return FixedClock(NOW)


# the erasure key of the tests' services (erasure on; a test of it off wires its own)
SECRET = b"test-erasure-secret"


@pytest.fixture
def service(policy, store_url, clock):
    """The wired use cases on the real Redis (a server, or the cluster), erasure on."""
    return redis_services(store_url, policy, clock, erasure_secret=SECRET)
