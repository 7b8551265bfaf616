"""The OpenAPI 3.1 document, generated from the marshmallow schemas (apispec)."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import validate

from schemas import request as rq
from schemas import response as rs
from schemas import review as rv
from schemas.fields import StrictBoolean, StrictDate, StrictNumber


def _strict_number(self, field, **kwargs) -> dict:
    """Type and bounds of the contract's strict numbers (apispec only reads core fields')."""
    if not isinstance(field, StrictNumber):
        return {}
    out = {"type": "integer"} if field.integer else {}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            if validator.min is not None:
                out["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
            if validator.max is not None:
                out["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
    return out


def _json(schema: str) -> dict:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict:
    described = {400: "Invalid request: every bad field is named", 401: "Missing or invalid API key",
                 403: "The key's role may not use this endpoint",
                 404: "Unknown application or user", 409: "Conflict", 413: "Body too large",
                 415: "Body is not application/json", 422: "Rules directory refused",
                 429: "RATE_LIMITS: this key's requests are over its role's rate; nothing was done "
                      "(Retry-After, X-RateLimit-Limit/Remaining/Reset)",
                 503: "Redis unavailable or busy (Retry-After)"}
    return {str(c): {"description": described[c], "content": _json("Error")} for c in codes}


_LIMIT_HEADERS = {
    "Retry-After": {"description": "Whole seconds until the key's window has room (at least 1)",
                    "schema": {"type": "integer", "minimum": 1}},
    "X-RateLimit-Limit": {"description": "Requests the role's rate allows in its window",
                          "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the window", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Epoch seconds when the window next has room",
                          "schema": {"type": "integer"}}}


def _rate_limited(doc: dict) -> None:
    """429 on every operation that takes a key (RATE_LIMITS counts each key); the open ones
    (`security: []`: health, readiness, metrics) are never limited. The document is built:
    the Error schema is named by its reference."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    limited = {**_errors(429)["429"], "content": error, "headers": _LIMIT_HEADERS}
    for operations in doc["paths"].values():
        for operation in operations.values():
            if operation.get("security", doc["security"]):
                operation["responses"]["429"] = limited


