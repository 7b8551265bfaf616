#!/usr/bin/env bash
# Build the service image with the daemon's BuildKit (the Dockerfile's RUN --mount needs it).
#
#   bash scripts/docker-build.sh [TAG]      # default loan-decide:latest
#
# The builder stage downloads wheels: when this host's pip is set to another index (PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST, or the same keys in pip's config files), the build uses
# it too, passed as build args. Only http(s) indexes: a file:// one is not inside the build.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-$(bash scripts/docker-engine.sh --cli)}
TAG=${1:-loan-decide:latest}

# the host's value for one pip setting: the environment first, then pip's config files
pip_setting() {
  local var=$1 key=$2 value
  value=${!var:-}
  [ -n "$value" ] || value=$(python3 -m pip config get "global.$key" 2>/dev/null || true)
  printf '%s\n' $value | grep -v '^file:' | paste -sd ' ' - || true
}

args=()
for pair in PIP_INDEX_URL:index-url PIP_EXTRA_INDEX_URL:extra-index-url PIP_TRUSTED_HOST:trusted-host; do
  value=$(pip_setting "${pair%%:*}" "${pair#*:}")
  [ -z "$value" ] || args+=(--build-arg "${pair%%:*}=$value")
done

started=$(date +%s)
DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain --label org.loan-decide.image=service \
  ${args[@]+"${args[@]}"} -t "$TAG" . >&2
# the image this tag named before, when the build replaced it (only ours: by the label)
"$DOCKER" image prune -f --filter label=org.loan-decide.image=service >/dev/null
echo "docker-build: $TAG built in $(( $(date +%s) - started )) s" >&2
