"""Rule-change endpoints (admin key only): shadow, challenger, promote and the history.

No endpoint takes a filesystem path: a candidate is archived first (`loan-decide rules archive
DIR`) and named here by its version. A challenger or promote whose rules fail their own policy
test kit (or have none, or cannot decide a product the live rules decide) is refused (422,
the old rules stay live); a shadow is not gated, it changes no answer. Stopping what does not
run, or losing a race to another stop or promote of the same challenger, is a 409 (Conflict).
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, jsonify

from service.domain import rulebook
from service.entrypoints.http import roles
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import json_body, services
from service.entrypoints.http.roles import admin_identity
from service.usecases import rule_changes as changes

log = logging.getLogger("loan_decide.api")
bp = Blueprint("rule_changes", __name__, url_prefix="/admin")
bp.before_request(roles.require_admin)
_VERSION = re.compile(r"sha256:[0-9a-f]{64}")   # whole string: `$` would take a final newline


def _version(body: dict) -> str:
    version = body.get("rules_version")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ApiError(400, "invalid_request", "rules_version must be an archived version "
                       "('sha256:' and 64 hex digits).", {"rules_version": ["Not a rules version."]})
    return version


def _share(body: dict) -> float:
    share = body.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ApiError(400, "invalid_request", "share must be a number above 0 and at most 1.",
                       {"share": ["Must be a number in (0, 1]."]})
    return float(share)


def _run(action, *args):
    """Run an admin action; its refusals become clear 4xx answers."""
    try:
        return action(*args)
    except changes.KitFailed as exc:
        log.error("rule change refused by its kit", extra={"fields": {"error": str(exc)[:500]}})
        raise ApiError(422, "rules_refused", f"Refused; the live rules stay: {exc}",
                       {"kit": exc.result.failures[:20]}) from None
    except changes.UnknownVersion as exc:
        raise ApiError(404, "not_found", f"Not archived or not running: {exc}. Archive a "
                       "rules directory with `loan-decide rules archive DIR`.",
                       {"rules_version": ["Unknown."]}) from None
    except rulebook.RulesError as exc:
        raise ApiError(422, "rules_refused", f"Refused; the live rules stay: {exc}") from None


@bp.post("/rules/shadow")
def start_shadow() -> Response:
    version = _version(json_body())
    return jsonify(_run(services().changes.start_shadow, version, admin_identity()))


@bp.delete("/rules/shadow")
def stop_shadow() -> Response:
    return jsonify(_run(services().changes.stop_shadow, admin_identity()))


@bp.get("/shadow")
def shadow_report() -> Response:
    report = services().changes.shadow_report()
    if report is None:
        raise ApiError(404, "not_found", "No shadow is running: POST /admin/rules/shadow starts one.")
    return jsonify(report)


@bp.post("/rules/challenger")
def start_challenger() -> Response:
    body = json_body()
    version, share = _version(body), _share(body)
    return jsonify(_run(services().changes.start_challenger, version, share, admin_identity()))


@bp.delete("/rules/challenger")
def stop_challenger() -> Response:
    return jsonify(_run(services().changes.stop_challenger, admin_identity()))


@bp.post("/rules/promote")
def promote() -> Response:
    return jsonify(_run(services().changes.promote, admin_identity()))


@bp.get("/rules/history")
def history() -> Response:
    return jsonify({"history": services().changes.history()})
