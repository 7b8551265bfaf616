"""The one error shape, `{"error": {"code", "message", "fields"}}`, and the handlers that make it.

Registered once, at the app: a route raises (a use case's NotFound or Conflict, the store's
StoreUnavailable, marshmallow's ValidationError, an ApiError of its own) and never builds an
error response itself. Nothing reaches the client as a traceback or an HTML page.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from service.adapters.state_store import StoreBusy, StoreUnavailable
from service.entrypoints.http import metrics
from service.usecases.decide import Conflict, NotFound
from service.usecases.errors import Forbidden

log = logging.getLogger("loan_decide.api")
RETRY = {"Retry-After": "1"}


class ApiError(Exception):
    """A 4xx (or 503) a route decides on, with the fields it concerns."""

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or {}
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, fields: dict | None = None,
                   headers: dict | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"applicant.age": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = str(key) if key != "_schema" else ""
            path = ".".join(p for p in (prefix, name) if p) or "_request"
            out.update(flatten_errors(value, path))
    else:
        items = messages if isinstance(messages, list) else [messages]
        out[prefix or "_request"] = [str(m) for m in items]
    return out


def _invalid(exc: ValidationError) -> Response:
    return error_response(400, "invalid_request", "Some fields are invalid.", flatten_errors(exc.messages))


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)


def _store_down(exc: StoreUnavailable) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.REDIS_ERRORS.labels(route).inc()
    log.error("redis unavailable", extra={"fields": {"route": route, "error": str(exc)}})
    if exc.outcome_unknown:
        return error_response(503, "outcome_unknown",
                              "The state store did not confirm the write: it may have been stored. "
                              "Send the same request again (the same application_id gets the "
                              "stored decision); check the user's state before repeating a grace use.",
                              headers=RETRY)
    return error_response(503, "store_unavailable",
                          "The state store is unavailable; nothing was written. Try again.", headers=RETRY)


def _store_busy(exc: StoreBusy) -> Response:
    log.warning("user busy", extra={"fields": {"error": str(exc)}})
    return error_response(503, "busy", str(exc), headers=RETRY)


def _not_found(exc: NotFound) -> Response:
    return error_response(404, "not_found", str(exc))


def _forbidden(exc: Forbidden) -> Response:
    return error_response(403, "forbidden", str(exc))


def _conflict(exc: Conflict) -> Response:
    return error_response(409, "conflict", str(exc))


def _http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    response = error_response(exc.code or 500, code, exc.description or exc.name)
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"fields": {"path": request.path}})
    return error_response(500, "internal_error", "The request could not be processed.")


def register(app: Flask) -> None:
    """Every exception a route may raise, mapped once to its status and code."""
    for kind, handler in ((ValidationError, _invalid), (ApiError, _api_error),
                          (StoreUnavailable, _store_down), (StoreBusy, _store_busy),
                          (NotFound, _not_found), (Conflict, _conflict), (Forbidden, _forbidden),
                          (HTTPException, _http_error), (Exception, _unexpected)):
        app.register_error_handler(kind, handler)
