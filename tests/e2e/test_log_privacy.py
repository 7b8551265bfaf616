"""Personal data stays out of the log (issue 9.8): user ids that are phone or ID-card numbers or
names are not printed by the "user busy" warning, and the masking knows their common formats.
gunicorn's own lines (its error and access logs) go through the same masking, as JSON."""
import json
import logging

import pytest
import redis

from service.adapters.state_store import RedisStateStore
from service.entrypoints.logs import JsonFormatter
from tests.conftest import payload
from tests.e2e.conftest import http, raw_exchange

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


ID_NUMBER, PHONE = "110101199003071234", "13987654321"
HOSTILE = [   # what gunicorn quotes in its error log, and the path of its access log
    f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header {PHONE}\r\n\r\n".encode(),
    f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header {PHONE}: v\r\n\r\n".encode(),
    # repr() writes the last byte of 证 as \x81: its hex digit touches the number's first
    f"GET /healthz HTTP/1.1\r\nHost: x\r\n身份证{ID_NUMBER}: v\r\n\r\n".encode(),
    f"GET /users/\x00{ID_NUMBER}/state HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    f"GET /users/{ID_NUMBER}/state HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nConnection: close\r\n\r\n".encode(),
    # a backslash and a quote in the path: gunicorn's own escaping made the access line invalid JSON
    f"GET /users/%5C%22{ID_NUMBER}/state HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nConnection: close\r\n\r\n".encode(),
    (b"POST /decide HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz" + PHONE.encode() + b"\r\n{}\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_gunicorns_own_lines_are_json_and_masked(live_server, worker_class):
    server = live_server(env={"API_KEYS": "k", "ACCESS_LOG": "1", "WORKER_CLASS": worker_class})
    statuses = [raw_exchange(server.port, request)[0] for request in HOSTILE]
    assert statuses == [400, 400, 400, 400, 404, 404, 400]
    output = server.stop()
    docs = [json.loads(line) for line in output.splitlines()]   # every line is JSON
    assert PHONE not in output and ID_NUMBER not in output
    messages = [doc["msg"] for doc in docs if doc["logger"] == "gunicorn.error"]
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP header name: 'Bad Header 139****4321'" in messages
    assert any("110101********1234" in m and "Invalid HTTP header name" in m for m in messages)
    assert any("110101********1234" in m and "Invalid HTTP request line" in m for m in messages)
    paths = [doc["path"] for doc in docs if doc["logger"] == "gunicorn.access"]
    assert {"/users/110101********1234/state", '/users/\\"110101********1234/state', "/decide"} <= set(paths)
    access = next(doc for doc in docs if doc["logger"] == "gunicorn.access" and doc["path"] == "/decide")
    assert access["status"] == 400 and access["method"] == "POST" and access["request_id"]
    assert {"remote", "bytes", "duration_ms"} <= set(access)
