"""A bare Flask app for bench/http.sh: POST /decide reads the body and returns a constant JSON.

The floor the real /decide is compared with: same Flask, same gunicorn settings, no
validation, no rules, no logging.

    .venv/bin/gunicorn -w 2 -k sync --preload --chdir bench bare_app:app
"""
from __future__ import annotations

import json

from flask import Flask, Response, request

app = Flask("bare")

_DECISION = json.dumps({"decision_id": "dec_000000000000000000000000", "outcome": "approved",
                        "reasons": [], "flags": []}).encode()
_HEALTH = b'{"status":"ok"}'


@app.post("/decide")
def decide() -> Response:
    request.get_data()
    return Response(_DECISION, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(_HEALTH, mimetype="application/json")
