"""The deployment files, read as Docker, Compose and nginx read them (no engine needed).

Dockerfile: two stages, the compiler only in the builder, Python 3.11/3.12 slim, a non-root
user, a curl-free HEALTHCHECK on /healthz, gunicorn as PID 1 in exec form, the rules baked in.
Compose: Redis with AOF on a named volume, healthchecks and depends_on service_healthy,
restart policies, the exports volume, REDIS_URL on the redis service, secrets from the
environment. Replicas: two api replicas behind nginx, which keeps or makes X-Request-ID.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import runpy
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    COMPOSE,
    COMPOSE_REPLICAS,
    GUNICORN_CMD,
    GUNICORN_CONF,
    NGINX_CONF,
    ROOT,
    MissingVariable,
    Stage,
    command_argv,
    duration_seconds,
    environment,
    healthcheck_command,
    ignored,
    interpolate,
    load_compose,
    resolved_environment,
)

COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|python3?-dev)\b")
SLIM_PYTHON = re.compile(r"^(docker\.io/(library/)?)?python:3\.1[12](\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]+)?$")
REQUIRED_ENV = ["REDIS_URL", "WORKERS", "TIMEOUT", "GRACEFUL_TIMEOUT", "MAX_REQUESTS", "LOG_LEVEL",
                "RETENTION_DAYS", "ADMIN_API_KEY", "RULES_DIR"]
SECRETS = ["API_KEYS", "ADMIN_API_KEY"]
SHELL_ENV = {"API_KEYS": "k1,k2", "ADMIN_API_KEY": "admin-k"}   # what .env would hold


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def image_requirements() -> list[str]:
    """What the image installs: the dependencies, the `dask` extra (replay --engine dask) and the
    `parquet` extra (log export --format parquet, Parquet replay inputs)."""
    extras = pyproject()["project"]["optional-dependencies"]
    return pyproject()["project"]["dependencies"] + extras["dask"] + extras["parquet"]


def final(dockerfile: list[Stage]) -> Stage:
    return dockerfile[-1]


# ================================================================ Dockerfile

def test_multi_stage_with_the_compiler_only_in_the_builder(dockerfile):
    assert len(dockerfile) >= 2, "the Dockerfile must have a build stage and a runtime stage"
    builders = [s for s in dockerfile[:-1] if COMPILERS.search(s.run_text())]
    assert builders, "no build stage installs gcc/build-essential (durable_rules compiles C)"
    runtime = final(dockerfile)
    assert not COMPILERS.search(runtime.run_text()), "the runtime stage installs a compiler"
    assert "apt-get install" not in runtime.run_text()
    # the runtime stage is not built FROM the builder (that would carry gcc along)
    assert runtime.image not in {s.name for s in dockerfile[:-1] if s.name}


def test_python_pinned_to_a_version_durable_rules_builds_on(dockerfile):
    for stage in dockerfile:
        assert SLIM_PYTHON.match(stage.image), f"{stage.image}: want python:3.11-slim or 3.12-slim"
    requires = pyproject()["project"]["requires-python"]
    assert "<3.13" in requires.replace(" ", "")


def test_builder_makes_wheels_of_the_project_and_every_dependency(dockerfile):
    builder = next(s for s in dockerfile[:-1] if COMPILERS.search(s.run_text()))
    runs = builder.run_text()
    assert re.search(r"pip wheel .*(--wheel-dir[ =]|-w )/wheels", runs)
    assert re.search(r"pip wheel [^\n]*(--wheel-dir[ =]|-w )/wheels[^\n]* \.\s*$", runs, re.M), \
        "the project itself is not built into a wheel"
    copies = {c.flags()[1].split()[0] for c in builder.all("COPY")} | {
        w for c in builder.all("COPY") for w in c.flags()[1].split()[:-1]}
    for needed in ("pyproject.toml", "service", "schemas", "README.md"):   # readme: project metadata
        assert any(c.rstrip("/") == needed for c in copies), f"builder does not copy {needed}"


def test_builder_dependency_list_is_pyprojects(dockerfile, tmp_path):
    """Run the builder's own command that turns pyproject.toml into requirements.txt."""
    builder = next(s for s in dockerfile[:-1] if COMPILERS.search(s.run_text()))
    run = next(r.args for r in builder.all("RUN") if "requirements.txt" in r.args)
    command = run.split(" > requirements.txt")[0]
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=30, check=True)
    assert result.stdout.split() == image_requirements()


