"""HTTP entry point: translate requests to the use cases and their results to JSON.

Every error leaves as `{"error": {"code", "message", "fields"}}`; nothing reaches the client
as a traceback or an HTML page. Each request gets an id (X-Request-ID, accepted or made),
returned in the response and carried by every log line, and one JSON log line when it ends.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from schemas.request import CancelRequestSchema, DecideRequestSchema, GraceRequestSchema, id_problems
from service.adapters.state_store import StoreBusy, StoreUnavailable
from service.domain import rulebook
from service.domain.clock import Clock
from service.entrypoints import logs
from service.entrypoints.http import jsonbody, metrics
from service.entrypoints.http.openapi import build_spec
from service.entrypoints.security import KeyRing
from service.entrypoints.settings import Settings
from service.usecases.decide import Conflict, DecisionService, NotFound

log = logging.getLogger("loan_decide.api")
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
    """The request body as a JSON object; every way it can be wrong is a 4xx (jsonbody)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        payload = jsonbody.parse(request_body(request.max_content_length))
    except jsonbody.BodyError as exc:
        raise ApiError(400, "malformed_json", exc.message, {exc.field: [exc.message]}) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.",
                       {"_request": ["Must be a JSON object."]})
    return payload


def request_body(limit: int | None) -> bytes:
    """The body, at most `limit` bytes or a 413. werkzeug enforces the limit on Content-Length
    only: a chunked body (no length) was cut at the limit and the prefix decided (issue 9)."""
    if request.content_length is not None or limit is None:
        return request.get_data(cache=True)
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise ApiError(413, "request_entity_too_large",
                   f"The body is larger than {limit} bytes.")


def checked_id(name: str, value: str) -> str:
    """A user or application id from a path or query, held to the body's id rules."""
    problems = id_problems(value)
    if problems:
        raise ApiError(400, "invalid_request", f"The {name} is invalid.", {name: problems})
    return value


