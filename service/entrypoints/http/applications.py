"""Applications and users: read an application, cancel in the cooling-off window (T2), ask for a
person instead of the rules, read a user's state, record a grace use (T5). Each route checks its
ids and calls one use case."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from schemas.request import CancelRequestSchema, GraceRequestSchema
from schemas.review import HumanReviewRequestSchema
from service.entrypoints.http import metrics, roles
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, json_body, services

bp = Blueprint("applications", __name__)


@bp.post("/applications/<application_id>/cancel")
def cancel(application_id: str) -> Response:
    checked_id("application_id", application_id)
    data = CancelRequestSchema().load(json_body())
    view = services().decisions.cancel(data["user_id"], application_id)
    g.fields = {"decision_id": view["decision"]["decision_id"], "status": view["status"]}
    return jsonify(view)


@bp.post("/applications/<application_id>/human-review")
def human_review(application_id: str) -> Response:
    with metrics.rights_request("human_review") as ended:
        checked_id("application_id", application_id)
        data = HumanReviewRequestSchema().load(json_body())
        result = services().rights.request_human_review(data["user_id"], application_id,
                                                        data["statement"])
        ended["outcome"] = "replayed" if result.replayed else "ok"
    g.fields = {"decision_id": result.decision["decision_id"], "status": result.view["status"],
                "replayed": result.replayed}
    return jsonify(result.view)


@bp.get("/applications/<application_id>")
def application(application_id: str) -> Response:
    checked_id("application_id", application_id)
    user_id = request.args.get("user_id")
    if not user_id:
        raise ApiError(400, "invalid_request", "user_id is required.",
                       {"user_id": ["Missing query parameter."]})
    checked_id("user_id", user_id)
    # a reviewer decides on the request itself; a client app sent it and is not shown it again
    return jsonify(services().decisions.application(user_id, application_id,
                                                    with_request=roles.is_reviewer()))


@bp.get("/users/<user_id>/state")
def user_state(user_id: str) -> Response:
    checked_id("user_id", user_id)
    return jsonify(services().decisions.user_state(user_id))


@bp.post("/users/<user_id>/grace-uses")
def grace_use(user_id: str) -> Response:
    checked_id("user_id", user_id)
    decisions = services().decisions
    data = GraceRequestSchema(max_days=decisions.rules.policy.book.time.grace.max_days).load(json_body())
    return jsonify(decisions.use_grace(user_id, data["days"]))
