"""The applicant's explanation of a decision (API.md "Applicant rights", PIPL art. 24): the route
checks the ids and the language, calls one use case, and counts the request by how it ended
(`applicant_rights_requests_total{request="explanation"}`), so how often applicants use the
right, and how often they ask about an application that is not theirs, can be watched."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from service.adapters.state_store import StoreBusy, StoreUnavailable
from service.domain.explanation import DEFAULT_LANGUAGE, LANGUAGES
from service.entrypoints.http import metrics
from service.entrypoints.http.errors import ApiError
from service.entrypoints.http.requests import checked_id, services
from service.usecases.errors import NotFound

bp = Blueprint("explanations", __name__)
REQUEST = "explanation"


@bp.get("/applications/<application_id>/explanation")
def explanation(application_id: str) -> Response:
    with counted(REQUEST):
        checked_id("application_id", application_id)
        user_id = checked_id("user_id", required_query("user_id"))
        lang = request.args.get("lang", DEFAULT_LANGUAGE)
        if lang not in LANGUAGES:
            raise ApiError(400, "invalid_request", "The lang is invalid.",
                           {"lang": [f"Must be one of: {', '.join(LANGUAGES)}."]})
        doc = services().decisions.explanation(user_id, application_id, lang)
    g.fields = {"decided_by": doc["decided_by"], "outcome": doc["outcome"], "lang": lang}
    return jsonify(doc)


def required_query(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise ApiError(400, "invalid_request", f"{name} is required.",
                       {name: ["Missing query parameter."]})
    return value


@contextmanager
def counted(request_name: str) -> Iterator[None]:
    """Count one applicant-rights request by its outcome: ok, invalid (400), not_found (404),
    unavailable (503); anything else propagates uncounted, to the 500 handler."""
    try:
        yield
    except (ApiError, ValidationError):
        metrics.child(metrics.APPLICANT_RIGHTS, request_name, "invalid").inc()
        raise
    except NotFound:
        metrics.child(metrics.APPLICANT_RIGHTS, request_name, "not_found").inc()
        raise
    except (StoreUnavailable, StoreBusy):
        metrics.child(metrics.APPLICANT_RIGHTS, request_name, "unavailable").inc()
        raise
    metrics.child(metrics.APPLICANT_RIGHTS, request_name, "ok").inc()
