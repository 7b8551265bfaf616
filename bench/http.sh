#!/usr/bin/env bash
# HTTP throughput and latency of POST /decide (real Redis, a realistic mix of applicants) next to
# its stateful ceiling and a bare Flask endpoint, all under the same gunicorn settings, in one run.
#
#   bench/http.sh
#   ROUNDS=3 WORKERS=2 THREADS=2 CONNS="16 64" DURATION=10s WARMUP=2s PER_POOL=8 SEED=1 bench/http.sh
#   MIX=approved:28,rejected:22,cooldown:15,cooling_off:10,group:15,missing:5,elderly:5 bench/http.sh
#   MODELS="gevent sync" bench/http.sh        each worker model in turn, one summary
#   WORKER_CLASS=sync bench/http.sh          the same as MODELS=sync
#
# For each worker model in MODELS (default: gevent, the default serving model), three servers,
# each `gunicorn -c docker/gunicorn.conf.py` (the container's command: WORKER_CLASS=<model>,
# preload, WORKERS workers, max-requests recycling, same timeouts; APP_CONCURRENCY as given),
# each on a free loopback port, all three up for that model's whole run:
#   decide   service.entrypoints.wsgi:app, REDIS_URL = real Redis, LOG_LEVEL as given (default
#            INFO: the service's one JSON log line per request, written to the output directory)
#   ceiling  bench/stateful_app.py: the stateful ceiling. Bare Flask plus the service's two Lua
#            round trips (BEGIN: lock + read; COMMIT: record + log + state, unlock) with the
#            service's scripts and keys, writing and answering records of the mix's mean sizes
#            (bench/bodies.py --sizes): what /decide would cost with free rules, validation,
#            explanation, logging and metrics
#   bare     bench/bare_app.py: POST /decide reads the body, returns a constant JSON
# ROUNDS rounds (default 3) take turns: decide, ceiling, bare, decide, ... For each run and each
# connection count in CONNS (default 16): wrk WARMUP unmeasured, then DURATION measured (wrk -t
# THREADS -c CONNS, bench/payloads.lua for all, so every server gets the same bodies). The
# summary gives every run, then each target's best run (most req/s) with its p99 and its ratio
# to the best bare and best ceiling, and decide/ceiling within each round. Goal checked at 16
# connections, per model: best decide >= 0.85 of best ceiling, and the p99 of decide's best
# round <= 2x the p99 of the ceiling's best round.
#
# The mix (bench/bodies.py writes the pools, each body checked through the Flask test client to
# get its pool's outcome; bench/payloads.lua schedules them by MIX weights): approvals,
# rejections, cooling-off (amount > 60% of monthly income), special groups, missing data, 60+,
# and repeat users refused by state (REAPPLY_COOLDOWN: a user's first request is rejected with a
# reason that opens the 90-day window, the later ones are refused without evaluating any rule).
# Every request has a fresh application_id. The outcome mix the server actually produced during
# each measured decide run is read from its /metrics (decisions_total by outcome,
# decision_reasons_total for REAPPLY_COOLDOWN) before and after, and printed.
#
# Real Redis: a throwaway redis-server started here on a free loopback port (no persistence;
# installed with apt-get if missing) and stopped on exit, unless REDIS_URL is given (not flushed;
# ids are fresh). redis/req: EVALSHA+EVAL calls / all commands (including those run inside the
# Lua scripts) the Redis server counted during the measured run, per request wrk completed.
# machine CPU: how busy all cores were during the measured run, and the steal time (a VM's
# vCPUs given to others by the hypervisor), from /proc/stat: context for run-to-run variation.
# Logs, raw wrk output, metrics and summary.txt go to bench/out/http-<time>/ (git-ignored).
# wrk, the servers and Redis share this machine's cores.
# Default duration: 3 rounds x 3 servers x (10 s + 2 s) + start-up ~ 2 min.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-${WORKER_CLASS:-gevent}}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
PER_POOL=${PER_POOL:-8}
SEED=${SEED:-1}
MIX=${MIX:-approved:28,rejected:22,cooldown:15,cooling_off:10,group:15,missing:5,elderly:5}
LOG_LEVEL=${LOG_LEVEL:-INFO}
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

# check_post NAME URL : one live POST of the first approved body must answer 200
check_post() {
    local body code
    body=$(grep -m1 '^approved	' "$BODIES" | cut -f2- | sed "s/@@APP@@/bench-check-$1-$$/; s/@@USER@@/u-bench-check-$1-$$/")
    code=$(curl -s -o "$OUT/$1.check.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$body" "$2")
    if [ "$code" != 200 ]; then
        echo "$1: POST /decide answered $code:" >&2; head -c 500 "$OUT/$1.check.json" >&2; exit 1
    fi
}

