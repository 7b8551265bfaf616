"""Reviewer endpoints (reviewer key, roles.py): the pending review cases, the reason codes a
reviewer may reject with, and closing a case."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from schemas.review import ReviewRequestSchema
from service.domain.review import reason_codes
from service.entrypoints.http import metrics
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, json_body, query_int, services
from service.usecases.reviews_index import BadCursor

bp = Blueprint("reviews", __name__)
PAGE_MAX = 100
PAGE_DEFAULT = 50


@bp.get("/reviews")
def pending() -> Response:
    unknown = sorted(set(request.args) - {"status", "limit", "cursor"})
    if unknown:
        raise ApiError(400, "invalid_request", "Unknown query parameter(s).",
                       {name: ["Unknown query parameter."] for name in unknown})
    if request.args.get("status", "pending") != "pending":
        raise ApiError(400, "invalid_request", "Only pending cases are listed.",
                       {"status": ["Must be 'pending'."]})
    limit = query_int("limit", 1, PAGE_MAX, PAGE_DEFAULT)
    try:
        page = services().reviews.pending(limit, request.args.get("cursor") or None)
    except BadCursor as exc:
        raise ApiError(400, "invalid_request", str(exc), {"cursor": [str(exc)]}) from None
    return jsonify(page)


@bp.get("/reviews/reason-codes")
def reason_code_list() -> Response:
    """The fixed reason codes of the live rules, the ones a review's `reason_codes` accepts
    (the console's reject picker), with whether each one opens the 90-day window."""
    codes = reason_codes(services().reviews.rules.policy.book)
    return jsonify({"reason_codes": [{"code": code, "starts_cooldown": starts}
                                     for code, starts in codes.items()]})


@bp.post("/applications/<application_id>/review")
def close(application_id: str) -> Response:
    checked_id("application_id", application_id)
    reviews = services().reviews
    data = ReviewRequestSchema(codes=reason_codes(reviews.rules.policy.book)).load(json_body())
    result = reviews.review(application_id, data)
    g.fields = {"decision_id": result.view["decision"]["decision_id"], "status": result.view["status"],
                "replayed": result.replayed}
    if not result.replayed:
        metrics.REVIEWS.labels(data["outcome"]).inc()
    return jsonify(result.view)
