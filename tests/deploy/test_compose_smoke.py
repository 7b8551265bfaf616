"""The api container's process, run here as compose would start it.

The command is the Dockerfile's CMD (or the compose service's `command`), the environment is
the image's ENV overlaid with the compose service's `environment` (its `${VAR:-default}`
resolved), and Redis runs with the compose redis service's command. Only what must differ on
this machine is changed: BIND (a free loopback port), REDIS_URL (that Redis), RULES_DIR (the
repo's rules), PROMETHEUS_MULTIPROC_DIR and HOME (temporary directories). Then: the healthchecks of
the Dockerfile and of compose pass, /decide answers with the client key, /readyz and /metrics
answer, and SIGTERM (what `docker stop` sends PID 1) stops gunicorn cleanly in time.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.conftest import RULES_DIR, payload
from tests.deploy.conftest import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    command_argv,
    healthcheck_command,
    load_compose,
    parse_dockerfile,
    resolved_environment,
    stages,
)
from tests.e2e.conftest import http
from tests.servers import free_port

pytestmark = pytest.mark.e2e

CLIENT_KEY = "deploy-smoke-client-key"
SHELL_ENV = {"API_KEYS": f"{CLIENT_KEY},another-client-key", "ADMIN_API_KEY": "deploy-smoke-admin-key"}
VENV_BIN = Path(sys.executable).parent


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.compose = load_compose(COMPOSE)
        self.runtime = stages(parse_dockerfile(DOCKERFILE.read_text()))[-1]
        self.api_name, self.api = next((n, s) for n, s in self.compose["services"].items() if "build" in s)
        self.redis_name = next(n for n, s in self.compose["services"].items()
                               if str(s.get("image", "")).startswith("redis:"))
        self.redis_process: subprocess.Popen | None = None
        self.process: subprocess.Popen | None = None
        self.log = tmp / "gunicorn.log"

    # -------- redis, with the compose service's own command
    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (.ci/run installs it)")
        argv = command_argv(self.compose["services"][self.redis_name]["command"])
        assert argv[0] == "redis-server"
        port = free_port()
        (self.tmp / "redis").mkdir()
        self.redis_process = subprocess.Popen(
            [binary, *argv[1:], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.tmp / "redis")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=port, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or self.redis_process.poll() is not None:
                    raise RuntimeError("redis-server with the compose command did not start") from None
                time.sleep(0.05)
        settings = redis.Redis(port=port, decode_responses=True).config_get("append*")
        assert (settings["appendonly"], settings["appendfsync"]) == ("yes", "everysec")
        return f"redis://127.0.0.1:{port}/0"

    # -------- the api, as the container runs it
    def command(self) -> list[str]:
        argv = self.runtime.all("CMD")[-1].exec_form()
        if "command" in self.api:
            argv = command_argv(self.api["command"])
        assert argv[0] == "gunicorn"
        return [str(VENV_BIN / "gunicorn"), *argv[1:]]

    def environment(self, redis_url: str) -> dict[str, str]:
        env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(self.tmp), "LANG": "C.UTF-8"}
        env.update(self.runtime.env())                              # the image's ENV
        env.update(resolved_environment(self.api, SHELL_ENV))       # compose's environment
        self.port = free_port()
        env.update({                                                # what differs on this machine
            "BIND": f"127.0.0.1:{self.port}",
            "REDIS_URL": redis_url,
            "RULES_DIR": str(RULES_DIR),
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "metrics"),
            "HOME": str(self.tmp),          # gunicorn's control socket: this run's own, not /tmp's
        })
        if not os.access(env.get("WORKER_TMP_DIR") or "/tmp", os.W_OK):
            env["WORKER_TMP_DIR"] = str(self.tmp)
        self.env = env
        return env

    def start(self) -> None:
        redis_url = self.start_redis()
        env = self.environment(redis_url)
        assert env["REDIS_URL"].startswith("redis://127.0.0.1:")
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.output()}")
            try:
                if http("GET", self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer /healthz:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        for process in (self.process, self.redis_process):
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGKILL) if process is self.process else process.kill()
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)      # any worker left behind
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("compose-smoke"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_healthchecks_of_the_dockerfile_and_compose_pass(stack):
    for name, argv in (("Dockerfile HEALTHCHECK", healthcheck_command(stack.runtime)),
                       ("compose api healthcheck", stack.api["healthcheck"]["test"][1:])):
        assert argv[0] == "python"
        result = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"{name} failed: {result.stderr}"


def test_decide_with_the_client_key(stack):
    doc = payload()
    doc["user_id"] = f"smoke-{uuid.uuid4().hex[:12]}"
    doc["application_id"] = f"app-{uuid.uuid4().hex[:12]}"
    request_id = f"smoke-{uuid.uuid4().hex}"
    status, body, headers = http("POST", stack.url + "/decide", doc,
                                 {"X-API-Key": CLIENT_KEY, "X-Request-ID": request_id})
    assert status == 200, body
    decision = body
    assert decision["outcome"] == "approved"
    assert (decision["user_id"], decision["application_id"]) == (doc["user_id"], doc["application_id"])
    assert headers["X-Request-ID"] == request_id          # what nginx passes through is kept
    status, body, _ = http("POST", stack.url + "/decide", doc, {"X-API-Key": "not-a-key"})
    assert status == 401, "API_KEYS from compose is not enforced"


def test_readyz(stack):
    status, body, _ = http("GET", stack.url + "/readyz")
    assert status == 200, body
    assert body["status"] == "ready"


def test_metrics(stack):
    status, body, headers = http("GET", stack.url + "/metrics")
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("text/plain")
    assert "decisions_total" in body


def test_sigterm_stops_gunicorn_cleanly_within_graceful_timeout(stack):
    process = stack.process
    graceful = int(stack.env["GRACEFUL_TIMEOUT"])
    os.kill(process.pid, signal.SIGTERM)                 # docker stop signals PID 1 only
    started = time.monotonic()
    try:
        code = process.wait(timeout=graceful + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gunicorn still running {graceful + 5} s after SIGTERM:\n{stack.output()}")
    assert code == 0, stack.output()
    assert time.monotonic() - started < graceful + 5
    # no worker outlives the master: a worker that exited with it may still wait a moment to
    # be reaped (signal 0 reaches a zombie), so the group has a few seconds to be gone
    gone_by = time.monotonic() + 3
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < gone_by, "a process of gunicorn's group outlived the master"
        time.sleep(0.05)
    output = stack.output()
    assert "Traceback" not in output, output
    assert "Shutting down" in output or "Handling signal: term" in output


def test_gunicorn_refuses_the_embedded_store_with_several_workers(tmp_path):
    """Without REDIS_URL each worker would keep its own state: gunicorn must not start."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(WORKERS="2", BIND="127.0.0.1:0", PROMETHEUS_MULTIPROC_DIR=str(tmp_path), HOME=str(tmp_path))
    result = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "-c", "docker/gunicorn.conf.py",
                             "service.entrypoints.wsgi:app"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr
