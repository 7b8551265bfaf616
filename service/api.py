"""HTTP entry point: translate requests to the decide use case and decisions to JSON.

Every error leaves as `{"error": {"code", "message", "fields"}}`; nothing reaches the client
as a traceback or an HTML page.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from schemas.request import CancelRequestSchema, DecideRequestSchema, GraceRequestSchema
from service import redisconn, rulebook
from service.clock import Clock
from service.decide import Conflict, DecisionService, NotFound
from service.policy import Policy
from service.settings import Settings
from service.statestore import RedisStateStore, StoreBusy, StoreUnavailable

log = logging.getLogger("loan_decide.api")


class ApiError(Exception):
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


def json_body() -> dict:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = request.get_data(cache=True)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.",
                       {"_request": ["Must be a JSON object."]})
    return payload


def build_service(settings: Settings, clock: Clock | None = None) -> DecisionService:
    """The decision service the settings describe: rules, Redis (or the embedded default), clock."""
    policy = Policy(rulebook.load(settings.rules_dir))
    if redisconn.is_embedded(settings.redis_url):
        log.warning("REDIS_URL is not set: using the embedded in-process store (fakeredis). "
                    "State lives in this one process and is lost when it stops; "
                    "set REDIS_URL for production or several workers.")
    client = redisconn.connect(settings.redis_url, timeout=settings.redis_timeout)
    store = RedisStateStore(client, prefix=settings.key_prefix, lock_ttl_ms=settings.lock_ttl_ms,
                            lock_wait_s=settings.lock_wait_s, retention_days=settings.retention_days)
    service = DecisionService(policy, store, clock=clock)
    service.archive_rules()
    return service


def create_app(settings: Settings | None = None, *, service: DecisionService | None = None,
               clock: Clock | None = None) -> Flask:
    """The app factory: build (or take) the decision service and wire the routes to it."""
    settings = settings or Settings.from_env()
    if service is None:
        service = build_service(settings, clock)
    app = Flask("loan_decide")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["decision_service"] = service

    def request_schema() -> DecideRequestSchema:
        return DecideRequestSchema(term_ranges=service.policy.book.term_ranges())

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.post("/decide")
    def decide():
        payload = json_body()
        data = request_schema().load(payload)
        result = service.decide(payload, data)
        decision = result.decision
        log.info("decision", extra={"fields": {
            "decision_id": decision["decision_id"], "product": decision["product"],
            "outcome": decision["outcome"], "reasons": [r["code"] for r in decision["reasons"]],
            "replayed": result.replayed,
            "latency_ms": round((time.perf_counter() - g.started) * 1000, 2)}})
        return jsonify(decision)

    @app.post("/applications/<application_id>/cancel")
    def cancel(application_id: str):
        data = CancelRequestSchema().load(json_body())
        return jsonify(service.cancel(data["user_id"], application_id))

    @app.get("/applications/<application_id>")
    def application(application_id: str):
        user_id = request.args.get("user_id")
        if not user_id:
            raise ApiError(400, "invalid_request", "user_id is required.",
                           {"user_id": ["Missing query parameter."]})
        return jsonify(service.application(user_id, application_id))

    @app.get("/users/<user_id>/state")
    def user_state(user_id: str):
        return jsonify(service.user_state(user_id))

    @app.post("/users/<user_id>/grace-uses")
    def grace_use(user_id: str):
        max_days = service.policy.book.time.grace.max_days
        data = GraceRequestSchema(max_days=max_days).load(json_body())
        return jsonify(service.use_grace(user_id, data["days"]))

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        if not service.ready():
            return error_response(503, "not_ready", "Redis is unavailable.", headers={"Retry-After": "1"})
        return jsonify({"status": "ready", "rules_version": service.rules_version})

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable):
        log.error("redis unavailable", extra={"fields": {"path": request.path, "error": str(exc)}})
        return error_response(503, "store_unavailable",
                              "The state store is unavailable; nothing was written. Try again.",
                              headers={"Retry-After": "1"})

    @app.errorhandler(StoreBusy)
    def _store_busy(exc: StoreBusy):
        log.warning("user busy", extra={"fields": {"path": request.path, "error": str(exc)}})
        return error_response(503, "busy", str(exc), headers={"Retry-After": "1"})

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return error_response(409, "conflict", str(exc))

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        return error_response(400, "invalid_request", "Some fields are invalid.",
                              flatten_errors(exc.messages))

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        return error_response(500, "internal_error", "The request could not be processed.")

    return app
