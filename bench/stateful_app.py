"""The stateful ceiling for bench/http.sh: bare Flask plus exactly the two Redis round trips of
the service's atomic per-user design, and nothing else.

Why: /decide cannot be faster than its architecture. Every decision takes the user's lock and
reads the state (BEGIN), then writes the application record, the log record and the state
change and unlocks (COMMIT), each one Lua script on Redis. This app does those two calls with
the service's own scripts and key layout and records of /decide's size, so the ratio
/decide ÷ this app is what the rules, validation, explanation, logging and metrics cost.

POST /decide parses the body (the user and application ids are needed for the keys), runs
BEGIN and COMMIT (the application counted in the user's window, a log record appended), and
answers a JSON body of the decision's size. No validation, no rules, no log line, no metrics.
Sizes (mean bytes over the benchmark's mix, measured by bench/bodies.py --sizes) come from
the JSON file named by CEILING_SIZES: {"response": R, "record": A, "log": L}.

    REDIS_URL=redis://127.0.0.1:6379/0 CEILING_SIZES=sizes.json \
        .venv/bin/gunicorn -c docker/gunicorn.conf.py --pythonpath bench stateful_app:app
"""
from __future__ import annotations

import os

if os.environ.get("WORKER_CLASS", "gevent") == "gevent":   # as service/entrypoints/wsgi.py does
    from service.entrypoints.gunicorn_worker import patch_early

    patch_early()

import json  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402

from flask import Flask, Response, request  # noqa: E402

from service.adapters import redis_connection  # noqa: E402
from service.adapters.state_store import COMMIT_MARKER_TTL_MS, _BEGIN, _COMMIT  # noqa: E402

app = Flask("stateful")

_SIZES = json.loads(open(os.environ["CEILING_SIZES"]).read()) if os.environ.get("CEILING_SIZES") \
    else {"response": 4000, "record": 4200, "log": 6000}
_RETENTION = 400 * 86400
_WINDOW = 183 * 86400


def _padded(size: int, **fields) -> str:
    """A JSON object of `size` bytes holding `fields` and a filler string."""
    head = json.dumps(fields, separators=(",", ":"))[:-1] + ',"pad":"'
    return head + "x" * max(size - len(head) - 2, 0) + '"}'


_RESPONSE = _padded(_SIZES["response"], outcome="approved").encode()
_RECORD = _padded(_SIZES["record"], kind="application")
_LOG = _padded(_SIZES["log"], kind="decision")
_HEALTH = b'{"status":"ok"}'

_client = redis_connection.connect(os.environ.get("REDIS_URL"))
_begin = _client.register_script(_BEGIN)
_commit = _client.register_script(_COMMIT)


@app.post("/decide")
def decide() -> Response:
    body = json.loads(request.get_data())
    user, application = body["user_id"], body["application_id"]
    base = f"ceil:{{{user}}}"
    keys = [f"{base}:lock", f"{base}:user", f"{base}:apps", f"{base}:app:{application}",
            f"{base}:grace", f"{base}:log"]
    token, now = secrets.token_hex(16), int(time.time())
    _begin(keys=keys, args=[token, 5000, now - _WINDOW, now, now - 30 * 86400])
    plan = json.dumps({"app_ttl": _RETENTION, "hset": {}, "hdel": [], "hincrby": {},
                       "user_ttl": _RETENTION, "log_ttl": _RETENTION,
                       "log_minid": str(int((time.time() - _RETENTION) * 1000)),
                       "apps_add": {"score": now, "member": application, "trim_before": now - _WINDOW,
                                    "ttl": _WINDOW + 86400},
                       "grace_add": False, "marker_ttl_ms": COMMIT_MARKER_TTL_MS},
                      separators=(",", ":"))
    # the last key and argument: a four-eyes override, which a decision never writes
    _commit(keys=keys + [f"{base}:commit:{token}", f"{base}:override:-"], args=[token, plan, _RECORD, _LOG, ""])
    return Response(_RESPONSE, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(_HEALTH, mimetype="application/json")
