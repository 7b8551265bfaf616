"""Audited admin actions on users (admin key only, wherever the path is): lift a 90-day window
(in one step, or with ADMIN_API_KEYS asked by one operator and approved by another), erase a user's personal data (PIPL art. 47), read an erasure receipt, hand out a copy of a
user's data (art. 45)."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from schemas.review import (
    ErasureRequestSchema,
    ExportQuerySchema,
    OperatorOverrideRequestSchema,
    OverrideRequestSchema,
)
from service.entrypoints.http import metrics, roles
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, json_body, services
from service.usecases.audit import ErasureOff

log = logging.getLogger("loan_decide.api")
bp = Blueprint("audited", __name__)
bp.before_request(roles.require_admin)


@bp.post("/users/<user_id>/overrides")
def override(user_id: str) -> Response | tuple[Response, int]:
    """One step with the single ADMIN_API_KEY; with ADMIN_API_KEYS, the first of two (202)."""
    if roles.four_eyes():
        return _request_override(user_id)
    with metrics.override_step("one_step"):
        checked_id("user_id", user_id)
        data = OverrideRequestSchema().load(json_body())
        state = services().audit.lift_cooldown(user_id, data["operator_id"], data["reason"])
    log.warning("override", extra={"fields": {"action": data["action"]}})
    return jsonify(state)


def _request_override(user_id: str) -> tuple[Response, int]:
    with metrics.override_step("request") as ended:
        checked_id("user_id", user_id)
        operator_id = roles.operator()
        data = OperatorOverrideRequestSchema().load(json_body())
        if data["operator_id"] not in (None, operator_id):
            raise ApiError(400, "invalid_request", "The operator is the key's.",
                           {"operator_id": ["Not the operator of this X-Admin-Key: leave it out, "
                                            "or send the key's operator."]})
        pending = services().audit.request_override(user_id, operator_id, data["reason"])
        ended["outcome"] = "pending"
    log.warning("override requested", extra={"fields": {"override_id": pending["override_id"],
                                                        "operator_id": operator_id}})
    return jsonify(pending), 202


@bp.post("/admin/overrides/<override_id>/approve")
def approve_override(override_id: str) -> Response:
    """The second operator applies a pending override (no body: the key says who approves)."""
    with metrics.override_step("approve"):
        checked_id("override_id", override_id)
        operator_id = roles.operator()
        state = services().audit.approve_override(override_id, operator_id)
    log.warning("override approved", extra={"fields": {"override_id": override_id,
                                                       "operator_id": operator_id}})
    return jsonify(state)


@bp.delete("/users/<user_id>")
def erase(user_id: str) -> Response:
    checked_id("user_id", user_id)
    data = ErasureRequestSchema().load(json_body())
    try:
        receipt = services().audit.erase(user_id, data["operator_id"], data["reason"])
    except ErasureOff as exc:
        raise ApiError(503, "erasure_off", str(exc)) from None
    log.warning("erasure", extra={"fields": {"receipt_id": receipt["receipt_id"]}})
    return jsonify({"erased": receipt["erased"], "receipt_id": receipt["receipt_id"]})


@bp.get("/admin/erasures/<receipt_id>")
def erasure_receipt(receipt_id: str) -> Response:
    checked_id("receipt_id", receipt_id)
    return jsonify(services().audit.receipt(receipt_id))


@bp.get("/users/<user_id>/export")
def export(user_id: str) -> Response:
    with metrics.rights_request("export"):
        checked_id("user_id", user_id)
        query = ExportQuerySchema().load(request.args.to_dict())
        copy = services().rights.export(user_id, query["operator_id"], query["reason"])
    log.warning("export", extra={"fields": {"receipt_id": copy["receipt_id"]}})
    return jsonify(copy)
