"""Who may call what (API.md "Additions", keys): client, reviewer and admin roles.

`X-API-Key` carries a client key (API_KEYS) or a reviewer key (REVIEWER_API_KEYS). A reviewer
key reaches the reviewer endpoints and reads (GET) of applications and user state, never
`/decide` or another write (403); a client key never reaches the reviewer endpoints (403). Admin
endpoints (the `admin`, `rule_changes` and `audited` blueprints) take only `X-Admin-Key`, checked
by their blueprints wherever their path is. A missing or unknown key is a 401. The reviewer console's
static files (the `console` blueprint) need no key: the page holds no data until a reviewer key
is typed into it, and everything it shows comes through the reviewer endpoints with that key.
"""
from __future__ import annotations

import hashlib

from flask import Response, current_app, request

from service.entrypoints.http import errors

REVIEWER_BLUEPRINTS = frozenset({"reviews"})
ADMIN_BLUEPRINTS = frozenset({"admin", "rule_changes", "audited"})
OPEN_BLUEPRINTS = frozenset({"console"})


def refusal() -> Response | None:
    """The 401/403 this request gets for its key, or None when it may go on."""
    req = request._get_current_object()   # each use of the proxy looks the context up again
    blueprint = req.blueprint
    if blueprint in ADMIN_BLUEPRINTS or blueprint in OPEN_BLUEPRINTS:
        return None
    extensions = current_app.extensions
    clients, reviewers = extensions["client_keys"], extensions["reviewer_keys"]
    presented = req.headers.get("X-API-Key")
    if blueprint in REVIEWER_BLUEPRINTS:
        if not reviewers:
            return errors.error_response(403, "forbidden", "Reviewer endpoints are off: set REVIEWER_API_KEYS.")
        if reviewers.accepts(presented):
            return None
        if clients.accepts(presented):
            return errors.error_response(403, "forbidden", "A client key cannot use reviewer endpoints.")
        return errors.error_response(401, "unauthorized", "A valid reviewer X-API-Key header is required.")
    if reviewers.accepts(presented):
        if req.method in ("GET", "HEAD"):
            return None
        return errors.error_response(403, "forbidden", "A reviewer key cannot decide or change applications.")
    if clients and not clients.accepts(presented):
        return errors.error_response(401, "unauthorized", "A valid X-API-Key header is required.")
    return None


def is_reviewer() -> bool:
    """Whether the request carries a reviewer key (the reviewer sees a case's request)."""
    return current_app.extensions["reviewer_keys"].accepts(request.headers.get("X-API-Key"))


def require_admin() -> None:
    """The admin blueprints' check: a missing key is 403 (no admin role claimed), a wrong one 401.
    The single ADMIN_API_KEY and every operator's key of ADMIN_API_KEYS are admin keys."""
    extensions = current_app.extensions
    admin_keys, operator_keys = extensions["admin_keys"], extensions["operator_keys"]
    if not admin_keys and not operator_keys:
        raise errors.ApiError(403, "forbidden", "Admin endpoints are off: set ADMIN_API_KEY or ADMIN_API_KEYS.")
    presented = request.headers.get("X-Admin-Key")
    if not presented:
        raise errors.ApiError(403, "forbidden", "An X-Admin-Key header is required.")
    if not (admin_keys.accepts(presented) or operator_keys.accepts(presented)):
        raise errors.ApiError(401, "unauthorized", "The X-Admin-Key is not valid.")


def four_eyes() -> bool:
    """Whether overrides take two operators: ADMIN_API_KEYS is set."""
    return bool(current_app.extensions["operator_keys"])


def operator() -> str:
    """The operator whose ADMIN_API_KEYS key this request presented. The single ADMIN_API_KEY
    names no one, so it cannot be one of the two operators of an override (403)."""
    if not four_eyes():
        raise errors.ApiError(403, "forbidden", "Four-eyes overrides are off: set ADMIN_API_KEYS.")
    found = current_app.extensions["operator_keys"].operator_of(request.headers.get("X-Admin-Key"))
    if found is None:
        raise errors.ApiError(403, "forbidden", "With ADMIN_API_KEYS set an override takes two operators: "
                              "use an operator's key from ADMIN_API_KEYS, not ADMIN_API_KEY.")
    return found


def admin_identity() -> str:
    """Who acted: a fingerprint of the admin key presented (never the key itself)."""
    presented = request.headers.get("X-Admin-Key", "")
    return "admin-key:" + hashlib.sha256(presented.encode()).hexdigest()[:12]


def caller() -> tuple[str, str] | None:
    """The role and the key of a request, for the rate limits (rate_limits.py), once `refusal`
    let it through: None when no key of a role was accepted (the admin blueprints check their
    key after this: a key they refuse is counted against no one). Without API_KEYS a caller
    with no accepted key is the one anonymous client (key "")."""
    req = request._get_current_object()
    extensions = current_app.extensions
    blueprint = req.blueprint
    if blueprint in OPEN_BLUEPRINTS:
        return None
    if blueprint in ADMIN_BLUEPRINTS:
        presented = req.headers.get("X-Admin-Key")
        if extensions["admin_keys"].accepts(presented) or extensions["operator_keys"].accepts(presented):
            return "admin", presented
        return None
    presented = req.headers.get("X-API-Key")
    if extensions["reviewer_keys"].accepts(presented):
        return "reviewer", presented
    clients = extensions["client_keys"]
    if clients.accepts(presented):
        return "client", presented
    return None if clients else ("client", "")