def create_app(settings: Settings | None = None, *, service: DecisionService | None = None,
               clock: Clock | None = None) -> Flask:
    """The app factory: build (or take) the decision service and wire the routes to it."""
    settings = settings or Settings.from_env()
    if service is None:
        service = build_service(settings, clock)
    client_keys, admin_keys = KeyRing(settings.api_keys), KeyRing(settings.admin_keys)
    if client_keys.overlaps(admin_keys):
        raise ValueError("ADMIN_API_KEY must differ from every client key in API_KEYS")
    app = Flask("loan_decide")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["decision_service"] = service
    spec_cache: dict[str, dict] = {}

    schemas: dict[str, DecideRequestSchema] = {}

    def request_schema() -> DecideRequestSchema:
        """One schema per rules version (the term ranges come from the rules)."""
        book = service.policy.book
        if book.version not in schemas:
            schemas.clear()
            schemas[book.version] = DecideRequestSchema(term_ranges=book.term_ranges())
        return schemas[book.version]

    @app.before_request
    def _begin() -> Response | None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.log_token = logs.request_id.set(g.request_id)
        g.fields = {}
        if request.path in OPEN_PATHS or request.path.startswith("/admin/"):
            return None
        if client_keys and not client_keys.accepts(request.headers.get("X-API-Key")):
            return error_response(401, "unauthorized", "A valid X-API-Key header is required.")
        service.sync_rules()
        return None

    @app.after_request
    def _end(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.LATENCY.labels(request.method, route, str(response.status_code)).observe(elapsed)
        if request.path not in ("/healthz", "/metrics"):
            log.info("request", extra={"fields": {
                "method": request.method, "route": route, "status": response.status_code,
                "latency_ms": round(elapsed * 1000, 2), **g.get("fields", {})}})
        return response

    @app.teardown_request
    def _teardown(_exc) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.request_id.reset(token)

    @app.post("/decide")
    def decide():
        payload = json_body()
        data = request_schema().load(payload)
        result = service.decide(payload, data)
        decision = result.decision
        g.fields = {"decision_id": decision["decision_id"], "product": decision["product"],
                    "outcome": decision["outcome"], "replayed": result.replayed,
                    "rules_version": decision["rules_version"]}
        if not result.replayed:
            metrics.DECISIONS.labels(decision["product"], decision["outcome"]).inc()
            for reason in decision["reasons"]:
                metrics.REASONS.labels(reason["code"]).inc()
        return Response(result.json(), mimetype="application/json")

    @app.post("/applications/<application_id>/cancel")
    def cancel(application_id: str):
        checked_id("application_id", application_id)
        data = CancelRequestSchema().load(json_body())
        view = service.cancel(data["user_id"], application_id)
        g.fields = {"decision_id": view["decision"]["decision_id"], "status": view["status"]}
        return jsonify(view)

    @app.get("/applications/<application_id>")
    def application(application_id: str):
        checked_id("application_id", application_id)
        user_id = request.args.get("user_id")
        if not user_id:
            raise ApiError(400, "invalid_request", "user_id is required.",
                           {"user_id": ["Missing query parameter."]})
        checked_id("user_id", user_id)
        return jsonify(service.application(user_id, application_id))

    @app.get("/users/<user_id>/state")
    def user_state(user_id: str):
        checked_id("user_id", user_id)
        return jsonify(service.user_state(user_id))

    @app.post("/users/<user_id>/grace-uses")
    def grace_use(user_id: str):
        checked_id("user_id", user_id)
        max_days = service.policy.book.time.grace.max_days
        data = GraceRequestSchema(max_days=max_days).load(json_body())
        return jsonify(service.use_grace(user_id, data["days"]))

    @app.post("/admin/rules/reload")
    def reload_rules():
        from service.usecases.reload import reload_rules as reload

        if not admin_keys:
            return error_response(403, "forbidden", "Admin endpoints are off: set ADMIN_API_KEY.")
        presented = request.headers.get("X-Admin-Key")
        if not presented:   # no admin role claimed: forbidden; a wrong key: not authenticated
            return error_response(403, "forbidden", "An X-Admin-Key header is required.")
        if not admin_keys.accepts(presented):
            return error_response(401, "unauthorized", "The X-Admin-Key is not valid.")
        dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
        try:
            result = reload(service, Path(settings.rules_dir), settings.reload_sample, dry_run)
        except rulebook.RulesError as exc:
            metrics.RULES_RELOADS.labels("refused").inc()
            log.error("rules reload refused", extra={"fields": {"error": str(exc)}})
            return error_response(422, "rules_refused",
                                  f"The rules directory was refused; the old rules stay live: {exc}")
        metrics.RULES_RELOADS.labels("dry_run" if dry_run else "applied").inc()
        log.warning("rules reload", extra={"fields": {k: v for k, v in result.items() if k != "sample"}
                                           | {"sample_changed": result["sample"]["changed"]}})
        return jsonify(result)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        if not service.ready():
            return error_response(503, "not_ready", "Redis is unavailable.", headers={"Retry-After": "1"})
        return jsonify({"status": "ready", "rules_version": service.rules_version})

    @app.get("/metrics")
    def prometheus():
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.get("/openapi.json")
    def openapi():
        if "doc" not in spec_cache:
            spec_cache["doc"] = build_spec("1.0.0", service.policy.book)
        return jsonify(spec_cache["doc"])

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        return error_response(400, "invalid_request", "Some fields are invalid.",
                              flatten_errors(exc.messages))

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REDIS_ERRORS.labels(route).inc()
        log.error("redis unavailable", extra={"fields": {"route": route, "error": str(exc)}})
        if exc.outcome_unknown:
            return error_response(503, "outcome_unknown",
                                  "The state store did not confirm the write: it may have been stored. "
                                  "Send the same request again (the same application_id gets the "
                                  "stored decision); check the user's state before repeating a grace use.",
                                  headers={"Retry-After": "1"})
        return error_response(503, "store_unavailable",
                              "The state store is unavailable; nothing was written. Try again.",
                              headers={"Retry-After": "1"})

    @app.errorhandler(StoreBusy)
    def _store_busy(exc: StoreBusy):
        log.warning("user busy", extra={"fields": {"error": str(exc)}})
        return error_response(503, "busy", str(exc), headers={"Retry-After": "1"})

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return error_response(409, "conflict", str(exc))

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
