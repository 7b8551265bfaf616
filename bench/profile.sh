#!/usr/bin/env bash
# Profile the live POST /decide workers with py-spy while wrk drives them (the bench/http.sh mix).
#
#   bench/profile.sh
#   WORKERS=2 CONNECTIONS=16 PROFILE_S=10 RATE=100 bench/profile.sh
#   TARGET=ceiling bench/profile.sh     the stateful ceiling (bench/stateful_app.py) instead
#
# 1. A throwaway redis-server on a free loopback port, the service as the container runs it
#    (`gunicorn -c docker/gunicorn.conf.py service.entrypoints.wsgi:app`, WORKERS sync workers, REDIS_URL =
#    that server, LOG_LEVEL default INFO; MAX_REQUESTS default 0 here, i.e. no recycling, so the
#    profiled worker pids live throughout), bodies from bench/bodies.py (the mix of http.sh).
#    Also prints the CPU (cores) the workers, redis-server and wrk used during the first
#    recording, from /proc/<pid>/stat.
# 2. wrk -t2 -c CONNECTIONS with bench/payloads.lua for the whole profiling time; after a 3 s
#    warm-up, three py-spy recordings of PROFILE_S seconds each, of the master and its workers
#    (--subprocesses; the master's samples are left out of the summaries):
#      cpu.txt      --format raw: on-CPU samples only (py-spy's default: idle threads dropped)
#      wall.txt     --format raw --idle: also the samples where a worker waits (on Redis, on
#                   accept/read of the next request): shares of wall time
#      profile.svg  the flame graph of the on-CPU samples
#    py-spy pauses the process for each sample (RATE per second): throughput is a little lower
#    while it records; the shares are what matter.
# 3. bench/profile_summary.py prints each part's share (engine, schema, policy, json, redis,
#    flask, gunicorn, logging, metrics, ...) and the top functions, for cpu.txt and wall.txt.
# Output in bench/out/profile-<time>/ (git-ignored); bench/out/profile.svg is the latest graph.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
WORKERS=${WORKERS:-2}
CONNECTIONS=${CONNECTIONS:-16}
PROFILE_S=${PROFILE_S:-10}
RATE=${RATE:-100}
LOG_LEVEL=${LOG_LEVEL:-INFO}
TARGET=${TARGET:-decide}
MAX_REQUESTS=${MAX_REQUESTS:-0}   # no worker recycling while profiling: the same worker pids throughout
OUT=$ROOT/bench/out/profile-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/prom"
cd "$ROOT"

[ -x "$BIN/py-spy" ] || "$BIN/pip" install -q -e "$ROOT[bench]"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

PIDS=()
WRK_PID=
cleanup() {
    local pid
    [ -n "${WRK_PID:-}" ] && kill -TERM "$WRK_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BODIES=$OUT/bodies.tsv
"$BIN/python" bench/bodies.py "$BODIES" --sizes "$OUT/sizes.json" 2>"$OUT/bodies.err" >"$OUT/bodies.txt" \
    || { cat "$OUT/bodies.err" >&2; exit 1; }
case "$TARGET" in
    decide) APP=(service.entrypoints.wsgi:app) ;;
    ceiling) APP=(--pythonpath bench stateful_app:app) ;;
    *) echo "TARGET must be decide or ceiling" >&2; exit 2 ;;
esac

rport=$(free_port)
setsid redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --dir "$OUT" \
    >"$OUT/redis.log" 2>&1 </dev/null &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

port=$(free_port)
setsid env REDIS_URL="redis://127.0.0.1:$rport/0" BIND="127.0.0.1:$port" WORKERS="$WORKERS" \
    LOG_LEVEL="$LOG_LEVEL" PROMETHEUS_MULTIPROC_DIR="$OUT/prom" MAX_REQUESTS="$MAX_REQUESTS" \
    CEILING_SIZES="$OUT/sizes.json" \
    "$BIN/gunicorn" -c docker/gunicorn.conf.py "${APP[@]}" >"$OUT/server.log" 2>&1 </dev/null &
MASTER=$!
PIDS+=("$MASTER")
for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "server did not start" >&2; tail "$OUT/server.log" >&2; exit 1; }
sleep 1   # the workers are forked after /healthz can answer: let both start
echo "master $MASTER, workers $(pgrep -P "$MASTER" | tr '\n' ' ')"

total=$((3 * PROFILE_S + 10))
BODIES=$BODIES RUN_TAG="prof$(date +%s)" wrk -t2 -c"$CONNECTIONS" -d"${total}s" -s bench/payloads.lua \
    "http://127.0.0.1:$port/decide" >"$OUT/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 3
# cpu_s PID... : user+system CPU seconds the processes have used so far
cpu_s() {
    local pid total=0 tck
    tck=$(getconf CLK_TCK)
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'
}
WORKER_PIDS=$(pgrep -P "$MASTER" | tr '\n' ' ')
RPID=${PIDS[0]}
t0=$(date +%s.%N); w0=$(cpu_s $WORKER_PIDS); r0=$(cpu_s "$RPID"); k0=$(cpu_s "$WRK_PID")
"$BIN/py-spy" record --pid "$MASTER" --subprocesses --rate "$RATE" --duration "$PROFILE_S" \
    --format raw -o "$OUT/cpu.txt" >>"$OUT/py-spy.log" 2>&1
t1=$(date +%s.%N); w1=$(cpu_s $WORKER_PIDS); r1=$(cpu_s "$RPID"); k1=$(cpu_s "$WRK_PID")
CORES=$(awk -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" -v r0="$r0" -v r1="$r1" -v k0="$k0" -v k1="$k1" \
    'BEGIN { d = t1 - t0; printf "CPU over the cpu.txt recording (%.1f s wall), in cores: workers %.2f, redis-server %.2f, wrk %.2f (py-spy and the rest: the remainder of %d)", d, (w1 - w0) / d, (r1 - r0) / d, (k1 - k0) / d, '"$(nproc)"' }')
"$BIN/py-spy" record --pid "$MASTER" --subprocesses --rate "$RATE" --duration "$PROFILE_S" --idle \
    --format raw -o "$OUT/wall.txt" >>"$OUT/py-spy.log" 2>&1
"$BIN/py-spy" record --pid "$MASTER" --subprocesses --rate "$RATE" --duration "$PROFILE_S" \
    --format flamegraph -o "$OUT/profile.svg" >>"$OUT/py-spy.log" 2>&1
cp "$OUT/profile.svg" "$ROOT/bench/out/profile.svg"
wait "$WRK_PID" || true
WRK_PID=

{
    echo "TARGET=$TARGET: POST /decide, wrk -t2 -c$CONNECTIONS (bench/payloads.lua mix), WORKERS=$WORKERS, py-spy --rate $RATE, ${PROFILE_S} s per recording"
    grep '^WRK_RESULT' "$OUT/wrk.txt" || true
    echo "$CORES"
    echo
    echo "=== on-CPU samples of the workers (cpu.txt): shares of worker CPU"
    "$BIN/python" bench/profile_summary.py "$OUT/cpu.txt" --exclude-pid "$MASTER"
    echo
    echo "=== all samples of the workers, idle included (wall.txt): shares of worker wall time"
    "$BIN/python" bench/profile_summary.py "$OUT/wall.txt" --exclude-pid "$MASTER" --top 12
} | tee "$OUT/summary.txt"
echo "flame graph: bench/out/profile.svg; raw stacks and summary in ${OUT#$ROOT/}"
