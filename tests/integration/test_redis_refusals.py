"""Redis error replies that mean "not now" (OOM, READONLY, ...) are 503 with Retry-After and fail
/readyz; other error replies stay distinct (issue 9.6). Each on a Redis the test starts itself."""
import pytest
import redis

from service.adapters.state_store import refused
from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from tests.conftest import NOW, payload, redis_services
from tests.servers import RedisServer

pytestmark = pytest.mark.integration


def app_on(url, policy):
    services = redis_services(url, policy, FixedClock(NOW))
    return create_app(services.settings, services=services).test_client()


def assert_refused_then_recovers(client, make_writable):
    for n in range(2):
        response = client.post("/decide", json=dict(payload(), user_id="u-r", application_id=f"a{n}"))
        assert response.status_code == 503, response.get_json()
        assert response.headers["Retry-After"] == "1"
        assert response.get_json()["error"]["code"] == "store_unavailable"
    assert client.post("/users/u-r/grace-uses", json={"days": 1}).status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    make_writable()
    assert client.get("/readyz").status_code == 200
    response = client.post("/decide", json=dict(payload(), user_id="u-r", application_id="a0"))
    assert response.status_code == 200 and response.get_json()["outcome"] == "approved"


def test_out_of_memory(own_redis, policy):
    client = app_on(own_redis.url, policy)
    assert client.get("/readyz").status_code == 200
    admin = redis.Redis(port=own_redis.port)
    admin.config_set("maxmemory", "2mb")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for n in range(10_000):
            admin.set(f"filler:{n}", "x" * 1000)
    assert admin.ping()                        # PING still answers: readiness must write
    assert_refused_then_recovers(client, lambda: admin.config_set("maxmemory", "0"))


def test_read_only_replica(own_redis, policy, tmp_path):
    client = app_on(own_redis.url, policy)
    assert client.get("/readyz").status_code == 200
    admin = redis.Redis(port=own_redis.port)
    dead = RedisServer(tmp_path / "dead")      # only its port: nothing listens there
    admin.execute_command("REPLICAOF", "127.0.0.1", dead.port)
    assert_refused_then_recovers(client, lambda: admin.execute_command("REPLICAOF", "NO", "ONE"))


@pytest.mark.parametrize("reply, expected", [
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), True),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
    (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
    (redis.ResponseError("MASTERDOWN Link with MASTER is down"), True),
    (redis.ResponseError("CLUSTERDOWN The cluster is down"), True),
    (redis.ResponseError("LOCK_LOST the user lock expired before the commit"), False),
    (redis.ResponseError("ERR user_script:3: attempt to index a nil value"), False),
])
def test_which_replies_mean_not_now(reply, expected):
    assert refused(reply) is expected
