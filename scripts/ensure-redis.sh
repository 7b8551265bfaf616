#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (the tests use its db 15 and start their own
# servers for the cluster and fault tests). Installs Debian's redis-server if missing.
# Prints "started" when it started one (the caller may stop it), nothing otherwise.
set -euo pipefail
if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "redis-server is not installed: apt-get install redis-server (as root)" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
fi
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
for _ in $(seq 50); do
  redis-cli -p 6379 ping 2>/dev/null | grep -q PONG && { echo started; exit 0; }
  sleep 0.1
done
echo "redis-server did not answer on 6379" >&2
exit 1
