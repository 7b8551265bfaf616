#!/usr/bin/env bash
# HTTP throughput of POST /decide on real Redis and on the embedded store, next to a bare Flask
# endpoint: same wrk settings, same gunicorn settings, one run.
#
#   bench/http.sh
#   WORKERS=2 THREADS=2 CONNECTIONS=16 DURATION=10s WARMUP=2s BODIES_COUNT=16 SEED=1 bench/http.sh
#
# Targets, in this order (every one: WARMUP unmeasured, then DURATION measured, same wrk flags):
#   workers=1        decide-redis     `loan-decide serve --workers 1`, REDIS_URL = real Redis
#                    decide-embedded  `loan-decide serve --workers 1`, no REDIS_URL (fakeredis,
#                                     in-process; the service allows only one worker with it)
#                    bare             bench/bare_app.py under gunicorn, same settings
#   workers=WORKERS  decide-redis, bare  (skipped when WORKERS=1)
# The embedded store cannot run with several workers, so the workers=1 rows are the
# like-for-like comparison of the three; the WORKERS rows show what real Redis allows.
#
# 1. bench/bodies.py writes BODIES_COUNT applicant bodies (all 7 products; approvals, rejections,
#    missing data, special groups, 60+), each checked to answer 200 through the Flask test client.
# 2. Each server is waited for on GET /healthz, one live POST is checked for 200, then wrk runs
#    bench/payloads.lua (a fresh application_id / user_id per request: no replays, no cooldowns).
# Prints a table: target, workers, req/s, p50/p90/p99 ms, req/s as a fraction of the bare app's
# at the same worker count, measured requests, non-2xx; for the real-Redis rows also the Redis
# commands the server counted per measured request (INFO commandstats: EVALSHA/EVAL calls, and
# all commands including those run inside the Lua scripts).
# Real Redis: REDIS_URL if set (it is not flushed; keys are namespaced by fresh ids); else a
# throwaway redis-server started here on a free loopback port (no persistence; installed with
# apt-get if missing) and stopped on exit. Every server started here is stopped on exit. Logs,
# raw wrk output and summary.txt go to bench/out/http-<time>/ (git-ignored).
# The service logs one JSON line per decision at LOG_LEVEL=INFO (its default), into that
# directory; set LOG_LEVEL=WARNING to measure without it. RULES_DIR (read by the service and
# bodies.py) picks another rules directory. wrk and the servers share this machine's cores.
# Default duration: 5 targets x (DURATION 10 s + WARMUP 2 s + ~2 s start-up) ~ 75 s.
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
OUT=$ROOT/bench/out/http-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
cd "$ROOT"

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found: installing (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

SERVER_PIDS=()   # the HTTP server of the current target
REDIS_PIDS=()    # the throwaway redis-server, for the whole run
WRK_PID=
# stop_pids PID... : TERM each one's process group (each runs in its own session), then KILL
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}
stop_servers() {
    if [ ${#SERVER_PIDS[@]} -gt 0 ]; then stop_pids "${SERVER_PIDS[@]}"; fi
    SERVER_PIDS=()
}
cleanup() {
    if [ -n "${WRK_PID:-}" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    stop_servers
    if [ ${#REDIS_PIDS[@]} -gt 0 ]; then stop_pids "${REDIS_PIDS[@]}"; fi
    REDIS_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME PORT CMD... : start in its own session, wait for GET /healthz
start_server() {
    local name=$1 port=$2; shift 2
    setsid "$@" >"$OUT/$name.log" 2>&1 </dev/null &
    local pid=$!
    SERVER_PIDS+=("$pid")
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before answering /healthz:" >&2; tail -20 "$OUT/$name.log" >&2; exit 1
        fi
        if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then return 0; fi
        sleep 0.1
    done
    echo "$name did not answer /healthz within 30 s" >&2; exit 1
}

# start_redis : sets REAL_REDIS_URL: REDIS_URL if given, else a throwaway redis-server here
start_redis() {
    if [ -n "${REDIS_URL:-}" ]; then REAL_REDIS_URL=$REDIS_URL; return 0; fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server not found: installing (apt-get)" >&2
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    local port pid
    port=$(free_port)
    setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$OUT" >"$OUT/redis.log" 2>&1 </dev/null &
    pid=$!
    REDIS_PIDS+=("$pid")
    for _ in $(seq 100); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            REAL_REDIS_URL="redis://127.0.0.1:$port/0"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server did not start:" >&2; tail -20 "$OUT/redis.log" >&2; exit 1
}

# redis_calls : "<evalsha+eval calls> <all command calls>" from INFO commandstats (INFO itself
# not counted); "- -" when the server cannot be asked (a cluster URL, no redis-cli)
redis_calls() {
    case "$REAL_REDIS_URL" in redis://*|rediss://*) ;; *) echo "- -"; return 0 ;; esac
    redis-cli -u "$REAL_REDIS_URL" info commandstats 2>/dev/null | tr -d '\r' | awk -F'[:,=]' '
        /^cmdstat_/ { name = substr($1, 9); if (name == "info") next
                      all += $3; if (name ~ /^eval/) ev += $3 }
        END { if (NR == 0) print "- -"; else printf "%d %d\n", ev, all }' || echo "- -"
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

# wrk runs in the background and is waited for, so a TERM or Ctrl-C reaches the traps at once.
wrk_bg() {
    BODIES=$BODIES wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" -s "$ROOT/bench/payloads.lua" "$2" >"$3" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID"
    WRK_PID=
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

declare -A RESULT REDIS_PER_REQ
ORDER=()

# run_target KIND WORKERS : start the server, check one POST, warm up, measure, stop it
run_target() {
    local kind=$1 workers=$2 name port url before after
    name=$kind-w$workers
    port=$(free_port)
    url="http://127.0.0.1:$port/decide"
    echo "== $kind, --workers $workers" >&2
    case $kind in
        decide-redis)
            start_server "$name" "$port" env REDIS_URL="$REAL_REDIS_URL" \
                "$BIN/loan-decide" serve --host 127.0.0.1 --port "$port" --workers "$workers" ;;
        decide-embedded)
            start_server "$name" "$port" env -u REDIS_URL \
                "$BIN/loan-decide" serve --host 127.0.0.1 --port "$port" --workers "$workers" ;;
        bare)
            start_server "$name" "$port" "$BIN/gunicorn" --bind "127.0.0.1:$port" --workers "$workers" \
                --worker-class sync --preload --timeout 30 --graceful-timeout 20 \
                --chdir "$ROOT/bench" bare_app:app ;;
    esac
    check_post "$name" "$url"
    wrk_bg "$WARMUP" "$url" "$OUT/$name.warmup.txt"
    [ "$kind" = decide-redis ] && before=$(redis_calls)
    wrk_bg "$DURATION" "$url" "$OUT/$name.wrk.txt"
    [ "$kind" = decide-redis ] && after=$(redis_calls)
    stop_servers
    grep -q '^WRK_RESULT' "$OUT/$name.wrk.txt" || { echo "$name: no WRK_RESULT:" >&2; cat "$OUT/$name.wrk.txt" >&2; exit 1; }
    RESULT[$name]=$(grep '^WRK_RESULT' "$OUT/$name.wrk.txt")
    if [ "$kind" = decide-redis ]; then
        # the requests in flight when wrk stops are counted by Redis, not by wrk: +-CONNECTIONS
        REDIS_PER_REQ[$name]=$(awk -v b="$before" -v a="$after" -v n="$(field "${RESULT[$name]}" requests)" '
            BEGIN { split(b, x, " "); split(a, y, " ")
                    if (x[1] == "-" || y[1] == "-" || n == 0) print "-"
                    else printf "%.2f/%.2f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }')
    fi
    ORDER+=("$name")
}

BODIES=$OUT/bodies.jsonl
"$BIN/python" "$ROOT/bench/bodies.py" "$BODIES" --count "$BODIES_COUNT" --seed "$SEED"

start_redis
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up) per target; gunicorn sync --preload;" \
     "workers 1 and $WORKERS; $(nproc) cores; real Redis at $REAL_REDIS_URL; output in ${OUT#$ROOT/}"

run_target decide-redis 1
run_target decide-embedded 1
run_target bare 1
if [ "$WORKERS" -gt 1 ]; then
    run_target decide-redis "$WORKERS"
    run_target bare "$WORKERS"
fi

{
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up) per target; $(nproc) cores; real Redis at $REAL_REDIS_URL"
    printf '\n%-16s %7s %9s %8s %8s %8s %8s %9s %7s %12s\n' target workers 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' \
        'vs bare' requests non-2xx 'redis/req'
    for name in "${ORDER[@]}"; do
        line=${RESULT[$name]}
        target=${name%-w*}; workers=${name##*-w}
        bare=${RESULT[bare-w$workers]:-}
        ratio=$(awk -v d="$(field "$line" rps)" -v b="$(field "$bare" rps)" \
            'BEGIN { if (b > 0) printf "%.3f", d / b; else print "-" }')
        printf '%-16s %7s %9s %8s %8s %8s %8s %9s %7s %12s\n' "$target" "$workers" "$(field "$line" rps)" \
            "$(field "$line" p50_ms)" "$(field "$line" p90_ms)" "$(field "$line" p99_ms)" "$ratio" \
            "$(field "$line" requests)" "$(field "$line" non2xx)" "${REDIS_PER_REQ[$name]:-}"
    done
    echo
    echo "vs bare: req/s divided by the bare app's req/s at the same worker count."
    echo "redis/req: EVALSHA+EVAL calls / all commands (including those inside the Lua scripts)"
    echo "           the Redis server counted during the measured run, per request wrk completed."
} | tee "$OUT/summary.txt"
for name in "${ORDER[@]}"; do echo "$name: ${RESULT[$name]}" >>"$OUT/summary.txt"; done

errors=0
for name in "${ORDER[@]}"; do
    line=${RESULT[$name]}
    for key in non2xx connect_err read_err write_err timeouts; do
        [ "$(field "$line" $key)" = 0 ] || { echo "warning: $name: $key=$(field "$line" $key)" >&2; errors=1; }
    done
done
exit $errors
