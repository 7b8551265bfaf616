"""GET /applications/<id>/explanation on the real Redis and on a 3-master cluster: each outcome,
a reviewer's decision, another user's application, bad input, an older rules version read
from the archive, and Redis going away."""
from __future__ import annotations

import datetime as dt
import shutil

import jsonschema
import pytest
from prometheus_client import REGISTRY

from schemas.request import DecideRequestSchema, canonical_request
from service.adapters import rules_files
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import build_policy
from service.entrypoints.http.app import create_app
from service.entrypoints.http.openapi import build_spec
from service.entrypoints.settings import Settings
from tests.conftest import NOW, RULES_DIR, payload, redis_services
from tests.servers import RedisServer

pytestmark = pytest.mark.integration

CLIENT = {"X-API-Key": "client-key"}
REVIEWER = {"X-API-Key": "reviewer-key"}
CONTRACT_KEYS = ["application_id", "user_id", "outcome", "decided_at", "decided_by", "summary",
                 "reasons", "data_used", "recourse", "human_review", "rules_version"]


def api_for(services):
    settings = Settings(api_keys=("client-key",), reviewer_keys=("reviewer-key",))
    return create_app(settings, services=services).test_client()


@pytest.fixture
def api(service):
    return api_for(service)


def decide(api, user: str, app: str, doc: dict) -> dict:
    response = api.post("/decide", json=dict(doc, user_id=user, application_id=app), headers=CLIENT)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def explanation(api, user: str, app: str, lang: str | None = None, headers=CLIENT):
    query = f"?user_id={user}" + (f"&lang={lang}" if lang is not None else "")
    return api.get(f"/applications/{app}/explanation{query}", headers=headers)


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("applicant_rights_requests_total",
                                     {"request": "explanation", "outcome": outcome}) or 0.0


def flat_paths(doc: dict, prefix: str = "") -> list[str]:
    return [path for key, value in doc.items()
            for path in (flat_paths(value, f"{prefix}{key}.") if isinstance(value, dict)
                         else [f"{prefix}{key}"])]


def given_paths(doc: dict, policy) -> set[str]:
    """The fields the request gives, in canonical form (false documents, no groups: not given)."""
    valid = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(doc)
    return set(flat_paths(canonical_request(valid)))


def assert_contract(doc: dict) -> None:
    spec = build_spec("test")
    jsonschema.validate(doc, {"$schema": "https://json-schema.org/draft/2020-12/schema",
                              "$ref": "#/components/schemas/Explanation",
                              "components": spec["components"]})
    assert list(doc) == CONTRACT_KEYS


@pytest.mark.parametrize("doc, outcome, codes", [
    (payload(), "approved", []),
    (payload(monthly_income=2000), "cooling_off", []),
    (payload(age=17, whitelisted=False), "rejected", ["AGE_OUT_OF_RANGE", "NOT_WHITELISTED"]),
    (payload(drop=("pay_score",)), "review", ["MISSING_DATA"]),
], ids=["approved", "cooling_off", "rejected", "review"])
def test_each_outcome_explained_in_both_languages(api, policy, doc, outcome, codes):
    decision = decide(api, "u-1", "a-1", doc)
    ok = counted("ok")
    for lang in (None, "zh", "en"):
        response = explanation(api, "u-1", "a-1", lang)
        assert response.status_code == 200, response.get_json()
        got = response.get_json()
        assert_contract(got)
        assert (got["outcome"], got["decided_by"], got["decided_at"]) == (
            outcome, "rules", decision["decided_at"])
        assert [r["code"] for r in got["reasons"]] == codes
        assert got["rules_version"] == decision["rules_version"] == policy.version
        assert got["recourse"] == decision["recourse"]
        assert got["summary"] and ("微粒贷" if lang != "en" else "Weilidai") in got["summary"]
        words = "message_en" if lang == "en" else "message_zh"
        assert [r["text"] for r in got["reasons"]] == [r[words] for r in decision["reasons"]]
        assert got["data_used"] and set(got["data_used"]) <= given_paths(doc, policy)
        assert "trace" not in response.get_data(as_text=True)
    assert counted("ok") == ok + 3
    assert explanation(api, "u-1", "a-1").get_json() == explanation(api, "u-1", "a-1", "zh").get_json()


def test_a_rejection_shows_the_values_read_and_what_was_asked(api):
    decide(api, "u-2", "a-2", payload(age=17, credit_applications_6m=4))
    got = explanation(api, "u-2", "a-2", "en").get_json()
    age, applications = got["reasons"]
    assert (age["your_value"], age["required"]) == ({"age": 17}, {"min_age": 18, "max_age": 60})
    assert applications["your_value"] == {"credit_applications_6m": 4}
    assert applications["required"] == {"max_applications_6m": 2}
    assert got["human_review"] == {"available": True, "until": "2026-12-23T08:00:00Z", "status": None}
    assert got["recourse"]["unreachable"] == ["AGE_OUT_OF_RANGE", "TOO_MANY_APPLICATIONS"]


