"""Open operational endpoints (no key): liveness, readiness, Prometheus metrics, OpenAPI."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service.entrypoints.http import metrics
from service.entrypoints.http.errors import RETRY, ApiError
from service.entrypoints.http.openapi import build_spec
from service.entrypoints.http.requests import services
from service.usecases.ports import StoreUnavailable

bp = Blueprint("operations", __name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    wired = services()
    if not wired.ready():
        raise ApiError(503, "not_ready", "Redis is unavailable.", headers=RETRY)
    return jsonify({"status": "ready", "rules_version": wired.rules.version})


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body + _review_queue(), content_type=content_type)


def _review_queue() -> bytes:
    """The pending review count, oldest age and overdue count; left out when Redis cannot say."""
    wired = services()
    now = wired.clock.now().timestamp()
    sla = wired.rules.policy.book.time.review_sla_hours * 3600
    try:
        pending, oldest, overdue = wired.cases.stats(overdue_before=int(now) - sla)
    except StoreUnavailable:
        return b""
    age = max(now - oldest, 0) if oldest else None
    return metrics.review_queue(pending, age, overdue)


@bp.get("/openapi.json")
def openapi() -> Response:
    cache = current_app.extensions.setdefault("openapi", {})
    if "doc" not in cache:
        cache["doc"] = build_spec("1.0.0", services().rules.policy.book)
    return jsonify(cache["doc"])
