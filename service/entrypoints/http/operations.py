"""Open operational endpoints (no key): liveness, readiness, Prometheus metrics, OpenAPI."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service.adapters.review_store import ReviewIndex
from service.adapters.state_store import StoreUnavailable, from_epoch
from service.entrypoints.http import metrics
from service.entrypoints.http.errors import RETRY, ApiError
from service.entrypoints.http.openapi import build_spec
from service.entrypoints.http.requests import decision_service

bp = Blueprint("operations", __name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    service = decision_service()
    if not service.ready():
        raise ApiError(503, "not_ready", "Redis is unavailable.", headers=RETRY)
    return jsonify({"status": "ready", "rules_version": service.rules_version})


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body + _review_queue(), content_type=content_type)


def _review_queue() -> bytes:
    """The pending review count and oldest age (issue 11); left out when Redis cannot say."""
    service = decision_service()
    try:
        pending, oldest = ReviewIndex(service.store).stats()
    except StoreUnavailable:
        return b""
    age = max((service.clock.now() - from_epoch(oldest)).total_seconds(), 0) if oldest else None
    return metrics.review_queue(pending, age)


@bp.get("/openapi.json")
def openapi() -> Response:
    cache = current_app.extensions.setdefault("openapi", {})
    if "doc" not in cache:
        cache["doc"] = build_spec("1.0.0", decision_service().policy.book)
    return jsonify(cache["doc"])