def test_runtime_installs_the_wheels_offline(dockerfile):
    runs = final(dockerfile).run_text()
    install = re.search(r"pip install ([^\n&]*)", runs)
    assert install, "the runtime stage does not pip install"
    assert "--no-index" in install.group(1) and "/wheels" in install.group(1)
    from_builder = [i for i in final(dockerfile).instructions if "from=builder" in i.args
                    or f"from={dockerfile[0].name}" in i.args]
    assert from_builder, "the wheels are not taken from the build stage"


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_with(requirements: list[str]) -> set[str]:
    """The distributions `pip install` of these requirements brings in (their closure)."""
    from packaging.requirements import Requirement

    found: set[str] = set()
    queue = [Requirement(r) for r in requirements]
    while queue:
        requirement = queue.pop()
        name = _canonical(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in found:
            continue
        found |= {key, name}
        try:
            needs = importlib.metadata.distribution(requirement.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in needs:
            need = Requirement(text)
            if need.marker is None or any(need.marker.evaluate({"extra": extra})
                                          for extra in ("", *requirement.extras)):
                queue.append(need)
    return found


# Extras the image leaves out, and the one module that may import each: bootstrap imports it
# only when its setting asks for it, and says so at start-up when the extra is missing.
NOT_IN_IMAGE = {"opentelemetry": ROOT / "service" / "adapters" / "otel_tracing.py"}


def test_every_third_party_import_is_installed_by_the_declared_dependencies():
    """The image installs the declared dependencies (and theirs) and nothing else: what the
    service, the schemas or gunicorn.conf.py import must come with pyproject's dependencies
    (or be an extra the image leaves out, imported by its one optional module only)."""
    files = [*sorted((ROOT / "service").rglob("*.py")), *sorted((ROOT / "schemas").rglob("*.py")),
             GUNICORN_CONF]
    by_file = {f: _top_level_imports(f) for f in files}
    for module, only in NOT_IN_IMAGE.items():
        assert {f for f, names in by_file.items() if module in names} == {only}, module
        by_file[only] = by_file[only] - {module}
    imported = set().union(*by_file.values())
    third_party = imported - set(sys.stdlib_module_names) - {"service", "schemas", "__future__"}
    installed = _installed_with(image_requirements())
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party):
        owners = {_canonical(d) for d in distributions.get(module, [])}
        if not owners & installed:
            missing[module] = sorted(owners) or "not installed"
    assert not missing, f"imported, but not installed by the image's requirements: {missing}"


def test_runs_as_a_non_root_user(dockerfile):
    runtime = final(dockerfile)
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].args.split(":")[0].strip()
    assert user not in ("root", "0", ""), f"USER {users[-1].args}"
    last_run = max((i.line for i in runtime.all("RUN")), default=0)
    assert users[-1].line > last_run, "USER must come after the RUN steps, so it is the runtime user"
    if not user.isdigit():
        assert re.search(rf"useradd .*\b{re.escape(user)}\b", runtime.run_text()), \
            f"user {user} is not created in the runtime stage"


def test_healthcheck_on_healthz_without_curl(dockerfile):
    runtime = final(dockerfile)
    argv = healthcheck_command(runtime)
    joined = " ".join(argv)
    assert "/healthz" in joined
    assert not re.search(r"\b(curl|wget)\b", joined)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<HEALTHCHECK>", "exec")
    options, _ = runtime.all("HEALTHCHECK")[0].flags()
    assert duration_seconds(options.get("timeout", "30s")) <= duration_seconds(options.get("interval", "30s"))


