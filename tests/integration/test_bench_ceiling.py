"""bench/stateful_app.py, the stateful ceiling of bench/http.sh, runs the service's own BEGIN and
COMMIT scripts: when a script's keys or arguments change, the ceiling must change with it, or
the benchmark compares /decide against a server that answers 500."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_DECIDE_TWICE = """
import json, sys
sys.path.insert(0, "bench")
import stateful_app
client = stateful_app.app.test_client()
body = json.dumps({"user_id": "u-ceiling", "application_id": "a1"})
print(json.dumps([client.post("/decide", data=body).status_code for _ in range(2)]))
"""


def test_the_ceiling_writes_what_a_decision_writes(real_redis_url):
    done = subprocess.run([sys.executable, "-c", _DECIDE_TWICE], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "REDIS_URL": real_redis_url, "WORKER_CLASS": "sync",
                               "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [200, 200], done.stderr[-2000:]
    store = redis.Redis.from_url(real_redis_url)
    base = "ceil:{u-ceiling}"
    assert store.xlen(f"{base}:log") == 2                  # a log record per decision
    assert store.zcard(f"{base}:apps") == 1                # the application in the user's window
    assert store.exists(f"{base}:app:a1") and not store.exists(f"{base}:lock")   # recorded, unlocked
