#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfile and the compose files name, for machines
# that reach Debian's packages but no image registry:
#   python:3.11-slim-bookworm  debootstrap --variant=minbase bookworm + python3, venv, pip, dev
#                              headers, ca-certificates; `python`/`pip` in /usr/local/bin
#   redis:7                    that base + Debian's redis-server, run as the official image
#                              runs it (entrypoint adds --protected-mode no, WORKDIR /data)
#   nginx:1.27                 that base + Debian's nginx (1.22), laid out as the official image
#                              (conf.d/ only, logs to stdout/stderr, `nginx -g 'daemon off;'`).
#                              docker/nginx.conf needs nothing newer than 1.22.
#   prom/prometheus:v2.42.0    that base + Debian's prometheus (2.42.0, the tag's version), laid
#                              out as the official image (config /etc/prometheus/prometheus.yml,
#                              data /prometheus, entrypoint prometheus, user nobody); with wget,
#                              which the official image's busybox has, for the healthcheck
# Idempotent: an image that already exists under one of these names is kept (a real one pulled
# from a registry, or a stand-in of this script's current version); FORCE=1 rebuilds stand-ins.
# The machine's CA bundle is copied into the base: package downloads made inside a build may go
# through a TLS proxy whose CA only the host trusts. The Debian mirror is the host's own (apt).
#
#   bash scripts/docker-standins.sh          # needs a running engine: scripts/docker-engine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-$(bash scripts/docker-engine.sh --cli)}
export DOCKER_BUILDKIT=1
LABEL=org.loan-decide.stand-in
VERSION=1                      # bump when a stand-in's recipe changes: older ones are rebuilt
SUITE=bookworm
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { echo "docker-standins: $*" >&2; }

# "keep" when NAME exists and is not an older stand-in (FORCE=1: stand-ins are always rebuilt)
keep() {
  local found
  found=$("$DOCKER" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null) || return 1
  case "$found" in
    "") log "$1: a real image is present, kept"; return 0 ;;
    "$VERSION") [ "${FORCE:-0}" = 1 ] && return 1; log "$1: stand-in v$VERSION present, kept"; return 0 ;;
    *) return 1 ;;
  esac
}

# The host's Debian mirror for the suite (no mirror name written here).
mirror() {
  local site
  site=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null \
         | awk -v s="$SUITE" '$2 == s { print $1; exit }')
  [ -n "$site" ] || { log "no apt source for $SUITE on this host: set MIRROR"; exit 1; }
  echo "$site"
}

base_image() {
  local name=python:3.11-slim-bookworm root
  keep "$name" && return 0
  command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
  root=$(mktemp -d /var/tmp/loan-decide-rootfs.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  log "$name: debootstrap $SUITE into $root"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python3-dev,ca-certificates \
    "$SUITE" "$root" "${MIRROR:-$(mirror)}" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip3"
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  # the host's CA bundle, kept by a later update-ca-certificates too
  install -m 644 "$CA_BUNDLE" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
  install -m 644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $LABEL=$VERSION" \
    --change 'CMD ["python3"]' \
    - "$name" >/dev/null
  log "$name: imported ($("$DOCKER" run --rm "$name" python --version))"
}

# Build NAME from the base with a Dockerfile given on stdin (no context).
build() {
  local name=$1
  keep "$name" && return 0
  log "$name: building"
  "$DOCKER" build --quiet --label "$LABEL=$VERSION" -t "$name" - >/dev/null
  log "$name: built"
}

redis_image() {
  build redis:7 <<'EOF'
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data \
 && printf '%s\n' '#!/bin/sh' 'set -e' \
    '# as the official image: options alone run redis-server; it runs as redis, unprotected' \
    'case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac' \
    'if [ "$1" = redis-server ]; then' \
    '  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac' \
    '  if [ "$(id -u)" = 0 ]; then' \
    '    find . \! -user redis -exec chown redis "{}" +' \
    '    exec setpriv --reuid=redis --regid=redis --init-groups "$@"' \
    '  fi' \
    'fi' \
    'exec "$@"' > /usr/local/bin/docker-entrypoint.sh \
 && chmod 755 /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
}

nginx_image() {
  build nginx:1.27 <<'EOF'
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
}

# The official image's layout: the binary as the entrypoint, its flags as CMD (a compose
# `command:` replaces them), /prometheus a volume owned by nobody. The official CMD names
# /usr/share/prometheus/console_libraries and consoles; Debian keeps them in /etc/prometheus.
prometheus_image() {
  build prom/prometheus:v2.42.0 <<'EOF'
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sfn /etc/prometheus/console_libraries /usr/share/prometheus/console_libraries \
 && ln -sfn /etc/prometheus/consoles /usr/share/prometheus/consoles \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus /etc/prometheus
USER nobody
EXPOSE 9090
VOLUME /prometheus
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.console.libraries=/usr/share/prometheus/console_libraries", \
     "--web.console.templates=/usr/share/prometheus/consoles"]
EOF
}

started=$(date +%s)
base_image
redis_image
nginx_image
prometheus_image
log "ready in $(( $(date +%s) - started )) s"