def test_gunicorn_is_pid_1_in_exec_form(dockerfile):
    runtime = final(dockerfile)
    cmds = runtime.all("CMD")
    assert cmds, "no CMD"
    argv = cmds[-1].exec_form()
    assert argv is not None, "CMD must be exec form (a JSON array), so gunicorn is PID 1"
    assert argv == GUNICORN_CMD
    assert not runtime.all("ENTRYPOINT"), "an ENTRYPOINT would wrap gunicorn (not PID 1)"
    workdir = runtime.all("WORKDIR")[-1].args
    assert workdir == "/app"
    assert _copied_to(runtime, "docker/gunicorn.conf.py", workdir) == "/app/docker/gunicorn.conf.py"


def _copied_to(stage: Stage, source: str, workdir: str) -> str | None:
    """Where COPY puts `source` (a file or directory) in the image."""
    for inst in stage.all("COPY"):
        options, rest = inst.flags()
        if "from" in options:
            continue
        words = inst.exec_form() or rest.split()
        *sources, dest = words
        if any(s.rstrip("/") == source.rstrip("/") for s in sources):
            target = dest if dest.startswith("/") else f"{workdir}/{dest}"
            target = os.path.normpath(target)
            if dest.endswith("/") and not source.endswith("/") and (ROOT / source).is_file():
                target = f"{target}/{Path(source).name}"
            return target
    return None


def test_rules_are_baked_in_and_named_by_rules_dir(dockerfile):
    runtime = final(dockerfile)
    assert _copied_to(runtime, "rules", "/app") == "/app/rules"
    assert runtime.env()["RULES_DIR"] == "/app/rules"
    assert not [v for v in runtime.all("VOLUME") if "/app/rules" in v.args], \
        "an anonymous volume on /app/rules would keep old rules across upgrades"


def test_python_and_metrics_environment(dockerfile):
    runtime = final(dockerfile)
    env = runtime.env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR")
    assert metrics_dir and metrics_dir.startswith("/")
    user = runtime.all("USER")[-1].args.split(":")[0]
    runs = runtime.run_text()
    assert re.search(rf"mkdir -p [^\n&]*{re.escape(metrics_dir)}\b", runs)
    assert re.search(rf"chown [^\n&]*\b{re.escape(user)}\b[^\n&]*{re.escape(metrics_dir)}\b", runs), \
        f"{metrics_dir} is not given to {user}"
    home = env.get("HOME", "/app")      # gunicorn >= 25 makes $HOME/.gunicorn (control socket)
    assert home == "/tmp" or re.search(rf"chown [^\n&]*\b{re.escape(user)}\b[^\n&]*{re.escape(home)}\b", runs), \
        f"HOME={home} is not writable by {user}"


def test_exposes_8000(dockerfile):
    ports = " ".join(e.args for e in final(dockerfile).all("EXPOSE")).split()
    assert "8000" in ports or "8000/tcp" in ports


def test_every_copied_file_exists_and_is_in_the_build_context(dockerfile):
    copied = []
    for stage in dockerfile:
        for inst in stage.all("COPY") + stage.all("ADD"):
            options, rest = inst.flags()
            if "from" in options:
                continue
            *sources, _ = inst.exec_form() or rest.split()
            copied += sources
    assert copied
    for source in copied:
        path = source.rstrip("/") or "."
        assert (ROOT / path).exists(), f"COPY {source}: no such file in the repo"
        assert not ignored(path), f"COPY {source}: excluded by .dockerignore"
    for needed in ("service/entrypoints/http/app.py", "schemas/request.py", "rules/products.yaml",
                   "docker/gunicorn.conf.py", "pyproject.toml", "README.md"):
        assert not ignored(needed), f"{needed} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out():
    for path in (".venv", ".git", "bench/out", "service/__pycache__", "__pycache__",
                 ".pytest_cache", ".hypothesis", ".env"):
        assert ignored(path), f"{path} is sent to the docker build context"


