"""Admin endpoints: they take only `X-Admin-Key` (a missing key is 403, a wrong one 401).

Rules reload reads and validates the configured rules directory with its kit, replays a sample
of recent decisions under it, and publishes it to every worker; a refused directory leaves the
old rules live (422).
"""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from service.adapters import rules_files
from service.domain import rulebook
from service.entrypoints.http import metrics, roles
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import services

log = logging.getLogger("loan_decide.api")
bp = Blueprint("admin", __name__, url_prefix="/admin")


bp.before_request(roles.require_admin)


@bp.post("/rules/reload")
def reload_rules() -> Response:
    settings = current_app.extensions["settings"]
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    changes = services().changes
    try:
        directory = Path(settings.rules_dir)
        result = changes.reload(rules_files.load(directory), rules_files.kit_files(directory), dry_run)
    except rulebook.RulesError as exc:
        metrics.RULES_RELOADS.labels("refused").inc()
        log.error("rules reload refused", extra={"fields": {"error": str(exc)}})
        raise ApiError(422, "rules_refused",
                       f"The rules directory was refused; the old rules stay live: {exc}") from None
    metrics.RULES_RELOADS.labels("dry_run" if dry_run else "applied").inc()
    if not dry_run:
        changes.record_done("reload", roles.admin_identity(), **result)
    log.warning("rules reload", extra={"fields": {k: v for k, v in result.items() if k != "sample"}
                                       | {"sample_changed": result["sample"]["changed"]}})
    return jsonify(result)
