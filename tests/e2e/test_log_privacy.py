"""Personal data stays out of the log (issue 9.8): user ids that are phone or ID-card numbers or
names are not printed by the "user busy" warning, and the masking knows their common formats."""
import json
import logging

import pytest
import redis

from service.adapters.state_store import RedisStateStore
from service.entrypoints.logs import JsonFormatter
from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

PERSONAL = ["+8613812345678", "138-1234-5678", "13812345678", "110101900307123",
            "11010119900307123X", "张三"]


def test_busy_users_ids_are_not_logged(live_server, real_redis_url):
    server = live_server("--workers", "1", env={"REDIS_URL": real_redis_url, "USER_LOCK_WAIT_S": "0.2"})
    client = redis.Redis.from_url(real_redis_url)
    store = RedisStateStore(client)
    for n, user_id in enumerate(PERSONAL):
        client.set(store.keys(user_id, None)[0], "someone-else", px=60_000)   # the user is busy
        status, body, _ = http("POST", server.url + "/decide",
                               dict(payload(), user_id=user_id, application_id=f"a{n}"))
        assert status == 503 and body["error"]["code"] == "busy", body
        assert user_id not in body["error"]["message"]
    output = server.stop()
    assert output.count("user busy") == len(PERSONAL)
    for user_id in PERSONAL:
        assert user_id not in output
        assert json.dumps(user_id)[1:-1] not in output             # nor \\u-escaped


@pytest.mark.parametrize("text, shown", [
    ("+8613812345678", "+86138****5678"), ("138-1234-5678", "138****5678"),
    ("13812345678", "138****5678"), ("110101900307123", "110101******123"),
    ("11010119900307123X", "110101********123X"), ("身份证110101199003071234", "身份证110101********1234"),
])
def test_masking_of_common_formats(text, shown):
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, f"user {text} failed", None, None)
    record.fields = {"error": f"id {text}", "applicant": {"name": "张三", "phone": text}}
    line = JsonFormatter().format(record)
    assert text not in line and "张三" not in line
    doc = json.loads(line)
    assert doc["msg"] == f"user {shown} failed" and doc["applicant"] == {"name": "张*", "phone": shown}