# ================================================================ gunicorn.conf.py

def _gunicorn_settings(monkeypatch, tmp_path, **env) -> dict:
    for name in ("BIND", "WORKERS", "TIMEOUT", "GRACEFUL_TIMEOUT", "MAX_REQUESTS", "KEEPALIVE",
                 "MAX_REQUESTS_JITTER", "WORKER_TMP_DIR", "LOG_LEVEL", "ACCESS_LOG", "WORKER_CLASS",
                 "WORKER_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf_from_the_environment(monkeypatch, tmp_path):
    conf = _gunicorn_settings(monkeypatch, tmp_path, WORKERS="3", TIMEOUT="41", GRACEFUL_TIMEOUT="17",
                              MAX_REQUESTS="123", BIND="127.0.0.1:9", WORKER_TMP_DIR="/dev/shm")
    assert conf["worker_class"] == "service.entrypoints.gunicorn_worker.JsonGeventWorker" and conf["threads"] == 1
    assert conf["preload_app"] is True
    assert (conf["workers"], conf["timeout"], conf["graceful_timeout"], conf["max_requests"]) == (3, 41, 17, 123)
    assert conf["bind"] == "127.0.0.1:9" and conf["worker_tmp_dir"] == "/dev/shm"
    assert (tmp_path / "metrics").is_dir()


def test_gunicorn_conf_defaults_and_setting_names(monkeypatch, tmp_path):
    from gunicorn.config import KNOWN_SETTINGS

    conf = _gunicorn_settings(monkeypatch, tmp_path)
    assert conf["bind"] == "0.0.0.0:8000"
    # gevent: slow clients must not hold the workers
    assert conf["worker_class"] == "service.entrypoints.gunicorn_worker.JsonGeventWorker"
    assert conf["worker_connections"] >= 200 and conf["preload_app"] is True
    sync = _gunicorn_settings(monkeypatch, tmp_path, WORKER_CLASS="sync")
    assert sync["worker_class"] == "service.entrypoints.gunicorn_worker.JsonSyncWorker"
    # gunicorn's own lines, in both ways the service runs, through the masking JSON formatter
    assert conf["logger_class"] == sync["logger_class"] == "service.entrypoints.gunicorn_worker.JsonLogger"
    assert conf["graceful_timeout"] < conf["timeout"]
    known = {s.name for s in KNOWN_SETTINGS}
    names = {k for k, v in conf.items() if not k.startswith("_") and not callable(v)
             and type(v).__name__ != "module"}
    assert not names - known, f"not gunicorn settings (typos?): {names - known}"
    hooks = {k for k, v in conf.items() if callable(v) and not k.startswith("_")
             and type(v).__name__ == "function"}
    assert hooks <= known, f"not gunicorn hooks: {hooks - known}"
    assert {"on_starting", "child_exit"} <= hooks, "prometheus multiprocess clean-up hooks"


# ================================================================ compose files

@pytest.fixture(params=[COMPOSE, COMPOSE_REPLICAS], ids=["compose", "replicas"])
def any_compose(request) -> dict:
    return load_compose(request.param)


def _api(doc: dict) -> tuple[str, dict]:
    """The service built from this repo's Dockerfile."""
    found = [(name, s) for name, s in doc["services"].items() if "build" in s]
    assert len(found) == 1, "one service builds the image (the api)"
    return found[0]


def _redis(doc: dict) -> tuple[str, dict]:
    found = [(name, s) for name, s in doc["services"].items()
             if str(s.get("image", "")).split(":")[0] in ("redis", "docker.io/library/redis")]
    assert len(found) == 1, "one redis service"
    return found[0]


def test_redis_has_aof_on_a_named_volume(any_compose):
    name, redis = _redis(any_compose)
    assert redis["image"] in ("redis:7", "redis:7-alpine") or re.match(r"redis:7(\.\d+)*(-\w+)?$", redis["image"])
    argv = command_argv(redis["command"])
    assert argv[0] == "redis-server"
    options = " ".join(argv[1:])
    assert re.search(r"--appendonly\s+yes\b", options)
    assert re.search(r"--appendfsync\s+everysec\b", options)
    mounts = [v.split(":") if isinstance(v, str) else [v["source"], v["target"]] for v in redis["volumes"]]
    data = [m for m in mounts if m[1] == "/data"]
    assert data and data[0][0] == "redis-data"
    assert "redis-data" in any_compose["volumes"], "redis-data must be a named (top-level) volume"
    assert "ports" not in redis, "Redis is for the services on the compose network only"


def test_healthchecks(any_compose):
    _, api = _api(any_compose)
    test = api["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", "exec form: no shell needed"
    assert test[1:3] == ["python", "-c"]
    assert re.search(r"/(readyz|healthz)\b", test[3])
    assert "$" not in test[3], "compose would interpolate it"
    compile(test[3], "<api healthcheck>", "exec")
    assert not re.search(r"\b(curl|wget)\b", " ".join(test))
    _, redis = _redis(any_compose)
    assert re.search(r"redis-cli\s+ping", " ".join(redis["healthcheck"]["test"]))
    for service in any_compose["services"].values():
        check = service.get("healthcheck")
        assert check and check.get("test"), "every service has a healthcheck"
        assert duration_seconds(check["timeout"]) < duration_seconds(check["interval"])


def test_depends_on_healthy(any_compose):
    redis_name, _ = _redis(any_compose)
    _, api = _api(any_compose)
    assert api["depends_on"][redis_name]["condition"] == "service_healthy"


def test_restart_policies(any_compose):
    for name, service in any_compose["services"].items():
        assert service.get("restart") == "unless-stopped", name


def test_exports_volume(any_compose):
    _, api = _api(any_compose)
    mounts = [v.split(":") for v in api["volumes"]]
    exports = [m for m in mounts if m[1] == "/app/exports"]
    assert exports, "no volume on /app/exports"
    source = exports[0][0]
    assert source.startswith((".", "/")) or source in any_compose["volumes"]


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_REPLICAS], ids=["compose", "replicas"])
def test_rules_override_is_documented(path):
    assert re.search(r"^\s*#?\s*- \./rules:/app/rules:ro\s*$", path.read_text(), re.M), \
        "show (commented or not) how to mount other rules over /app/rules"
    _, api = _api(load_compose(path))
    for volume in api.get("volumes", []):
        if volume.split(":")[1] == "/app/rules":
            assert volume.endswith(":ro")


