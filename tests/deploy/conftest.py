"""Readers for the deployment files: Dockerfile, .dockerignore, compose files, nginx.conf.

These static checks need no engine: the files are read the way Docker and Compose read them
(line continuations, exec form, `${VAR:-default}` interpolation) and checked, or their commands
run. The tests marked `docker` (test_compose_run.py, test_compose_replicas_run.py) run the image
and the compose files in a real engine.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_REPLICAS = ROOT / "docker-compose.replicas.yml"
NGINX_CONF = ROOT / "docker" / "nginx.conf"
GUNICORN_CONF = ROOT / "docker" / "gunicorn.conf.py"
GUNICORN_CMD = ["gunicorn", "-c", "docker/gunicorn.conf.py", "service.entrypoints.wsgi:app"]


# ---------------------------------------------------------------- Dockerfile

@dataclass
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY, ...
    args: str             # the rest of the instruction, continuations joined
    line: int             # where it starts (1-based)

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD ["a", "b"]), else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None    # Docker runs an invalid JSON array as a shell command
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading --flag=value options (COPY --from=..., HEALTHCHECK --interval=...) and the rest."""
        options: dict[str, str] = {}
        rest = self.args.strip()
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            options[name] = value
            rest = rest.lstrip()
        return options, rest


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV of this stage, in both forms (ENV A=1 B="two words" and ENV A 1)."""
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            words = shlex.split(inst.args)
            if words and "=" not in words[0]:
                out[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                key, _, value = word.partition("=")
                out[key] = value
        return out

    def run_text(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions as Docker reads them: parser directives and comment lines dropped
    (also inside a continued instruction), lines ending in a backslash joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[Stage]:
    out: list[Stage] = []
    for inst in instructions:
        if inst.keyword == "FROM":
            _, rest = inst.flags()
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            out.append(Stage(words[0], name))
        elif out:
            out[-1].instructions.append(inst)
        else:
            assert inst.keyword in ("ARG",), f"{inst.keyword} before the first FROM"
    return out


@pytest.fixture(scope="session")
def dockerfile() -> list[Stage]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def healthcheck_command(stage: Stage) -> list[str]:
    (inst,) = stage.all("HEALTHCHECK")
    _, rest = inst.flags()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK must be CMD ...: {inst.args}"
    argv = Instruction("CMD", command, inst.line).exec_form()
    assert argv is not None, "HEALTHCHECK CMD must be exec form (a JSON array)"
    return argv


# ---------------------------------------------------------------- .dockerignore

def _glob_regex(pattern: str) -> re.Pattern:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        line = re.sub(r"^\./", "", line)
        rules.append((negate, _glob_regex(line)))
    return rules


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context: the
    last pattern that matches it or one of its parent directories decides."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            result = not negate
    return result


# ---------------------------------------------------------------- compose

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
                  r"|([A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(KeyError):
    pass


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+alternative}, ${VAR+alternative}."""
    def replace(match: re.Match) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        operator, argument = match.group(3), match.group(4) or ""
        is_set = name in environ
        current = environ.get(name, "")
        if operator is None:
            return current
        empty_counts = operator.startswith(":")
        present = is_set and (current != "" or not empty_counts)
        kind = operator[-1]
        if kind == "-":
            return current if present else interpolate(argument, environ)
        if kind == "?":
            if not present:
                raise MissingVariable(f"{name}: {argument}")
            return current
        return interpolate(argument, environ) if present else ""
    return _VAR.sub(replace, value)


def load_compose(path: Path) -> dict:
    with path.open() as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="session")
def compose_replicas() -> dict:
    return load_compose(COMPOSE_REPLICAS)


def environment(service: dict) -> dict[str, str]:
    """A service's `environment`, in either of compose's forms, values not yet interpolated."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, sep, value = item.partition("=")
            out[key] = value if sep else None
        return out
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def resolved_environment(service: dict, environ: dict[str, str]) -> dict[str, str]:
    """The environment the container gets, as `docker compose` would interpolate it from the
    shell/.env values in `environ` (a bare KEY takes the shell's value, or is left out)."""
    out = {}
    for key, value in environment(service).items():
        if value is None:
            if key in environ:
                out[key] = environ[key]
        else:
            out[key] = interpolate(value, environ)
    return out


def command_argv(value) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def duration_seconds(text: str) -> float:
    """A compose duration (1m30s, 30s, 500ms, 1h)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text}"
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------- the docker tests' fixtures
# (a real engine: tests/deploy/dockerrun.py; one image build for the whole session)
from tests.deploy.dockerrun import docker_engine, image  # noqa: E402,F401
