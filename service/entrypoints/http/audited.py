"""Audited admin actions on users (admin key only, wherever the path is): lift a 90-day window,
erase a user's personal data (PIPL art. 47), read an erasure receipt, hand out a copy of a
user's data (art. 45)."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from schemas.review import ErasureRequestSchema, ExportQuerySchema, OverrideRequestSchema
from service.entrypoints.http import metrics, roles
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, json_body, services
from service.usecases.audit import ErasureOff

log = logging.getLogger("loan_decide.api")
bp = Blueprint("audited", __name__)
bp.before_request(roles.require_admin)


@bp.post("/users/<user_id>/overrides")
def override(user_id: str) -> Response:
    checked_id("user_id", user_id)
    data = OverrideRequestSchema().load(json_body())
    state = services().audit.lift_cooldown(user_id, data["operator_id"], data["reason"])
    log.warning("override", extra={"fields": {"action": data["action"]}})
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
