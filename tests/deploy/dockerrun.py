"""Helpers for the tests that run the image and the compose files for real (marker `docker`).

The engine, the compose plugin and the stand-in base images are set up by scripts/ (see
.ci/run): here they are only found, and the tests skip with the reason when they are missing.
Every stack runs under a project name of its own (never the files' `name:`), on a free host
port, and is taken down with its volumes before and after.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import payload
from tests.e2e.conftest import http
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "loan-decide:latest"
CLIENT_KEY = "docker-test-client-key"
ADMIN_KEY = "docker-test-admin-key"
BASE_IMAGES = ("python:3.11-slim-bookworm", "redis:7", "nginx:1.27", "prom/prometheus:v2.42.0")
UP_BOUND_S = 150          # `up --wait` must see every service healthy within this


def docker_cli() -> str:
    """The client scripts/docker-engine.sh picks (one that builds with the daemon's BuildKit)."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    result = subprocess.run(["bash", str(ROOT / "scripts" / "docker-engine.sh"), "--cli"],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def engine_missing() -> str | None:
    """Why the docker tests cannot run here, or None."""
    try:
        cli = docker_cli()
        info = subprocess.run([cli, "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"no docker client ({error})"
    if info.returncode != 0:
        return "no docker daemon answers (bash scripts/docker-engine.sh starts one)"
    if subprocess.run([cli, "compose", "version"], capture_output=True).returncode != 0:
        return "no compose plugin (bash scripts/docker-engine.sh installs it)"
    missing = [name for name in BASE_IMAGES
               if subprocess.run([cli, "image", "inspect", name], capture_output=True).returncode]
    if missing:
        return f"base images missing: {', '.join(missing)} (bash scripts/docker-standins.sh)"
    return None


def new_ids(prefix: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:12]
    return f"{prefix}-u-{tag}", f"{prefix}-a-{tag}"


def application(prefix: str, **applicant) -> dict:
    user_id, application_id = new_ids(prefix)
    return dict(payload(**applicant), user_id=user_id, application_id=application_id)


class Stack:
    """One compose file brought up under its own project name and host port."""

    def __init__(self, compose_file: str, project: str):
        self.cli = docker_cli()
        self.file = str(ROOT / compose_file)
        self.project = os.environ.get("DOCKER_TEST_PROJECT_PREFIX", "") + project   # parallel runs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prometheus_url = f"http://127.0.0.1:{free_port()}"    # the replicas stack's Prometheus
        self.env = {**os.environ, "API_KEYS": f"{CLIENT_KEY},other-client-key",
                    "ADMIN_API_KEY": ADMIN_KEY, "PUBLISH_PORT": str(self.port),
                    "PROMETHEUS_PORT": self.prometheus_url.rsplit(":", 1)[1]}
        self.up_seconds: list[float] = []

    def compose(self, *args: str, check: bool = True, timeout: float = 300,
                stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.cli, "compose", "-f", self.file, "-p", self.project, *args],
                                cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=timeout, input=stdin,
                                **({} if stdin is not None else {"stdin": subprocess.DEVNULL}))
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.logs()}")
        return result

    def logs(self, *services: str) -> str:
        result = subprocess.run([self.cli, "compose", "-f", self.file, "-p", self.project, "logs",
                                 "--no-color", *services], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=60)
        return result.stdout[-6000:] + result.stderr[-2000:]

    def up(self, *services: str) -> float:
        """Start (the image is built beforehand) and wait for every healthcheck; the seconds taken."""
        started = time.monotonic()
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_BOUND_S),
                     *services, timeout=UP_BOUND_S + 60)
        elapsed = time.monotonic() - started
        self.up_seconds.append(elapsed)
        return elapsed

    def down(self, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=180)

    def containers(self, service: str) -> list[dict]:
        """`docker compose ps` of one service, as dicts (Name, State, Health, ...)."""
        out = self.compose("ps", "--all", "--format", "json", service).stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def replica_addresses(self, service: str = "api") -> set[str]:
        """The compose-network addresses of a service's containers (what its name resolves to)."""
        names = [container["Name"] for container in self.containers(service)]
        out = subprocess.run([self.cli, "inspect", "--format",
                              "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", *names],
                             capture_output=True, text=True, check=True).stdout
        return set(out.split())

    def wait_ready(self, bound: float = 60) -> None:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                if http("GET", self.url + "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"/readyz not 200 within {bound} s:\n{self.logs()}")

    def decide(self, doc: dict, key: str | None = CLIENT_KEY, headers: dict | None = None):
        return http("POST", self.url + "/decide", doc,
                    {**({"X-API-Key": key} if key else {}), **(headers or {})})

    def get(self, path: str):
        return http("GET", self.url + path, None, {"X-API-Key": CLIENT_KEY})

    def exec_decide(self, index: int, doc: dict) -> tuple[int, dict]:
        """POST /decide from inside replica `index` of `api`, to its own gunicorn."""
        script = ("import json, sys, urllib.request, urllib.error\n"
                  "req = urllib.request.Request('http://127.0.0.1:8000/decide', data=sys.stdin.read().encode(),"
                  f" headers={{'Content-Type': 'application/json', 'X-API-Key': '{CLIENT_KEY}'}})\n"
                  "try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n"
                  "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n")
        out = self.compose("exec", "-T", "--index", str(index), "api", "python", "-c", script,
                           stdin=json.dumps(doc)).stdout
        status, _, body = out.partition("\n")
        return int(status), json.loads(body)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    reason = engine_missing()
    if reason:
        pytest.skip(f"docker tests skipped: {reason}")
    return docker_cli()


@pytest.fixture(scope="session")
def image(docker_engine) -> float:
    """The service image, built as a user would (scripts/docker-build.sh); the seconds taken."""
    started = time.monotonic()
    result = subprocess.run(["bash", str(ROOT / "scripts" / "docker-build.sh"), IMAGE], cwd=ROOT,
                            env={**os.environ, "DOCKER": docker_engine}, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, f"image build failed:\n{result.stderr[-6000:]}"
    return time.monotonic() - started


def stack_fixture(compose_file: str, project: str):
    """The module fixture `stack`: the stack up (after taking down any leftover of an earlier run)."""
    @pytest.fixture(scope="module", name="stack")
    def fixture(image):
        stack = Stack(compose_file, project)
        stack.down(volumes=True)
        try:
            stack.up()
            yield stack
        finally:
            stack.down(volumes=True)
    return fixture