def test_redis_url_names_the_redis_service(any_compose):
    redis_name, _ = _redis(any_compose)
    _, api = _api(any_compose)
    url = interpolate(environment(api)["REDIS_URL"], {})
    assert re.fullmatch(rf"redis://{re.escape(redis_name)}:6379/\d+", url), url


def test_api_runs_the_images_command(any_compose, dockerfile):
    _, api = _api(any_compose)
    assert "entrypoint" not in api
    if "command" in api:
        assert command_argv(api["command"]) == GUNICORN_CMD
    assert api["build"] in (".", "./") or api["build"]["context"] in (".", "./")
    assert api["image"].startswith("loan-decide:")


def test_api_environment(any_compose, dockerfile):
    _, api = _api(any_compose)
    raw = environment(api)
    for name in REQUIRED_ENV:
        assert name in raw, f"{name} is not set"
    assert "API_KEYS" in raw or "API_KEYS_FILE" in raw
    for name in SECRETS:
        if name in raw:
            assert raw[name] is None or raw[name].startswith("${" + name), \
                f"{name} must come from the environment, not be written in the file"
    env = resolved_environment(api, SHELL_ENV)
    assert env["API_KEYS"] == "k1,k2" and env["ADMIN_API_KEY"] == "admin-k"
    assert env["RULES_DIR"] == final(dockerfile).env()["RULES_DIR"] == "/app/rules"
    assert env["LOG_LEVEL"].upper() == env["LOG_LEVEL"], "the app's logging wants INFO, not info"
    for name in ("WORKERS", "TIMEOUT", "GRACEFUL_TIMEOUT", "MAX_REQUESTS", "RETENTION_DAYS"):
        assert int(env[name]) > 0
    shell = {"WORKERS": "7", "GRACEFUL_TIMEOUT": "9", **SHELL_ENV}
    overridden = resolved_environment(api, shell)
    assert (overridden["WORKERS"], overridden["GRACEFUL_TIMEOUT"]) == ("7", "9")
    # no client keys: compose refuses to start rather than run an API open to anyone
    with pytest.raises(MissingVariable):
        resolved_environment(api, {})


