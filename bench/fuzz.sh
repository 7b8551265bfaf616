#!/usr/bin/env bash
# A larger fuzzing run than CI's, in three steps (each must pass):
#
#   1. schemathesis on the app's own OpenAPI document, SCHEMATHESIS_EXAMPLES (default 500, CI 25)
#      examples per operation (tests/unit/test_schemathesis.py reads that variable; derandomized)
#   2. the core fuzz tests as CI runs them (tests/unit/test_fuzz_core.py: 400 examples each,
#      derandomized; their counts are fixed in the tests' @settings)
#   3. the same two core properties with FUZZ_EXAMPLES (default 5000) examples each and a random
#      seed, SEED (default: a fresh one, printed): bench/fuzz_core.py reuses the tests' strategies
#
#   bench/fuzz.sh
#   SCHEMATHESIS_EXAMPLES=1000 FUZZ_EXAMPLES=20000 SEED=42 bench/fuzz.sh
#
# Each step runs with --hypothesis-show-statistics; the script prints, per test, how many test
# cases passed / failed / were invalid and why it stopped (max_examples reached, or "nothing left
# to do": an operation without inputs, e.g. GET /healthz, is one case). Step 1 uses the embedded store (fakeredis), no Redis server needed. Prints each step's pytest
# summary and wall time; the full output goes to bench/out/fuzz-<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
export SCHEMATHESIS_EXAMPLES=${SCHEMATHESIS_EXAMPLES:-500}
export FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-5000}
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
OUT=$ROOT/bench/out/fuzz-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
cd "$ROOT"

status=0
step() {   # step NAME CMD... : run, keep the output, print the summary line and the time
    local name=$1 start end rc; shift
    echo "== $name: $*"
    start=$(date +%s.%N)
    set +e
    "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    set -e
    end=$(date +%s.%N)
    tail -1 "$OUT/$name.txt"
    # hypothesis statistics: examples run per test (generate phase, and explicit examples if any)
    awk '/^[^ ].*::/ { t = $0 } / passing, / { sub(/^ +- /, ""); p = $0 }
         /Stopped because/ && t { sub(/^ +- /, ""); printf "   %s  %s; %s\n", t, p, $0; t = "" }' "$OUT/$name.txt"
    awk -v r="$rc" -v s="$start" -v e="$end" 'BEGIN { printf "   exit %d, %.0f s wall\n", r, e - s }'
    if [ "$rc" -ne 0 ]; then status=1; tail -40 "$OUT/$name.txt"; fi
}

echo "SCHEMATHESIS_EXAMPLES=$SCHEMATHESIS_EXAMPLES FUZZ_EXAMPLES=$FUZZ_EXAMPLES SEED=$SEED; output in ${OUT#$ROOT/}"
step schemathesis "$BIN/python" -m pytest -q -p no:cacheprovider tests/unit/test_schemathesis.py \
    --hypothesis-show-statistics
step fuzz-core-ci "$BIN/python" -m pytest -q -p no:cacheprovider tests/unit/test_fuzz_core.py \
    --hypothesis-show-statistics
step fuzz-core-more "$BIN/python" -m pytest -q -p no:cacheprovider bench/fuzz_core.py \
    "--hypothesis-seed=$SEED" --hypothesis-show-statistics
if [ "$status" -eq 0 ]; then echo "fuzz: all passed"; else echo "fuzz: FAILED (see $OUT)"; fi
exit $status