# wrk runs in the background and is waited for, so a TERM or Ctrl-C reaches the traps at once.
# wrk_bg DURATION CONNECTIONS URL OUTFILE TAG
wrk_bg() {
    BODIES=$BODIES RUN_TAG=$5 wrk -t"$THREADS" -c"$2" -d"$1" -s "$ROOT/bench/payloads.lua" "$3" >"$4" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID"
    WRK_PID=
}

# cpu_stat : the machine's aggregate CPU jiffies "user nice system idle iowait irq softirq steal"
cpu_stat() { awk '/^cpu / { print $2, $3, $4, $5, $6, $7, $8, $9 }' /proc/stat; }
# cpu_use BEFORE AFTER : "busy X% steal Y%" of all cores between two cpu_stat readings
cpu_use() {
    awk -v b="$1" -v a="$2" 'BEGIN { n = split(b, x, " "); split(a, y, " ")
        for (i = 1; i <= n; i++) { d[i] = y[i] - x[i]; t += d[i] }
        if (t <= 0) { print "-"; exit }
        printf "busy %.0f%% steal %.0f%%", 100 * (d[1] + d[2] + d[3] + d[6] + d[7]) / t, 100 * d[8] / t }'
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# outcome_mix BEFORE AFTER : the decisions made between two /metrics scrapes, by outcome, and
# the refusals by state among them
outcome_mix() {
    "$BIN/python" - "$1" "$2" <<'EOF'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'(decisions_total|decision_reasons_total)\{(.*)\} ([0-9.e+]+)$', line.strip())
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            key = ("outcome", labels["outcome"]) if m.group(1) == "decisions_total" else ("code", labels["code"])
            out[key] = out.get(key, 0) + float(m.group(3))
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
total = sum(v for (kind, _), v in diff.items() if kind == "outcome")
if not total:
    print("no decisions counted"); sys.exit(0)
parts = [f"{name} {diff[('outcome', name)] / total:.1%}"
         for name in ("approved", "cooling_off", "rejected", "review")
         if diff.get(("outcome", name))]
cd = diff.get(("code", "REAPPLY_COOLDOWN"), 0)
pend = diff.get(("code", "COOLING_OFF_PENDING"), 0)
print(f"{int(total)} decisions: " + ", ".join(parts)
      + f"; of which REAPPLY_COOLDOWN {cd / total:.1%}, COOLING_OFF_PENDING {pend / total:.1%}")
EOF
}

declare -A RESULT REDIS_PER_REQ MIXLINE CPU PORT
ORDER=()

