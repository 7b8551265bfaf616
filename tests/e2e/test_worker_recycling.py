"""Workers recycled after MAX_REQUESTS are replaced, and the service keeps answering.

Found by bench/http.sh (issue 15): under the container's command (`gunicorn -c
docker/gunicorn.conf.py service.entrypoints.wsgi:app`) the gevent patch, applied in the master
after gunicorn's arbiter was made, left the arbiter waiting on its real signal queue while its
SIGCHLD handler ran only inside gevent's hub, which the master never runs: exited workers were
never reaped nor replaced, and after MAX_REQUESTS requests per worker the service stopped
answering for good. Both doors are checked: that command, and `loan-decide serve`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer, http
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
RECYCLE = {"MAX_REQUESTS": "15", "MAX_REQUESTS_JITTER": "1"}


class GunicornServer(LiveServer):
    """The container's command on a free port (LiveServer's waiting, log and stop)."""

    def __init__(self, env: dict[str, str]):   # not LiveServer's: that starts `loan-decide serve`
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", "docker/gunicorn.conf.py",
             "service.entrypoints.wsgi:app"],
            cwd=ROOT, env={**os.environ, **env, "BIND": f"127.0.0.1:{self.port}", "WORKERS": "2"},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)


def _serve_until_two_generations_replaced(server: LiveServer) -> list[int]:
    """A worker notices it is due once a second: requests go on until 4 workers more than the
    first 2 have booted, or 40 s (before the fix, answers stopped for good)."""
    statuses, deadline = [], time.monotonic() + 40
    while server.output().count("Booting worker") < 6 and time.monotonic() < deadline:
        statuses.append(http("GET", server.url + "/healthz")[0])
        time.sleep(0.02)
    time.sleep(1.5)   # the last worker settles: one still booting when SIGTERM comes holds the stop 20 s
    return statuses


def _check(server: LiveServer, statuses: list[int]) -> None:
    log = server.output()
    assert log.count("Booting worker") >= 6, log[-2000:]
    assert statuses == [200] * len(statuses) and len(statuses) >= 30
    assert "WORKER TIMEOUT" not in log


def test_the_containers_command_replaces_recycled_workers(real_redis_url):
    server = GunicornServer({"REDIS_URL": real_redis_url, **RECYCLE})
    try:
        server.wait_ready()
        _check(server, _serve_until_two_generations_replaced(server))
    finally:
        server.stop()


def test_loan_decide_serve_replaces_recycled_workers(live_server, real_redis_url):
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url, **RECYCLE})
    _check(server, _serve_until_two_generations_replaced(server))
