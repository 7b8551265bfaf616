#!/usr/bin/env bash
# HTTP throughput of POST /decide next to a bare Flask endpoint, same gunicorn settings, one run.
#
#   bench/http.sh
#   WORKERS=2 THREADS=2 CONNECTIONS=16 DURATION=10s WARMUP=2s BODIES_COUNT=16 SEED=1 bench/http.sh
#
# 1. bench/bodies.py writes BODIES_COUNT applicant bodies (all 7 products; approvals, rejections,
#    missing data, special groups, 60+), each checked to answer 200 through the Flask test client.
# 2. The real service: `.venv/bin/loan-decide serve --workers $WORKERS` (gunicorn, sync workers,
#    preload), waited for on GET /healthz, one live POST checked for 200, then wrk (WARMUP
#    unmeasured, then DURATION measured) with bench/payloads.lua rotating the bodies.
# 3. The bare app (bench/bare_app.py) under gunicorn with the same workers / sync / preload /
#    timeouts, the same wrk run.
# Prints req/s and latency p50/p99 for both and the ratio decide/bare. Every server started here
# is stopped on exit. Logs and raw wrk output go to bench/out/http-<time>/ (git-ignored).
# State store of the real service: REDIS_URL if set; else a throwaway redis-server started here
# on a free port (no persistence, stopped on exit; installed with apt-get if missing);
# STORE=embedded runs it on the in-process fakeredis instead (one worker only).
# The service logs one JSON line per decision at LOG_LEVEL=INFO (its default), into that directory;
# set LOG_LEVEL=WARNING to measure without it. RULES_DIR (read by the service and bodies.py)
# picks another rules directory. wrk and the servers share this machine's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
BODIES_COUNT=${BODIES_COUNT:-16}
SEED=${SEED:-1}
STORE=${STORE:-redis}
OUT=$ROOT/bench/out/http-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
cd "$ROOT"

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found: installing (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

PIDS=()
stop_servers() {
    local pid
    if [ -n "${WRK_PID:-}" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do
        # each server runs in its own session (setsid): its process group is its pid
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

free_port() {
    "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME PORT CMD... : start in its own session, wait for GET /healthz
start_server() {
    local name=$1 port=$2; shift 2
    setsid "$@" >"$OUT/$name.log" 2>&1 </dev/null &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before answering /healthz:" >&2; tail -20 "$OUT/$name.log" >&2; exit 1
        fi
        if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then return 0; fi
        sleep 0.1
    done
    echo "$name did not answer /healthz within 30 s" >&2; exit 1
}

# start_redis : a throwaway redis-server for the real service, unless REDIS_URL is given
start_redis() {
    if [ -n "${REDIS_URL:-}" ] || [ "$STORE" = embedded ]; then return 0; fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server not found: installing (apt-get)" >&2
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    local port pid
    port=$(free_port)
    setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$OUT" >"$OUT/redis.log" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            export REDIS_URL="redis://127.0.0.1:$port/0"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server did not start:" >&2; tail -20 "$OUT/redis.log" >&2; exit 1
}

# check_post NAME URL : one live POST of the first body must answer 200
check_post() {
    local body code
    body=$(head -1 "$BODIES" | sed "s/@@ID@@/bench-check-$1-$$/g")
    code=$(curl -s -o "$OUT/$1.check.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$body" "$2")
    if [ "$code" != 200 ]; then
        echo "$1: POST /decide answered $code:" >&2; head -c 500 "$OUT/$1.check.json" >&2; exit 1
    fi
}

# run_wrk NAME URL : warm-up, then the measured run into $OUT/NAME.wrk.txt. wrk runs in the
# background and is waited for, so a TERM or Ctrl-C reaches the traps at once.
WRK_PID=
wrk_bg() {
    BODIES=$BODIES wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" -s "$ROOT/bench/payloads.lua" "$2" >"$3" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID"
    WRK_PID=
}
run_wrk() {
    wrk_bg "$WARMUP" "$2" "$OUT/$1.warmup.txt"
    wrk_bg "$DURATION" "$2" "$OUT/$1.wrk.txt"
    grep -q '^WRK_RESULT' "$OUT/$1.wrk.txt" || { echo "$1: no WRK_RESULT:" >&2; cat "$OUT/$1.wrk.txt" >&2; exit 1; }
}
result() { grep '^WRK_RESULT' "$OUT/$1.wrk.txt"; }

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

BODIES=$OUT/bodies.jsonl
"$BIN/python" "$ROOT/bench/bodies.py" "$BODIES" --count "$BODIES_COUNT" --seed "$SEED"

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up); gunicorn sync --workers $WORKERS --preload;" \
     "$(nproc) cores; output in ${OUT#$ROOT/}"

# the real service
start_redis
STORE_DESC=${REDIS_URL:+redis at $REDIS_URL}
echo "state store: ${STORE_DESC:-embedded (fakeredis)}"
PORT=$(free_port)
start_server decide "$PORT" "$BIN/loan-decide" serve --host 127.0.0.1 --port "$PORT" --workers "$WORKERS"
check_post decide "http://127.0.0.1:$PORT/decide"
run_wrk decide "http://127.0.0.1:$PORT/decide"
DECIDE=$(result decide)
stop_servers

# the bare Flask app, same gunicorn settings as `loan-decide serve`
PORT=$(free_port)
start_server bare "$PORT" "$BIN/gunicorn" --bind "127.0.0.1:$PORT" --workers "$WORKERS" \
    --worker-class sync --preload --timeout 30 --graceful-timeout 20 --chdir "$ROOT/bench" bare_app:app
check_post bare "http://127.0.0.1:$PORT/decide"
run_wrk bare "http://127.0.0.1:$PORT/decide"
BARE=$(result bare)
stop_servers

{
    printf '\n%-8s %10s %9s %9s %9s %9s %8s %8s\n' endpoint 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' requests non-2xx 'B/resp'
    for name in decide bare; do
        line=$([ $name = decide ] && echo "$DECIDE" || echo "$BARE")
        printf '%-8s %10s %9s %9s %9s %9s %8s %8s\n' "$name" "$(field "$line" rps)" "$(field "$line" p50_ms)" \
            "$(field "$line" p90_ms)" "$(field "$line" p99_ms)" "$(field "$line" requests)" \
            "$(field "$line" non2xx)" "$(field "$line" bytes_per_req)"
    done
    awk -v d="$(field "$DECIDE" rps)" -v b="$(field "$BARE" rps)" \
        -v dp="$(field "$DECIDE" p50_ms)" -v bp="$(field "$BARE" p50_ms)" \
        'BEGIN { printf "\nratio decide/bare: %.3f of the req/s (%.2fx the p50 latency)\n", d / b, dp / bp }'
} | tee "$OUT/summary.txt"
echo "decide: $DECIDE" >>"$OUT/summary.txt"
echo "bare:   $BARE" >>"$OUT/summary.txt"

errors=0
for line in "$DECIDE" "$BARE"; do
    for key in non2xx connect_err read_err write_err timeouts; do
        [ "$(field "$line" $key)" = 0 ] || { echo "warning: $key=$(field "$line" $key) in: $line" >&2; errors=1; }
    done
done
exit $errors