def build_spec(version: str, book=None) -> dict:
    """The document; with the loaded rules, the bounds the rules set (term range, grace days)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Loan-decision rule engine", version=version, openapi_version="3.1.0",
                   plugins=[plugin], info={"description": "POST /decide and its companions; "
                                                          "see API.md for the contract."})
    plugin.map_to_openapi_type(StrictBoolean, "boolean", None)
    plugin.map_to_openapi_type(StrictNumber, "number", None)
    plugin.map_to_openapi_type(StrictDate, "string", "date")
    plugin.converter.add_attribute_function(_strict_number)
    for name, schema in [("DecideRequest", rq.DecideRequestSchema), ("CancelRequest", rq.CancelRequestSchema),
                         ("GraceRequest", rq.GraceRequestSchema), ("Decision", rs.DecisionSchema),
                         ("Error", rs.ErrorSchema), ("ApplicationView", rs.ApplicationViewSchema),
                         ("UserState", rs.UserStateSchema), ("ReloadResult", rs.ReloadResultSchema),
                         ("Health", rs.HealthSchema), ("Explanation", rs.ExplanationSchema)]:
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme("ApiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    spec.components.security_scheme("AdminKey", {"type": "apiKey", "in": "header", "name": "X-Admin-Key"})
    client = [{"ApiKey": []}]
    text = dict(rq.ID_JSON_SCHEMA)
    app_id = {"name": "application_id", "in": "path", "required": True, "schema": text}
    user_path = {"name": "user_id", "in": "path", "required": True, "schema": text}
    spec.path("/decide", operations={"post": {
        "summary": "Decide an application", "security": client,
        "requestBody": {"required": True, "content": _json("DecideRequest")},
        "responses": {"200": {"description": "The decision (approve or reject alike)",
                              "content": _json("Decision")}, **_errors(400, 401, 409, 413, 415, 503)}}})
    spec.path("/applications/{application_id}/cancel", operations={"post": {
        "summary": "Cancel a loan inside its cooling-off window", "security": client,
        "parameters": [app_id], "requestBody": {"required": True, "content": _json("CancelRequest")},
        "responses": {"200": {"description": "The application's status", "content": _json("ApplicationView")},
                      **_errors(400, 401, 404, 409, 415, 503)}}})
    spec.path("/applications/{application_id}", operations={"get": {
        "summary": "The stored decision and its status", "security": client,
        "parameters": [app_id, {"name": "user_id", "in": "query", "required": True, "schema": text}],
        "responses": {"200": {"description": "The application", "content": _json("ApplicationView")},
                      **_errors(400, 401, 404, 503)}}})
    spec.path("/applications/{application_id}/explanation", operations={"get": {
        "summary": "The decision explained to its applicant (PIPL art. 24)", "security": client,
        "parameters": [app_id, {"name": "user_id", "in": "query", "required": True, "schema": text},
                       {"name": "lang", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["zh", "en"], "default": "zh"}}],
        "responses": {"200": {"description": "The explanation", "content": _json("Explanation")},
                      **_errors(400, 401, 404, 503)}}})
    spec.path("/users/{user_id}/state", operations={"get": {
        "summary": "The per-user state the rules see", "security": client, "parameters": [user_path],
        "responses": {"200": {"description": "The state", "content": _json("UserState")},
                      **_errors(400, 401, 404, 503)}}})
    spec.path("/users/{user_id}/grace-uses", operations={"post": {
        "summary": "Record a repayment grace use (T5)", "security": client, "parameters": [user_path],
        "requestBody": {"required": True, "content": _json("GraceRequest")},
        "responses": {"200": {"description": "The state after it", "content": _json("UserState")},
                      **_errors(400, 401, 404, 409, 415, 503)}}})
    spec.path("/admin/rules/reload", operations={"post": {
        "summary": "Load the rules directory again and switch every worker to it",
        "security": [{"AdminKey": []}],
        "parameters": [{"name": "dry_run", "in": "query", "required": False, "schema": {"type": "boolean"}}],
        "responses": {"200": {"description": "The new version and the sample replay",
                              "content": _json("ReloadResult")},
                      "401": {"description": "The X-Admin-Key is wrong", "content": _json("Error")},
                      "403": {"description": "Admin endpoints are off or no X-Admin-Key was sent",
                              "content": _json("Error")}, **_errors(422, 503)}}})
    _review_paths(spec, app_id, user_path)
    _desk_paths(spec, app_id)
    _rule_change_paths(spec)
    for path, summary in [("/healthz", "Process up"), ("/readyz", "Redis reachable, rules loaded")]:
        spec.path(path, operations={"get": {"summary": summary, "security": [], "responses": {
            "200": {"description": "OK", "content": _json("Health")}, **_errors(503)}}})
    spec.path("/metrics", operations={"get": {"summary": "Prometheus metrics", "security": [],
                                              "responses": {"200": {"description": "Prometheus text",
                                                                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    doc = spec.to_dict()
    doc["security"] = client
    _rate_limited(doc)
    if book is not None:
        schemas = doc["components"]["schemas"]
        low = min(p.term_days_min for p in book.products.values())
        high = max(p.term_days_max for p in book.products.values())
        schemas["DecideRequest"]["properties"]["term_days"].update(
            minimum=low, maximum=high, description="Within the product's term range (rules/products.yaml).")
        schemas["GraceRequest"]["properties"]["days"].update(minimum=1, maximum=book.time.grace.max_days)
    return doc


def _review_paths(spec: APISpec, app_id: dict, user_path: dict) -> None:
    """Reviewer endpoints (reviewer key in X-API-Key) and audited admin actions."""
    for name, schema in [("ReviewRequest", rv.ReviewRequestSchema), ("OverrideRequest", rv.OverrideRequestSchema),
                         ("ErasureRequest", rv.ErasureRequestSchema), ("ReviewPage", rs.ReviewPageSchema),
                         ("ErasureResult", rs.ErasureResultSchema), ("ErasureReceipt", rs.ErasureReceiptSchema),
                         ("HumanReviewRequest", rv.HumanReviewRequestSchema), ("Export", rs.ExportSchema),
                         ("ReasonCodes", rs.ReasonCodesSchema)]:
        spec.components.schema(name, schema=schema)
    reviewer, admin = [{"ApiKey": []}], [{"AdminKey": []}]
    forbidden = {"403": {"description": "A key of another role, or the role is off", "content": _json("Error")}}
    query = lambda name, schema: {"name": name, "in": "query", "required": False, "schema": schema}
    spec.path("/reviews", operations={"get": {
        "summary": "Pending review cases, oldest first (reviewer key)", "security": reviewer,
        "parameters": [query("status", {"type": "string", "enum": ["pending"]}),
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                       query("cursor", {"type": "string"}),
                       query("product", dict(rq.ID_JSON_SCHEMA)),
                       query("requested_by", {"type": "string", "enum": ["rules", "applicant"]}),
                       query("claimed_by", {**rq.ID_JSON_SCHEMA, "description": "`none`: the unclaimed cases"}),
                       query("overdue", {"type": "string", "enum": ["true", "false"]})],
        "responses": {"200": {"description": "A page", "content": _json("ReviewPage")}, **forbidden,
                      **_errors(400, 401, 503)}}})
    spec.path("/reviews/reason-codes", operations={"get": {
        "summary": "The fixed reason codes a review may reject with (reviewer key)", "security": reviewer,
        "responses": {"200": {"description": "The codes, in the rules' order",
                              "content": _json("ReasonCodes")}, **forbidden, **_errors(401, 503)}}})
    spec.path("/applications/{application_id}/review", operations={"post": {
        "summary": "Close a review case (reviewer key)", "security": reviewer, "parameters": [app_id],
        "requestBody": {"required": True, "content": _json("ReviewRequest")},
        "responses": {"200": {"description": "The application view", "content": _json("ApplicationView")},
                      **forbidden, **_errors(400, 401, 404, 409, 413, 415, 503)}}})
    spec.path("/applications/{application_id}/human-review", operations={"post": {
        "summary": "The applicant asks for a person instead of the rules (PIPL art. 24; client key)",
        "parameters": [app_id], "requestBody": {"required": True, "content": _json("HumanReviewRequest")},
        "responses": {"200": {"description": "The application view, status review_requested",
                              "content": _json("ApplicationView")},
                      **_errors(400, 401, 403, 404, 409, 413, 415, 503)}}})
    spec.path("/users/{user_id}/export", operations={"get": {
        "summary": "Everything held of the user, with a receipt in the log (PIPL art. 45; admin key)",
        "security": admin, "parameters": [user_path, {**query("operator_id", dict(rq.ID_JSON_SCHEMA)), "required": True},
                                          {**query("reason", {"type": "string", "minLength": 1, "maxLength": 2000}),
                                           "required": True}],
        "responses": {"200": {"description": "The user's state, applications and log", "content": _json("Export")},
                      **forbidden, **_errors(400, 401, 404, 503)}}})
    user_state = {"application/json": {"schema": {"type": "object"}}}
    pending = {"application/json": {"schema": {"type": "object", "required": [
        "override_id", "status", "requested_by", "expires_at"], "properties": {
        "override_id": dict(rq.ID_JSON_SCHEMA), "status": {"type": "string", "enum": ["pending"]},
        "requested_by": dict(rq.ID_JSON_SCHEMA), "expires_at": {"type": "string", "format": "date-time"}}}}}
    spec.path("/users/{user_id}/overrides", operations={"post": {
        "summary": "Lift an active 90-day window (admin key); with ADMIN_API_KEYS, ask for it: "
                   "another operator approves (the operator is the key's; operator_id optional)",
        "security": admin, "parameters": [user_path],
        "requestBody": {"required": True, "content": _json("OverrideRequest")},
        "responses": {"200": {"description": "The user state (single ADMIN_API_KEY: one step)",
                              "content": user_state},
                      "202": {"description": "Pending for 24 hours, until another operator approves",
                              "content": pending},
                      **forbidden, **_errors(400, 401, 409, 413, 415, 503)}}})
    spec.path("/admin/overrides/{override_id}/approve", operations={"post": {
        "summary": "Apply a pending override: another operator's ADMIN_API_KEYS key (no body)",
        "security": admin,
        "parameters": [{"name": "override_id", "in": "path", "required": True, "schema": dict(rq.ID_JSON_SCHEMA)}],
        "responses": {"200": {"description": "The user state, the window lifted", "content": user_state},
                      "403": {"description": "The requester's own key, the single ADMIN_API_KEY, "
                                             "or four eyes are off", "content": _json("Error")},
                      **_errors(400, 401, 404, 409, 503)}}})
    spec.path("/users/{user_id}", operations={"delete": {
        "summary": "Erase the user's personal data (PIPL art. 47; admin key)", "security": admin,
        "parameters": [user_path], "requestBody": {"required": True, "content": _json("ErasureRequest")},
        "responses": {"200": {"description": "Counts and the receipt id", "content": _json("ErasureResult")},
                      **forbidden, **_errors(400, 401, 404, 413, 415, 503)}}})
    spec.path("/admin/erasures/{receipt_id}", operations={"get": {
        "summary": "An erasure receipt (admin key)", "security": admin,
        "parameters": [{"name": "receipt_id", "in": "path", "required": True, "schema": dict(rq.ID_JSON_SCHEMA)}],
        "responses": {"200": {"description": "The receipt", "content": _json("ErasureReceipt")},
                      **forbidden, **_errors(400, 401, 404, 503)}}})


def _desk_paths(spec: APISpec, app_id: dict) -> None:
    """The reviewers' desk: claims and notes on a pending case (reviewer key)."""
    spec.components.schema("ClaimRequest", schema=rv.ClaimRequestSchema)
    spec.components.schema("NoteRequest", schema=rv.NoteRequestSchema)
    reviewer = [{"ApiKey": []}]
    answer = {"200": {"description": "The application view (review: notes and claim)",
                      "content": _json("ApplicationView")}, **_errors(400, 401, 403, 404, 409, 413, 415, 503)}
    claim = lambda summary: {"summary": summary, "security": reviewer, "parameters": [app_id],
                             "requestBody": {"required": True, "content": _json("ClaimRequest")},
                             "responses": answer}
    spec.path("/reviews/{application_id}/claim", operations={
        "post": claim("Claim a pending case for review_claim_minutes (the holder again: extended)"),
        "delete": claim("Release one's claim (none held: 200, nothing written)")})
    spec.path("/reviews/{application_id}/notes", operations={"post": {
        "summary": "Add a note to a pending case (append-only; the same note again is not added twice)",
        "security": reviewer, "parameters": [app_id],
        "requestBody": {"required": True, "content": _json("NoteRequest")}, "responses": answer}})


