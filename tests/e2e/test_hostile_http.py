"""Issue 9 against a live `loan-decide serve`: slow clients, chunked bodies, gunicorn's own errors."""
import json
import socket
import uuid
from http.client import HTTPConnection

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e
SLOW_CLIENTS = 200


def fresh() -> dict:
    return {**payload(), "user_id": f"hx-{uuid.uuid4().hex[:10]}",
            "application_id": f"ax-{uuid.uuid4().hex[:10]}"}


def raw_exchange(port: int, data: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes; (status, headers, body) of the answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def chunked_post(port: int, path: str, parts: list[bytes]) -> tuple[int, dict]:
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=iter(parts), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
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
    """Item 15: what gunicorn answers itself has the service's error shape; no `Server: gunicorn`."""
    server = live_server()
    for request, status in [(b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
                            (b"NOT A REQUEST\r\n\r\n", 400)]:
        got, headers, body = raw_exchange(server.port, request)
        assert got == status
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "fields"} and error["message"]
        assert "gunicorn" not in headers.get("Server", "")
    _, _, headers = http("GET", server.url + "/healthz")
    assert "gunicorn" not in headers.get("Server", "").lower()
