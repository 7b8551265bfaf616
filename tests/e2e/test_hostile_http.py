"""Issue 9 against a live `loan-decide serve`: slow clients, chunked bodies, gunicorn's own errors."""
import json
import socket
import uuid
from http.client import HTTPConnection

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http, raw_exchange

pytestmark = pytest.mark.e2e
SLOW_CLIENTS = 200


def fresh() -> dict:
    return {**payload(), "user_id": f"hx-{uuid.uuid4().hex[:10]}",
            "application_id": f"ax-{uuid.uuid4().hex[:10]}"}


def chunked_post(port: int, path: str, parts: list[bytes],
                 headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=iter(parts), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                              **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_slow_clients_do_not_stop_the_service(live_server, real_redis_url):
    """Item 4: 200 connections that never finish their headers; everyone else still gets 200."""
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url})
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")   # and nothing more
            slow.append(sock)
        for _ in range(5):
            assert http("GET", server.url + "/healthz")[0] == 200
            status, body, _ = http("POST", server.url + "/decide", fresh())
            assert status == 200, body
        for sock in slow[:20]:                    # the slow ones are still served when they finish
            sock.sendall(b"1\r\n\r\n")
        for sock in slow[:20]:
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for sock in slow:
            sock.close()


def test_chunked_body_over_the_limit_is_413_and_not_decided(live_server):
    """Item 9: a chunked body is held to MAX_BODY_BYTES like one with a Content-Length."""
    server = live_server(env={"MAX_BODY_BYTES": "65536"})
    doc = fresh()
    parts = [json.dumps(doc).encode(), b" " * 70_000, b"garbage"]
    status, body = chunked_post(server.port, "/decide", parts)
    assert status == 413 and body["error"]["code"] == "request_entity_too_large"
    assert http("GET", f"{server.url}/users/{doc['user_id']}/state")[0] == 404
    status, body = chunked_post(server.port, "/decide", [json.dumps(doc).encode(), b" " * 100])
    assert status == 200 and body["outcome"] == "approved"


def test_gunicorns_own_errors_are_json_without_server_name(live_server):
    """Item 15: what gunicorn answers itself has the service's error shape; no `Server: gunicorn`.
    It names the problem and echoes nothing the client sent (gunicorn's message quotes it)."""
    server = live_server()
    for request, status, message in [
            (b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "Request Line is too large"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header 13987654321\r\n\r\n", 400, "Invalid HTTP Header"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header 13987654321: v\r\n\r\n", 400,
             "Invalid HTTP header name"),
            (b"GET /x\x00110101199003071234 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid Request Line"),
            (b"NOT A REQUEST\r\n\r\n", 400, "Invalid Request Line")]:
        got, headers, body = raw_exchange(server.port, request)
        assert got == status
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "fields"} and error["message"].startswith(message), error
        for sent in (b"Bad Header", b"13987654321", b"110101", b"A REQUEST", b"xxxxx"):
            assert sent not in body
        assert "gunicorn" not in headers.get("Server", "")
    _, _, headers = http("GET", server.url + "/healthz")
    assert "gunicorn" not in headers.get("Server", "").lower()


CHUNKED_DECIDE = (b"POST /decide HTTP/1.1\r\nHost: x\r\nX-API-Key: client-key\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_a_malformed_chunked_body_is_a_400(live_server, worker_class):
    """Item 9: gunicorn raises its chunk errors inside the app, from wsgi.input: the client's
    error, a 400 naming it without quoting the body, not the 500 of an unexpected exception."""
    server = live_server(env={"API_KEYS": "client-key", "WORKER_CLASS": worker_class})
    for chunks, problem in [(b"zz13987654321\r\n{}\r\n0\r\n\r\n", "Invalid chunk size"),
                            (b"2\r\n{}XX0\r\n\r\n", "Invalid chunk terminator is not CRLF")]:
        status, headers, body = raw_exchange(server.port, CHUNKED_DECIDE + chunks)
        assert status == 400 and headers["Content-Type"] == "application/json", body
        error = json.loads(body)["error"]
        assert error == {"code": "bad_request", "fields": {"_request": [error["message"]]},
                         "message": f"The chunked body could not be read: {problem}."}
    status, body = chunked_post(server.port, "/decide", [json.dumps(fresh()).encode()],
                                {"X-API-Key": "client-key"})
    assert status == 200 and body["outcome"] == "approved"   # a well-framed one is decided