def test_stop_grace_period_covers_graceful_timeout(any_compose):
    _, api = _api(any_compose)
    graceful = int(resolved_environment(api, SHELL_ENV)["GRACEFUL_TIMEOUT"])
    assert duration_seconds(api["stop_grace_period"]) >= graceful + 5


def test_single_instance_is_published_on_8000_through_nginx(compose):
    """nginx, a buffering proxy, faces the clients: slow ones cannot hold gunicorn's workers."""
    api_name, api = _api(compose)
    assert "ports" not in api, "clients reach gunicorn through nginx only"
    nginx = compose["services"]["nginx"]
    ports = [interpolate(str(p), {}) for p in nginx["ports"]]
    assert "8000:80" in ports
    assert "9000:80" in [interpolate(str(p), {"PUBLISH_PORT": "9000"}) for p in nginx["ports"]]
    assert nginx["depends_on"][api_name]["condition"] == "service_healthy"
    assert nginx == {**_replicas_nginx(), "ports": nginx["ports"]}


def _replicas_nginx() -> dict:
    return load_compose(COMPOSE_REPLICAS)["services"]["nginx"]


# ================================================================ replicas + nginx

def test_two_api_replicas_behind_nginx(compose, compose_replicas):
    api_name, api = _api(compose_replicas)
    assert api.get("deploy", {}).get("replicas") == 2
    assert "ports" not in api, "replicas publishing one host port would collide"
    assert "container_name" not in api
    nginx = compose_replicas["services"]["nginx"]
    image, _, tag = nginx["image"].partition(":")
    assert image in ("nginx", "docker.io/library/nginx")
    assert "8080:80" in [interpolate(str(p), {}) for p in nginx["ports"]]
    assert nginx["depends_on"][api_name]["condition"] == "service_healthy"
    assert "./docker/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    # the replicas run with the single instance's settings
    assert environment(api) == environment(_api(compose)[1])
    assert api["healthcheck"] == _api(compose)[1]["healthcheck"]
    assert _redis(compose_replicas)[1]["command"] == _redis(compose)[1]["command"]
    assert compose_replicas.get("name") != compose.get("name"), \
        "the two stacks must not share containers and volumes"


