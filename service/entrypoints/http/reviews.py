"""Reviewer endpoints (reviewer key, roles.py): the pending review cases, claiming one, adding a
note to it, the reason codes a reviewer may reject with, and closing it."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from schemas.review import ClaimRequestSchema, NoteRequestSchema, ReviewRequestSchema
from service.domain.review import reason_codes
from service.entrypoints.http import metrics
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, json_body, query_int, services
from service.usecases.review import CaseFilter
from service.usecases.review_desk import DeskResult
from service.usecases.reviews_index import BadCursor

bp = Blueprint("reviews", __name__)
PAGE_MAX = 100
PAGE_DEFAULT = 50


FILTERS = ("product", "requested_by", "claimed_by", "overdue")


@bp.get("/reviews")
def pending() -> Response:
    unknown = sorted(set(request.args) - {"status", "limit", "cursor", *FILTERS})
    if unknown:
        raise ApiError(400, "invalid_request", "Unknown query parameter(s).",
                       {name: ["Unknown query parameter."] for name in unknown})
    if request.args.get("status", "pending") != "pending":
        raise ApiError(400, "invalid_request", "Only pending cases are listed.",
                       {"status": ["Must be 'pending'."]})
    limit = query_int("limit", 1, PAGE_MAX, PAGE_DEFAULT)
    try:
        page = services().reviews.pending(limit, request.args.get("cursor") or None, _case_filter())
    except BadCursor as exc:
        raise ApiError(400, "invalid_request", str(exc), {"cursor": [str(exc)]}) from None
    return jsonify(page)


def _case_filter() -> CaseFilter:
    """The listing's filters from the query, each checked as the ids and flags it names."""
    args = request.args
    for name in ("product", "claimed_by"):
        if name in args:
            checked_id(name, args[name])
    requested_by, overdue = args.get("requested_by"), args.get("overdue")
    if requested_by is not None and requested_by not in ("rules", "applicant"):
        raise ApiError(400, "invalid_request", "The requested_by is invalid.",
                       {"requested_by": ["Must be 'rules' or 'applicant'."]})
    if overdue is not None and overdue not in ("true", "false"):
        raise ApiError(400, "invalid_request", "The overdue is invalid.",
                       {"overdue": ["Must be 'true' or 'false'."]})
    return CaseFilter(product=args.get("product"), requested_by=requested_by,
                      claimed_by=args.get("claimed_by"),
                      overdue=None if overdue is None else overdue == "true")


@bp.get("/reviews/reason-codes")
def reason_code_list() -> Response:
    """The fixed reason codes of the live rules, the ones a review's `reason_codes` accepts
    (the console's reject picker), with whether each one opens the 90-day window."""
    codes = reason_codes(services().reviews.rules.policy.book)
    return jsonify({"reason_codes": [{"code": code, "starts_cooldown": starts}
                                     for code, starts in codes.items()]})


@bp.post("/reviews/<application_id>/claim")
def claim(application_id: str) -> Response:
    checked_id("application_id", application_id)
    data = ClaimRequestSchema().load(json_body())
    return _desk_answer("claim", services().desk.claim(application_id, data["user_id"], data["reviewer_id"]))


@bp.delete("/reviews/<application_id>/claim")
def release(application_id: str) -> Response:
    checked_id("application_id", application_id)
    data = ClaimRequestSchema().load(json_body())
    return _desk_answer("release", services().desk.release(application_id, data["user_id"],
                                                           data["reviewer_id"]))


@bp.post("/reviews/<application_id>/notes")
def note(application_id: str) -> Response:
    checked_id("application_id", application_id)
    data = NoteRequestSchema().load(json_body())
    return _desk_answer("note", services().desk.note(application_id, data["user_id"],
                                                     data["reviewer_id"], data["text"]))


def _desk_answer(step: str, result: DeskResult) -> Response:
    """The application view; the access log names the step and whether it wrote (no note text)."""
    g.fields = {"step": step, "written": result.written, "status": result.view["status"]}
    metrics.DESK_STEPS.labels(step, "written" if result.written else "unchanged").inc()
    return jsonify(result.view)


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