# measure KIND ROUND : for each connection count, warm up, measure (and for decide: Redis calls
# and the outcome mix)
measure() {
    local kind=$1 round=$2 port=${PORT[$1]} url c name before after
    url="http://127.0.0.1:$port/decide"
    for c in $CONNS; do
        name=$MODEL-$kind-c$c-r$round
        echo "== round $round, $kind, $c connections" >&2
        wrk_bg "$WARMUP" "$c" "$url" "$OUT/$name.warmup.txt" "w$c$kind$round$(date +%s)"
        if [ "$kind" = decide ]; then
            before=$(redis_calls)
            curl -s "http://127.0.0.1:$port/metrics" >"$OUT/$name.metrics.before"
        fi
        cpu0=$(cpu_stat)
        wrk_bg "$DURATION" "$c" "$url" "$OUT/$name.wrk.txt" "m$c$kind$round$(date +%s)"
        CPU[$name]=$(cpu_use "$cpu0" "$(cpu_stat)")
        grep -q '^WRK_RESULT' "$OUT/$name.wrk.txt" || { echo "$name: no WRK_RESULT:" >&2; cat "$OUT/$name.wrk.txt" >&2; exit 1; }
        RESULT[$name]=$(grep '^WRK_RESULT' "$OUT/$name.wrk.txt")
        if [ "$kind" = decide ]; then
            after=$(redis_calls)
            curl -s "http://127.0.0.1:$port/metrics" >"$OUT/$name.metrics.after"
            MIXLINE[$name]=$(outcome_mix "$OUT/$name.metrics.before" "$OUT/$name.metrics.after")
            # the requests in flight when wrk stops are counted by Redis, not by wrk: +-connections
            REDIS_PER_REQ[$name]=$(awk -v b="$before" -v a="$after" -v n="$(field "${RESULT[$name]}" requests)" '
                BEGIN { split(b, x, " "); split(a, y, " ")
                        if (x[1] == "-" || y[1] == "-" || n == 0) print "-"
                        else printf "%.2f/%.2f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }')
        fi
        ORDER+=("$name")
    done
}

# best KIND CONNS : the round with the most req/s
best() {
    local kind=$1 c=$2 r top="" rps=-1 x
    for r in $(seq "$ROUNDS"); do
        x=$(field "${RESULT[$MODEL-$kind-c$c-r$r]}" rps)
        if awk -v a="$x" -v b="$rps" 'BEGIN { exit !(a > b) }'; then rps=$x; top=$MODEL-$kind-c$c-r$r; fi
    done
    echo "$top"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

BODIES=$OUT/bodies.tsv
"$BIN/python" "$ROOT/bench/bodies.py" "$BODIES" --per-pool "$PER_POOL" --seed "$SEED" --mix "$MIX" \
    --sizes "$OUT/sizes.json" >"$OUT/bodies.out" 2>"$OUT/bodies.err" \
    || { cat "$OUT/bodies.out" "$OUT/bodies.err" >&2; exit 1; }
grep '^bodies: mean' "$OUT/bodies.out" >&2 || true

start_redis
echo "wrk -t$THREADS -c{${CONNS// /,}} -d$DURATION (after $WARMUP warm-up) per run, $ROUNDS rounds" \
     "alternating decide, ceiling, bare; gunicorn -c docker/gunicorn.conf.py, WORKERS=$WORKERS" \
     "models: $MODELS (APP_CONCURRENCY=${APP_CONCURRENCY:-default}); $(nproc) cores; real Redis at $REAL_REDIS_URL; output in ${OUT#$ROOT/}"

# All three servers of a model run for its whole benchmark (an idle one costs nothing); the
# rounds take turns, so a slow minute of a shared VM lands on every target, not only one.
run_model() {
    local kind r
    rm -rf "$OUT/prom-$MODEL-"*; mkdir -p "$OUT/prom-$MODEL-decide" "$OUT/prom-$MODEL-ceiling" "$OUT/prom-$MODEL-bare"
    local common=(env REDIS_URL="$REAL_REDIS_URL" WORKERS="$WORKERS" WORKER_CLASS="$MODEL" LOG_LEVEL="$LOG_LEVEL")
    PORT[decide]=$(free_port)
    echo "== $MODEL: decide: gunicorn -c docker/gunicorn.conf.py service.entrypoints.wsgi:app" >&2
    start_server "$MODEL-decide" "${PORT[decide]}" "${common[@]}" BIND="127.0.0.1:${PORT[decide]}" \
        PROMETHEUS_MULTIPROC_DIR="$OUT/prom-$MODEL-decide" \
        "$BIN/gunicorn" -c "$ROOT/docker/gunicorn.conf.py" service.entrypoints.wsgi:app
    PORT[ceiling]=$(free_port)
    echo "== $MODEL: ceiling: gunicorn -c docker/gunicorn.conf.py --pythonpath bench stateful_app:app" >&2
    start_server "$MODEL-ceiling" "${PORT[ceiling]}" "${common[@]}" BIND="127.0.0.1:${PORT[ceiling]}" \
        PROMETHEUS_MULTIPROC_DIR="$OUT/prom-$MODEL-ceiling" CEILING_SIZES="$OUT/sizes.json" \
        "$BIN/gunicorn" -c "$ROOT/docker/gunicorn.conf.py" --pythonpath "$ROOT/bench" stateful_app:app
    # bare: REDIS_URL only satisfies the settings file's several-workers check; unused
    PORT[bare]=$(free_port)
    echo "== $MODEL: bare: gunicorn -c docker/gunicorn.conf.py --pythonpath bench bare_app:app" >&2
    start_server "$MODEL-bare" "${PORT[bare]}" "${common[@]}" BIND="127.0.0.1:${PORT[bare]}" \
        PROMETHEUS_MULTIPROC_DIR="$OUT/prom-$MODEL-bare" \
        "$BIN/gunicorn" -c "$ROOT/docker/gunicorn.conf.py" --pythonpath "$ROOT/bench" bare_app:app
    for kind in decide ceiling bare; do check_post "$MODEL-$kind" "http://127.0.0.1:${PORT[$kind]}/decide"; done
    for r in $(seq "$ROUNDS"); do
        for kind in decide ceiling bare; do measure "$kind" "$r"; done
    done
    stop_servers
}
for MODEL in $MODELS; do run_model; done

summarise_model() {
    local c r kind name line bd bc bb rps paired
    echo "== worker model: $MODEL (WORKER_CLASS=$MODEL)"
    printf '%5s %5s %-8s %9s %8s %8s %8s %8s %7s %11s  %s\n' conns round target 'req/s' 'p50 ms' 'p90 ms' \
        'p99 ms' requests non-2xx 'redis/req' 'machine CPU'
    for c in $CONNS; do
        for r in $(seq "$ROUNDS"); do
            for kind in decide ceiling bare; do
                name=$MODEL-$kind-c$c-r$r line=${RESULT[$MODEL-$kind-c$c-r$r]}
                printf '%5s %5s %-8s %9s %8s %8s %8s %8s %7s %11s  %s\n' "$c" "$r" "$kind" "$(field "$line" rps)" \
                    "$(field "$line" p50_ms)" "$(field "$line" p90_ms)" "$(field "$line" p99_ms)" \
                    "$(field "$line" requests)" "$(field "$line" non2xx)" "${REDIS_PER_REQ[$name]:-}" "${CPU[$name]}"
            done
        done
    done
    echo
    printf '%5s %-8s %9s %8s %8s %8s %8s %10s %10s %6s\n' conns target 'best req/s' 'p50 ms' 'p90 ms' 'p99 ms' \
        '/ bare' '/ ceiling' 'p99/ceil' round
    for c in $CONNS; do
        bd=$(best decide "$c") bc=$(best ceiling "$c") bb=$(best bare "$c")
        for name in "$bd" "$bc" "$bb"; do
            line=${RESULT[$name]} rps=$(field "${RESULT[$name]}" rps) kind=${name#"$MODEL"-}
            printf '%5s %-8s %9s %8s %8s %8s %8s %10s %10s %6s\n' "$c" "${kind%%-*}" "$rps" "$(field "$line" p50_ms)" \
                "$(field "$line" p90_ms)" "$(field "$line" p99_ms)" \
                "$(ratio "$rps" "$(field "${RESULT[$bb]}" rps)")" "$(ratio "$rps" "$(field "${RESULT[$bc]}" rps)")" \
                "$(ratio "$(field "$line" p99_ms)" "$(field "${RESULT[$bc]}" p99_ms)")" "${name##*-r}"
        done
        paired=""
        for r in $(seq "$ROUNDS"); do
            paired+=" $(ratio "$(field "${RESULT[$MODEL-decide-c$c-r$r]}" rps)" "$(field "${RESULT[$MODEL-ceiling-c$c-r$r]}" rps)")"
        done
        echo "      decide/ceiling within each round:$paired"
    done
    echo
    for c in $CONNS; do
        for r in $(seq "$ROUNDS"); do echo "outcome mix, decide at $c connections, round $r (server /metrics): ${MIXLINE[$MODEL-decide-c$c-r$r]}"; done
    done
    if [[ " $CONNS " == *" 16 "* ]]; then
        bd=$(best decide 16) bc=$(best ceiling 16)
        awk -v m="$MODEL" -v d="$(field "${RESULT[$bd]}" rps)" -v c="$(field "${RESULT[$bc]}" rps)" \
            -v dp="$(field "${RESULT[$bd]}" p99_ms)" -v cp="$(field "${RESULT[$bc]}" p99_ms)" 'BEGIN {
            r = d / c; t = dp / cp
            printf "goal at 16 connections, %s: best decide / best ceiling %.3f (>= 0.85: %s); p99 %.1f / %.1f ms = %.2f (<= 2: %s)\n",
                   m, r, (r >= 0.85 ? "met" : "NOT met"), dp, cp, t, (t <= 2 ? "met" : "NOT met") }'
    fi
    echo
}

{
    echo "wrk -t$THREADS -d$DURATION (after $WARMUP warm-up) per run, $ROUNDS rounds alternating decide, ceiling, bare;"
    echo "gunicorn -c docker/gunicorn.conf.py, WORKERS=$WORKERS, models: $MODELS (APP_CONCURRENCY=${APP_CONCURRENCY:-default}); $(nproc) cores; real Redis at $REAL_REDIS_URL"
    echo "mix: $MIX"
    echo "ceiling writes and answers the mix's mean sizes (bytes): $(cat "$OUT/sizes.json")"
    echo
    for MODEL in $MODELS; do summarise_model; done
    echo "ceiling: bench/stateful_app.py, bare Flask plus the service's two Lua round trips (BEGIN, COMMIT)"
    echo "         with records of the sizes above: the fastest this architecture can answer."
    echo "p99/ceil: this best round's p99 / the ceiling's best round's p99 (same model)."
    echo "machine CPU: all cores over the measured run (/proc/stat): busy = user+nice+system+irq+softirq;"
    echo "           steal = time the hypervisor gave this VM's vCPUs to others."
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