def test_a_reviewers_decision_is_explained_as_the_reviewers(api, service, clock):
    decide(api, "u-3", "a-3", payload(drop=("pay_score",)))
    decide(api, "u-3", "a-4", payload(drop=("pay_score",), amount=3000))
    clock.set(NOW + dt.timedelta(hours=1))
    for app, outcome, codes in (("a-3", "rejected", ["PAY_SCORE_TOO_LOW"]), ("a-4", "approved", [])):
        closed = api.post(f"/applications/{app}/review", headers=REVIEWER, json={
            "user_id": "u-3", "reviewer_id": "rev-1", "outcome": outcome, "reason_codes": codes,
            "note": "checked"})
        assert closed.status_code == 200, closed.get_json()
    clock.set(NOW + dt.timedelta(hours=2))
    rejected = explanation(api, "u-3", "a-3", "en").get_json()
    assert_contract(rejected)
    assert (rejected["decided_by"], rejected["outcome"], rejected["decided_at"]) == (
        "reviewer", "rejected", "2026-11-23T09:00:00Z")
    assert [r["code"] for r in rejected["reasons"]] == ["PAY_SCORE_TOO_LOW"]
    assert rejected["summary"].startswith("After review by a person")
    approved = explanation(api, "u-3", "a-4", "zh").get_json()
    assert (approved["decided_by"], approved["outcome"], approved["reasons"]) == ("reviewer", "approved", [])
    assert approved["summary"] == "经人工审核，您的微粒贷申请已通过，可借额度为3,000元。"
    assert "checked" not in str(approved) + str(rejected)   # the reviewer's note is not shown


def test_another_users_application_is_unknown(api):
    decide(api, "u-4", "a-5", payload(age=17))
    missing = counted("not_found")
    for user, app in (("u-other", "a-5"), ("u-4", "nope")):
        response = explanation(api, user, app)
        plain = api.get(f"/applications/{app}?user_id={user}", headers=CLIENT)
        assert response.status_code == plain.status_code == 404
        assert response.get_json()["error"]["code"] == plain.get_json()["error"]["code"] == "not_found"
    assert "u-4" not in explanation(api, "u-other", "a-5").get_data(as_text=True)
    assert counted("not_found") == missing + 3


def test_bad_input_is_a_400_naming_the_field(api):
    decide(api, "u-5", "a-6", payload())
    invalid = counted("invalid")
    for query, field in (("?user_id=u-5&lang=fr", "lang"), ("?user_id=u-5&lang=", "lang"),
                         ("?user_id=u-5&lang=ZH", "lang"), ("", "user_id"),
                         ("?user_id=a%2Fb", "user_id"), ("?user_id=" + "x" * 129, "user_id")):
        response = api.get(f"/applications/a-6/explanation{query}", headers=CLIENT)
        assert response.status_code == 400, (query, response.get_json())
        assert list(response.get_json()["error"]["fields"]) == [field], query
    response = api.get("/applications/%0A/explanation?user_id=u-5", headers=CLIENT)
    assert response.status_code == 400 and "application_id" in response.get_json()["error"]["fields"]
    assert counted("invalid") == invalid + 7


def test_keys_as_for_reading_an_application(api):
    decide(api, "u-6", "a-7", payload())
    assert explanation(api, "u-6", "a-7", headers={}).status_code == 401
    assert explanation(api, "u-6", "a-7", headers={"X-API-Key": "nope"}).status_code == 401
    assert explanation(api, "u-6", "a-7", headers=REVIEWER).status_code == 200


def test_a_decision_of_an_older_rules_version_is_explained_by_its_own_rules(store_url, policy, clock,
                                                                          tmp_path):
    """Made by a version without explanations.yaml, archived in Redis; read by a service now on
    the bundled rules: the decision's own book answers (no summary), not the live one."""
    older_dir = tmp_path / "rules"
    shutil.copytree(RULES_DIR, older_dir)
    (older_dir / "explanations.yaml").unlink()
    older = redis_services(store_url, build_policy(rules_files.load(older_dir)), clock)
    assert older.rules.archive_own()
    decide(api_for(older), "u-7", "a-8", payload(age=17))
    now = api_for(redis_services(store_url, policy, FixedClock(NOW)))
    got = explanation(now, "u-7", "a-8", "en").get_json()
    assert got["rules_version"] == older.rules.version != policy.version
    assert got["summary"] is None and got["reasons"][0]["code"] == "AGE_OUT_OF_RANGE"
    decide(now, "u-7b", "a-9", payload(age=17))
    assert explanation(now, "u-7b", "a-9", "en").get_json()["summary"]


def test_redis_down_is_a_503(policy, tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        services = redis_services(server.url, policy, FixedClock(NOW), redis_timeout=0.5)
        api = api_for(services)
        decide(api, "u-8", "a-10", payload())
        assert explanation(api, "u-8", "a-10").status_code == 200
    finally:
        server.stop()
    unavailable = counted("unavailable")
    response = explanation(api, "u-8", "a-10")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "store_unavailable"
    assert counted("unavailable") == unavailable + 1
