"""Integration fixtures: the real Redis on 127.0.0.1:6379 (logical db 15, flushed per test) and a
3-master Redis Cluster started on loopback ports for the session."""
from __future__ import annotations

import pytest

from service.adapters import redis_connection
from service.domain.clock import FixedClock
from tests.conftest import NOW, redis_services
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
    """The wired use cases on the real Redis (a server, or the cluster)."""
    return redis_services(store_url, policy, clock)