def _nginx_tokens(text: str) -> list[str]:
    text = re.sub(r"(?m)^\s*#.*$|(?<=\s)#.*$", "", text)
    return re.findall(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[{};]|[^\s{};]+", text)


def _nginx_parse(tokens: list[str], pos: int = 0) -> tuple[list, int]:
    """nginx.conf as [(directive, [args], children or None)]."""
    out = []
    words: list[str] = []
    while pos < len(tokens):
        token = tokens[pos]
        pos += 1
        if token == ";":
            assert words, "empty statement"
            out.append((words[0], words[1:], None))
            words = []
        elif token == "{":
            children, pos = _nginx_parse(tokens, pos)
            out.append((words[0], words[1:], children))
            words = []
        elif token == "}":
            assert not words, f"missing ';' after {words}"
            return out, pos
        else:
            words.append(token)
    assert not words, f"missing ';' after {words}"
    return out, pos


def _find(block: list, name: str) -> list:
    return [d for d in block if d[0] == name]


def _walk(block: list):
    for directive in block:
        yield directive
        if directive[2]:
            yield from _walk(directive[2])


@pytest.fixture(scope="module")
def nginx_conf() -> list:
    tokens = _nginx_tokens(NGINX_CONF.read_text())
    assert tokens.count("{") == tokens.count("}")
    tree, end = _nginx_parse(tokens)
    assert end == len(tokens)
    return tree


def test_nginx_upstream_is_the_api_service(nginx_conf, compose_replicas):
    api_name, _ = _api(compose_replicas)
    upstreams = {args[0]: children for name, args, children in nginx_conf if name == "upstream"}
    variables = {args[0]: args[1] for name, args, _ in _walk(nginx_conf) if name == "set"}
    passes = [variables.get(args[0], args[0]) for name, args, _ in _walk(nginx_conf)
              if name == "proxy_pass"]
    assert passes and all(p.startswith("http://") for p in passes)
    for target in passes:
        if target.removeprefix("http://") == f"{api_name}:8000":
            # a name in a variable: resolved while nginx runs, every replica's address used
            assert _find(nginx_conf, "resolver"), "proxy_pass with a variable needs a resolver"
            continue
        servers = upstreams[target.removeprefix("http://").rstrip("/")]
        addresses = [args[0] for name, args, _ in servers if name == "server"]
        assert addresses == [f"{api_name}:8000"]
        flags = [args for name, args, _ in servers if name == "server"][0]
        if "resolve" in flags:
            assert _find(servers, "zone"), "`resolve` needs a shared-memory zone"
            assert _find(nginx_conf, "resolver"), "`resolve` needs a resolver"


def test_nginx_keeps_or_makes_the_request_id_and_passes_the_keys(nginx_conf):
    maps = {args[1]: children for name, args, children in nginx_conf if name == "map"
            and args[0] == "$http_x_request_id"}
    assert len(maps) == 1, "a map from $http_x_request_id to the id to send"
    (variable, entries), = maps.items()
    table = {name: args for name, args, _ in entries}
    assert table["default"] == ["$http_x_request_id"]
    assert table['""'] == ["$request_id"]
    headers = {}
    for location in (d for d in _walk(nginx_conf) if d[0] == "location" and d[2]):
        if not _find(location[2], "proxy_pass"):
            continue
        headers = {args[0].lower(): args[1] for name, args, _ in location[2] if name == "proxy_set_header"}
        assert headers["x-request-id"] == variable
        assert headers.get("x-api-key", "$http_x_api_key") == "$http_x_api_key", "X-API-Key is not passed through"
        assert headers.get("x-admin-key", "$http_x_admin_key") == "$http_x_admin_key"
        assert "underscores_in_headers" not in {d[0] for d in _walk(nginx_conf)}
    assert headers, "no proxying location"
    (limit,) = [args for name, args, _ in _walk(nginx_conf) if name == "client_max_body_size"]
    assert limit == ["64k"]


def test_nginx_health_endpoint_matches_the_compose_healthcheck(nginx_conf, compose_replicas):
    test = " ".join(compose_replicas["services"]["nginx"]["healthcheck"]["test"])
    path = re.search(r"GET (/\S*) HTTP", test).group(1)
    locations = {tuple(args): children for name, args, children in _walk(nginx_conf) if name == "location"}
    returns = [args for name, args, _ in locations[("=", path)] if name == "return"]
    assert returns and returns[0][0] == "200"
    assert not re.search(r"\b(curl|wget)\b", test)
