"""Prometheus metrics. Multi-worker safe: under gunicorn, PROMETHEUS_MULTIPROC_DIR is set (see
docker/gunicorn.conf.py) and /metrics adds up every worker's samples."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from service.usecases.errors import Conflict, Forbidden, NotFound
from service.usecases.ports import StoreBusy, StoreUnavailable

DECISIONS = Counter("decisions_total", "Decisions made (replays of a stored decision excluded)",
                    ["product", "outcome"])
REASONS = Counter("decision_reasons_total", "Reasons returned on decisions", ["code"])
LATENCY = Histogram("http_request_duration_seconds", "Request latency", ["method", "route", "status"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
REDIS_ERRORS = Counter("redis_errors_total", "Requests that failed because Redis was unavailable",
                       ["route"])
RULES_RELOADS = Counter("rules_reloads_total", "Rules reload attempts", ["result"])
DECISIONS_BY_ARM = Counter("decisions_by_arm_total", "Decisions while a challenger runs, by arm",
                           ["arm", "outcome"])
# the shadow's verdict on each decision it decided again (after the response): identical,
# changed, or failed (it raised). Per process, so Prometheus may sum it over replicas; the
# report at /admin/shadow is the same counts from Redis, by version.
SHADOW = Counter("shadow_evaluations_total", "Decisions the shadow rules decided again, by result",
                 ["result"])

REVIEWS = Counter("reviews_total", "Review cases closed by a reviewer", ["outcome"])
# the reviewers' desk: step claim, release, note; result written, or unchanged (the same step
# again, a release of a claim that had ended)
DESK_STEPS = Counter("review_desk_steps_total", "Claims, releases and notes at the reviewers' desk",
                     ["step", "result"])
# an applicant's rights: explanation, human_review, export; outcome: ok, replayed (the same
# request again), refused (409), not_found, invalid, unavailable
APPLICANT_RIGHTS = Counter("applicant_rights_requests_total",
                           "Requests for an explanation, a human review or a copy of one's data",
                           ["request", "outcome"])

# overrides: step one_step, request (ADMIN_API_KEYS' first operator), approve (the second);
# outcome as applicant rights', and forbidden (403: a requester approving, the single key)
OVERRIDES = Counter("overrides_total", "Override calls, by step and outcome", ["step", "outcome"])

# RATE_LIMITS (rate_limits.py): requests refused with a 429, by the key's role; and the limiter's
# storage failing, after which the request went on unlimited
RATE_LIMITED = Counter("rate_limited_total", "Requests refused (429) by RATE_LIMITS, by the key's role", ["role"])
RATE_LIMIT_STORAGE_ERRORS = Counter("rate_limit_storage_errors_total",
                                    "Rate-limit checks the limiter's storage failed (served unlimited)")

# how an applicant-rights request or an override that raised ended (an ApiError, a 4xx, is
# "invalid", a 403 "forbidden")
_RIGHTS_OUTCOMES = ((NotFound, "not_found"), (Conflict, "refused"), (Forbidden, "forbidden"),
                    ((StoreBusy, StoreUnavailable), "unavailable"))


@contextmanager
def rights_request(request: str) -> Iterator[dict]:
    """Count one applicant-rights request by how it ended: the route sets `outcome` (ok or
    replayed); an error the route lets through is counted by its kind, and goes on."""
    with _counted(APPLICANT_RIGHTS, request) as ended:
        yield ended


@contextmanager
def override_step(step: str) -> Iterator[dict]:
    """Count one override call (`one_step`, `request`, `approve`) by how it ended, as
    rights_request counts (a 403 is `forbidden`; a 401 never reaches the route)."""
    with _counted(OVERRIDES, step) as ended:
        yield ended


@contextmanager
def _counted(metric: Counter, label: str) -> Iterator[dict]:
    ended = {"outcome": "ok"}
    try:
        yield ended
    except Exception as exc:
        ended["outcome"] = next((o for kinds, o in _RIGHTS_OUTCOMES if isinstance(exc, kinds)),
                                "forbidden" if getattr(exc, "status", None) == 403
                                else "invalid" if isinstance(exc, (ValidationError, HTTPException))
                                or getattr(exc, "status", 500) < 500 else "error")
        raise
    finally:
        child(metric, label, ended["outcome"]).inc()


# The latency metric's method label: these, or "other". The method is the client's to choose
# (any token, answered 404/405), and one label per made-up method grew every worker's metric
# files and the cache below without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: labels() checks the values and takes a lock at
    every call, and returns the same child every time for the same values (nothing here ever
    removes one)."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def review_queue(pending: int, oldest_age_seconds: float | None, overdue: int) -> bytes:
    """The review queue, read from Redis at scrape time (one truth for every worker)."""
    registry = CollectorRegistry()
    registry.register(_Queue(pending, oldest_age_seconds or 0.0, overdue))
    return generate_latest(registry)


class _Queue:
    def __init__(self, pending: int, oldest: float, overdue: int):
        self.pending, self.oldest, self.overdue = pending, oldest, overdue

    def collect(self):
        yield GaugeMetricFamily("review_cases_pending", "Review cases waiting for a reviewer",
                                value=self.pending)
        yield GaugeMetricFamily("review_oldest_pending_age_seconds",
                                "Age of the oldest pending review case (0: none)", value=self.oldest)
        yield GaugeMetricFamily("review_cases_overdue",
                                "Pending review cases older than review_sla_hours", value=self.overdue)


def count_decision(decision: dict) -> None:
    """A decision made now (not a stored one sent again): by product and outcome, and its reasons."""
    child(DECISIONS, decision["product"], decision["outcome"]).inc()
    for reason in decision["reasons"]:
        child(REASONS, reason["code"]).inc()


def count_shadow(counts: Mapping[str, int] | None) -> None:
    """One shadow evaluation (the counts LiveRules.observe added; None: no shadow ran)."""
    if counts:
        result = "failed" if counts.get("failed") else "changed" if counts.get("changed") else "identical"
        child(SHADOW, result).inc()


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
