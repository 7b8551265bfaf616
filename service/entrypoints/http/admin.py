"""Admin endpoints: they take only `X-Admin-Key` (a missing key is 403, a wrong one 401).

Rules reload validates the configured rules directory, replays a sample of recent decisions
under it, and publishes it to every worker; a refused directory leaves the old rules live (422).
"""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from service.domain import rulebook
from service.entrypoints.http import metrics
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import decision_service
from service.usecases.reload import reload_rules as reload

log = logging.getLogger("loan_decide.api")
bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin() -> None:
    admin_keys = current_app.extensions["admin_keys"]
    if not admin_keys:
        raise ApiError(403, "forbidden", "Admin endpoints are off: set ADMIN_API_KEY.")
    presented = request.headers.get("X-Admin-Key")
    if not presented:   # no admin role claimed: forbidden; a wrong key: not authenticated
        raise ApiError(403, "forbidden", "An X-Admin-Key header is required.")
    if not admin_keys.accepts(presented):
        raise ApiError(401, "unauthorized", "The X-Admin-Key is not valid.")


@bp.post("/rules/reload")
def reload_rules() -> Response:
    settings = current_app.extensions["settings"]
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    try:
        result = reload(decision_service(), Path(settings.rules_dir), settings.reload_sample, dry_run)
    except rulebook.RulesError as exc:
        metrics.RULES_RELOADS.labels("refused").inc()
        log.error("rules reload refused", extra={"fields": {"error": str(exc)}})
        raise ApiError(422, "rules_refused",
                       f"The rules directory was refused; the old rules stay live: {exc}") from None
    metrics.RULES_RELOADS.labels("dry_run" if dry_run else "applied").inc()
    if not dry_run:
        from service.entrypoints.http.rule_changes import admin_identity, changes
        changes.record_done(decision_service(), "reload", admin_identity(), **result)
    log.warning("rules reload", extra={"fields": {k: v for k, v in result.items() if k != "sample"}
                                       | {"sample_changed": result["sample"]["changed"]}})
    return jsonify(result)
