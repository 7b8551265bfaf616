"""A live `loan-decide serve` (gunicorn) on a free loopback port."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _body(raw: bytes, headers) -> object:
    if (headers.get("Content-Type") or "").startswith("application/json"):
        return json.loads(raw or b"null")
    return raw.decode(errors="replace")


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    """(status, body: parsed JSON or text, headers) of one request to a live server."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _body(response.read(), response.headers), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, _body(error.read(), error.headers), dict(error.headers)


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


class LiveServer:
    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the CLI module of the code under test (PYTHONPATH), not whatever the venv's
        # `loan-decide` script was installed from
        command = [sys.executable, "-m", "service.entrypoints.cli"]
        # the log goes to a file: a pipe nobody reads fills up and blocks the workers
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if http("GET", self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.output()


@pytest.fixture
def live_server():
    servers: list[LiveServer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> LiveServer:
        server = LiveServer(list(args), env)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