def _rule_change_paths(spec) -> None:
    """Rule changes (API.md "Rule changes"): admin key only; bodies are JSON objects."""
    admin = [{"AdminKey": []}]
    obj = {"application/json": {"schema": {"type": "object"}}}
    body = {"required": True, "content": obj}
    for path, method, summary, codes, has_body in [
            ("/admin/rules/shadow", "post", "Evaluate an archived version beside every live decision", (400, 404, 422, 503), True),
            ("/admin/rules/shadow", "delete", "Stop the shadow (409: none runs)", (409, 503), False),
            ("/admin/shadow", "get", "The shadow's counts (evaluated = identical + changed + failed)", (404, 503), False),
            ("/admin/rules/challenger", "post", "Send a share of users to an archived version (kit-gated)", (400, 404, 422, 503), True),
            ("/admin/rules/challenger", "delete", "End the challenger (409: none runs)", (409, 503), False),
            ("/admin/rules/promote", "post", "Make the challenger live (kit-gated; 409: a racing call won)", (404, 409, 422, 503), False),
            ("/admin/rules/history", "get", "Every activation: who, when, versions, kit, sample", (503,), False)]:
        keys = {"401": {"description": "The X-Admin-Key is wrong", "content": _json("Error")},
                "403": {"description": "Admin endpoints are off or no X-Admin-Key was sent",
                        "content": _json("Error")}}
        operation = {"summary": summary, "security": admin, "responses": {
            "200": {"description": "OK", "content": obj}, **keys,
            **_errors(*codes, *((413, 415) if has_body else ()))}}
        if has_body:
            operation["requestBody"] = body
        spec.path(path, operations={method: operation})   # apispec merges a path's methods
