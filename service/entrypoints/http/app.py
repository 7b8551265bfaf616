"""The HTTP app factory: settings in, a Flask app with one blueprint per area out.

Routes only translate (request -> use case -> JSON); errors are mapped once (errors.py). Every
request gets an id (X-Request-ID, accepted or made), returned in the response and carried by
every log line, and one JSON log line when it ends. Every request is in a W3C trace too (its
`traceparent` continued, or a new trace when it has none or an invalid one: trace_context):
the response's `traceparent` names the request's span in it, and its log lines and the
decision-log records it writes carry the trace id; with OpenTelemetry on (bootstrap), that span
is exported. Client keys guard everything but the open operational paths and the admin
endpoints, which take only the admin key (admin.py); reviewer keys guard the reviewer
endpoints (roles.py). The reviewer console's static files are open
(console.py): the page holds no data until a reviewer key is typed into it. RATE_LIMITS
(rate_limits.py) counts an accepted key's request after its key check and before anything runs.
"""
from __future__ import annotations

import logging
import os
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

from service.domain.clock import Clock
from service.entrypoints import logs, trace_context
from service.entrypoints.bootstrap import Services, build_services, tracing_from
from service.entrypoints.http import admin, applications, decisions, errors, metrics, operations
from service.entrypoints.http import audited, console, rate_limits, reviews, roles
from service.entrypoints.http import explanations, rule_changes
from service.entrypoints.security import KeyRing, OperatorKeys
from service.entrypoints.settings import Settings
from service.usecases import request_trace

log = logging.getLogger("loan_decide.api")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def create_app(settings: Settings | None = None, *, services: Services | None = None,
               clock: Clock | None = None) -> Flask:
    """The app factory: build (or take) the wired use cases and hang the blueprints on them."""
    settings = settings or Settings.from_env()
    if services is None:
        services = build_services(settings, clock, tracing=tracing_from(os.environ))
    client_keys, admin_keys = KeyRing(settings.api_keys), KeyRing(settings.admin_keys)
    operator_keys = OperatorKeys(settings.operator_keys)
    if client_keys.overlaps(admin_keys) or client_keys.overlaps(operator_keys):
        raise ValueError("ADMIN_API_KEY and ADMIN_API_KEYS must differ from every client key in API_KEYS")
    if admin_keys.overlaps(operator_keys):
        raise ValueError("ADMIN_API_KEY must differ from every operator's key in ADMIN_API_KEYS")
    reviewer_keys = KeyRing(settings.reviewer_keys)
    if any(reviewer_keys.overlaps(ring) for ring in (client_keys, admin_keys, operator_keys)):
        raise ValueError("REVIEWER_API_KEYS must differ from every client key and admin key")
    app = Flask("loan_decide")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions.update(services=services, settings=settings,
                          client_keys=client_keys, admin_keys=admin_keys, reviewer_keys=reviewer_keys,
                          operator_keys=operator_keys, rate_limits=rate_limits.build(settings))
    app.before_request(_begin)
    app.after_request(_end)
    if app.extensions["rate_limits"] is not None:
        app.after_request(rate_limits.add_headers)
    app.teardown_request(_teardown)
    for blueprint in (decisions.bp, applications.bp, admin.bp, operations.bp, reviews.bp, audited.bp,
                      rule_changes.bp, explanations.bp, console.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    return app


def _begin() -> Response | None:
    """Stamp the request id; check the client key (open paths and /admin/ excepted), then the
    key's rate limit; then follow the rules the other workers run."""
    state = g._get_current_object()   # each use of the proxy `g` looks the context up again
    state.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    state.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    state.log_token = logs.request_id.set(state.request_id)
    _begin_trace(state)
    state.fields = {}
    path = request.path
    if path in operations.OPEN_PATHS or request.routing_exception is not None:
        return None   # the route first (404, 405), then the role
    admin_path = path.startswith("/admin/")   # the admin blueprints check their own key
    refused = None if admin_path else roles.refusal()   # the console's files are open
    extensions = current_app.extensions
    if refused is None and extensions["rate_limits"] is not None:
        refused = extensions["rate_limits"].refusal()   # after the key, before anything runs
    if refused is not None or admin_path or request.blueprint in roles.OPEN_BLUEPRINTS:
        return refused
    extensions["services"].rules.sync()
    return None


def _end(response: Response) -> Response:
    """The request id header, the latency metric and the one log line of the request."""
    state, req = g._get_current_object(), request._get_current_object()
    response.headers["X-Request-ID"] = state.get("request_id", "")
    trace = state.get("trace")
    if trace is not None:
        response.headers["traceparent"] = trace.header()
    state.response_status = response.status_code   # for the request's span, ended at teardown
    elapsed = time.perf_counter() - state.get("started", time.perf_counter())
    route = req.url_rule.rule if req.url_rule else "unmatched"
    method = req.method if req.method in metrics.METHODS else "other"   # any token a client sends
    metrics.child(metrics.LATENCY, method, route, str(response.status_code)).observe(elapsed)
    if req.path not in ("/healthz", "/metrics"):
        log.info("request", extra={"fields": {
            "method": req.method, "route": route, "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 2), **state.get("fields", {})}})
    return response


def _begin_trace(state) -> None:
    """The request's trace context, from its `traceparent`: continued by OpenTelemetry's
    request span when tracing is on, else by trace_context alone (a new span id, no span)."""
    parent = trace_context.parse(request.headers.get("traceparent"))
    tracing = current_app.extensions["services"].tracing
    if tracing is None:
        state.trace = trace_context.continued(parent)
    else:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in metrics.METHODS else "_OTHER"   # any token a client sends
        span = tracing.begin_request(f"{method} {route}", {"http.request.method": method, "http.route": route},
                                     (parent.trace_id, parent.parent_id, parent.flags) if parent else None)
        state.trace_span = span
        state.trace = trace_context.TraceContext(span.trace_id, span.span_id, span.flags)
    state.trace_token = request_trace.trace_id.set(state.trace.trace_id)


def _teardown(_exc) -> None:
    state = g._get_current_object()
    token = state.pop("log_token", None)
    if token is not None:
        logs.request_id.reset(token)
    token = state.pop("trace_token", None)
    if token is not None:
        request_trace.trace_id.reset(token)
    span = state.pop("trace_span", None)
    if span is not None:
        span.end(state.get("response_status"))
