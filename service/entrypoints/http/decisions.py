"""POST /decide: the body, validated, goes to the decide use case; the decision comes back as
encoded once by the use case (the same bytes as the stored record and the log)."""
from __future__ import annotations

import contextvars

from flask import Blueprint, Response, g

from service.entrypoints.http import metrics
from service.entrypoints.http.requests import decide_schema, json_body, services
from service.usecases.rule_changes import compare

bp = Blueprint("decisions", __name__)


@bp.post("/decide")
def decide() -> Response:
    payload = json_body()
    result = services().decisions.decide(payload, decide_schema().load(payload))
    decision = result.decision
    g.fields = {"decision_id": decision["decision_id"], "product": decision["product"],
                "outcome": decision["outcome"], "replayed": result.replayed,
                "rules_version": decision["rules_version"]}
    if not result.replayed:
        metrics.count_decision(decision)
        if "arm" in decision:
            metrics.child(metrics.DECISIONS_BY_ARM, decision["arm"], decision["outcome"]).inc()
    response = Response(result.json(), mimetype="application/json")
    if result.shadow_input is not None:   # the shadow decides after the answer is sent
        rules = services().rules
        # in the request's context (its log ids and trace, OpenTelemetry's current span): the
        # shadow's lines and spans belong to the request, though they come after its response
        context = contextvars.copy_context()
        response.call_on_close(lambda: context.run(
            lambda: metrics.count_shadow(rules.observe(decision, result.shadow_input, compare))))
    return response
