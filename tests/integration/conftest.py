"""Integration fixtures: the real Redis on 127.0.0.1:6379 (logical db 15, flushed per test) and a
3-master Redis Cluster started on loopback ports for the session."""
from __future__ import annotations

import pytest

from service.adapters import redis_connection
from service.adapters.state_store import RedisStateStore
from service.domain.clock import FixedClock
from service.usecases.decide import DecisionService
from tests.conftest import NOW
from tests.servers import RedisCluster3


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    nodes = RedisCluster3(tmp_path_factory.mktemp("cluster")).start()
    yield nodes
    nodes.stop()


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


@pytest.fixture
def service(policy, store_url, clock):
    store = RedisStateStore(redis_connection.connect(store_url, timeout=2.0))
    return DecisionService(policy, store, clock=clock)
