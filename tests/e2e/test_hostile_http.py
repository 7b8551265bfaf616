"""Issue 9 against a live `loan-decide serve`: slow clients, chunked bodies, gunicorn's own errors."""
import json
import os
import socket
import time
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


def test_slow_bodies_do_not_stop_the_service(live_server, real_redis_url):
    """200 connections that send whole headers and half a body, then stall: a request's body is
    read before it may enter the app, so they hold sockets only; everyone else still gets 200."""
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url})
    stalled: list[tuple[socket.socket, bytes]] = []
    try:
        for _ in range(SLOW_CLIENTS):
            body = json.dumps(fresh()).encode()
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
            stalled.append((sock, body[len(body) // 2:]))
        for _ in range(5):
            assert http("GET", server.url + "/healthz")[0] == 200
            status, answer, _ = http("POST", server.url + "/decide", fresh())
            assert status == 200, answer
        for sock, rest in stalled[:20]:           # finished, they are decided
            sock.sendall(rest)
        for sock, _ in stalled[:20]:
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for sock, _ in stalled:
            sock.close()


def _established_per_worker(master_pid: int, port: int) -> dict[int, int]:
    """How many established connections to `port` each worker process of `master_pid` holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as children:
        workers = [int(pid) for pid in children.read().split()]
    held = {}
    for pid in workers:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        held[pid] = sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)
    return held


def test_keep_alive_connections_are_spread_evenly_over_the_workers(live_server, real_redis_url):
    """16 connections opened at once: whichever worker is awake first used to take them all."""
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url})
    time.sleep(1.0)                                # both workers up and in the connection table
    connections = [HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(16)]
    try:
        for conn in connections:
            conn.connect()
        for conn in connections:
            conn.request("GET", "/healthz")
        for conn in connections:
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        held = _established_per_worker(server.process.pid, server.port)
        assert len(held) == 2 and sum(held.values()) == 16
        assert max(held.values()) - min(held.values()) <= 2, held
    finally:
        for conn in connections:
            conn.close()
