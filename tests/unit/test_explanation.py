"""The explanation of a decision to its applicant (service.domain.explanation) and its rule file
(rules/explanations.yaml): every reason code the rules can give, produced by the real policy
through the HTTP app on the in-memory stores, explained in both languages."""
from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import pytest
import yaml

from schemas.request import DecideRequestSchema, canonical_request
from service.adapters import rules_files
from service.domain import conditions as cond
from service.domain.clock import FixedClock
from service.domain.explanation import LANGUAGES, explain, split_inputs
from service.domain.facts import FACT_FIELDS
from service.domain.review import reason_codes
from service.domain.rulebook import RuleBook
from service.domain.userstate import UserState
from service.entrypoints.bootstrap import build_policy
from service.entrypoints.http.app import create_app
from service.entrypoints.http.openapi import build_spec
from service.entrypoints.settings import Settings
from tests.conftest import NOW, ROOT, RULES_DIR, memory_services, payload

REVIEWER = {"X-API-Key": "reviewer-key"}
STATE_FACTS = frozenset(UserState().fact_fields())
APPLICANT_FACTS = frozenset(FACT_FIELDS) - STATE_FACTS

# name -> (the payload, the reason code it must give, an earlier payload of the same user)
CASES: dict[str, tuple[dict, str, dict | None]] = {
    "real_name_missing": (payload("xiaoe", real_name_verified_at=None), "REAL_NAME_NOT_VERIFIED", None),
    "real_name_recent": (payload(real_name_verified_at="2025-11-24"), "REAL_NAME_TOO_RECENT", None),
    "minor": (payload(age=17), "AGE_OUT_OF_RANGE", None),
    "pay_score": (payload(pay_score=500), "PAY_SCORE_TOO_LOW", None),
    "pay_score_no_badge": (payload(pay_score=590, groups=[], documents={"work_badge_verified": False}),
                           "PAY_SCORE_TOO_LOW", None),
    "bank_card": (payload(bank_card_bound=False), "CARD_NOT_BOUND", None),
    "credit_card": (payload(credit_card_bound=False), "CARD_NOT_BOUND", None),
    "bureau_consent": (payload(bureau_authorized=False), "BUREAU_NOT_AUTHORIZED", None),
    "bureau_record": (payload(bureau_major_adverse=True), "BUREAU_ADVERSE_RECORD", None),
    "activity": (payload(payments_per_month=5), "LOW_ACTIVITY", None),
    "face": (payload(face_verified=False), "IDENTITY_DOCS_INCOMPLETE", None),
    "id_upload": (payload("we2000", id_card_uploaded=False), "IDENTITY_DOCS_INCOMPLETE", None),
    "partner": (payload("partner", sesame_score=100), "PARTNER_REQUIREMENTS_UNMET", None),
    "whitelist": (payload(whitelisted=False), "NOT_WHITELISTED", None),
    "health": (payload(health_score=10), "HEALTH_SCORE_TOO_LOW", None),
    "risk_education": (payload(risk_education_done=False), "RISK_EDUCATION_REQUIRED", None),
    "applications": (payload(credit_applications_6m=5), "TOO_MANY_APPLICATIONS", None),
    "id_expiring": (payload(id_card_expiry="2026-12-01"), "ID_CARD_EXPIRING", None),
    "devices": (payload(night_device_switches_30d=5), "DEVICE_SWITCHING", None),
    "utilisation": (payload(credit_card_utilization=0.9), "CREDIT_UTILIZATION_HIGH", None),
    "debt": (payload(debt_to_income=0.9), "DEBT_TOO_HIGH", None),
    "lenders": (payload(concurrent_lenders=5), "DEBT_TOO_HIGH", None),
    "tier_cap": (payload(amount=40000), "AMOUNT_OUT_OF_RANGE", None),
    "under_minimum": (payload(amount=300), "AMOUNT_OUT_OF_RANGE", None),
    "we2000_line": (payload("we2000", amount=4000), "AMOUNT_OUT_OF_RANGE", None),
    "student_cap": (payload(amount=8000, groups=["student"],
                            documents={"chsi_verified": True, "guardian_confirmed": True}),
                    "AMOUNT_OUT_OF_RANGE", None),
    "student_docs": (payload(groups=["student"]), "SPECIAL_GROUP_DOCS_MISSING", None),
    "missing": (payload(drop=("pay_score",)), "MISSING_DATA", None),
    "cooldown": (payload(), "REAPPLY_COOLDOWN", payload(age=17)),
    "cooling_off_pending": (payload(), "COOLING_OFF_PENDING", payload(monthly_income=2000)),
}


class Desk:
    """The HTTP app on the in-memory stores, and the records it keeps."""

    def __init__(self, policy, clock: FixedClock | None = None):
        self.clock = clock or FixedClock(NOW)
        self.services = memory_services(policy, self.clock)
        settings = Settings(reviewer_keys=("reviewer-key",))
        self.api = create_app(settings, services=self.services).test_client()
        self.sent = 0

    def decide(self, doc: dict, user: str | None = None) -> tuple[str, str, dict]:
        self.sent += 1
        user, app = user or f"u-{self.sent}", f"a-{self.sent}"
        response = self.api.post("/decide", json=dict(doc, user_id=user, application_id=app))
        assert response.status_code == 200, response.get_json()
        return user, app, response.get_json()

    def record(self, user: str, app: str):
        return self.services.work.store.application(user, app)


@pytest.fixture(scope="module")
def decided(policy) -> dict[str, tuple[dict, Any]]:
    """Each case's payload and stored record, decided by the real policy."""
    desk, out = Desk(policy), {}
    for name, (doc, code, earlier) in CASES.items():
        user = f"u-{name}"
        if earlier is not None:
            desk.decide(earlier, user)
        _, app, decision = desk.decide(doc, user)
        assert code in [r["code"] for r in decision["reasons"]], (name, decision["reasons"])
        out[name] = (doc, desk.record(user, app))
    return out


def parameters_of(book: RuleBook, rule_id: str, code: str) -> set[str] | None:
    """What the rules giving `code` under `rule_id` are parameterised by, as their trace names it:
    their params, the product attributes they compare with, and a limit rule's allowed amount
    (None: no rule with a condition gives it: the missing-data template, a refusal by state)."""
    names: set[str] | None = None
    for rule in book.rules:
        if (rule.rule_id != rule_id or rule.reason is None or rule.reason.code != code
                or rule.condition is None):
            continue
        names = (names or set()) | set(rule.params)
        if rule.condition is not None:
            names |= {name.split(".", 1)[-1] for name in cond.params_used(rule.condition)}
        if rule.limit is not None:
            names.add("largest_allowed_amount")
    return names


def rejections_codes() -> set[str]:
    doc = yaml.safe_load((RULES_DIR / "rejections.yaml").read_text())
    return {rule["reason"]["code"] for rule in doc["rules"]}


def flat_paths(doc: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_paths(value, path + ".")
        else:
            yield path


def request_paths(doc: dict, book: RuleBook) -> set[str]:
    """The fields a request gives, in its canonical form (a false document, empty groups and a
    null optional field are what the request does not give)."""
    valid = DecideRequestSchema(term_ranges=book.term_ranges()).load(doc)
    return set(flat_paths(canonical_request(valid)))


# -- every reason code ---------------------------------------------------------------------------
def test_every_reason_code_the_rules_give_is_exercised(book):
    covered = {code for _, code, _ in CASES.values()}
    assert covered == set(reason_codes(book))
    assert rejections_codes() <= covered


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_reason_in_the_rules_words_and_split_into_the_applicants_values_and_the_rules(
        decided, book, lang):
    for name, (_, record) in decided.items():
        got = explain(record, book, lang, NOW)
        assert len(got["reasons"]) == len(record.decision["reasons"]), name
        for reason, shown in zip(record.decision["reasons"], got["reasons"]):
            assert (shown["code"], shown["rule_id"]) == (reason["code"], reason["rule_id"])
            assert shown["text"] == reason[f"message_{lang}"] and shown["text"]
            assert shown["advice"] == reason[f"advice_{lang}"] and shown["advice"]
            yours, required, inputs = shown["your_value"], shown["required"], reason["inputs"]
            assert set(yours) <= APPLICANT_FACTS, (name, yours)
            assert not set(required) & set(FACT_FIELDS), (name, required)
            assert {**yours, **required} == {k: v for k, v in inputs.items() if k not in STATE_FACTS}
            params = parameters_of(book, reason["rule_id"], reason["code"])
            if params is not None:   # a rule's check: it read the applicant, against its parameters
                assert yours, name
                assert set(required) <= params, (name, required, params)
            else:        # missing data, or a refusal by state: no applicant value was read
                assert yours == {} and required == inputs, name


def test_the_splits_read_as_the_reason_says(decided, book):
    def reason(name: str, code: str) -> dict:
        shown = explain(decided[name][1], book, "en", NOW)["reasons"]
        return next(r for r in shown if r["code"] == code)

    minor = reason("minor", "AGE_OUT_OF_RANGE")
    assert (minor["your_value"], minor["required"]) == ({"age": 17}, {"min_age": 18, "max_age": 60})
    counted = reason("applications", "TOO_MANY_APPLICATIONS")   # the service's own count is state
    assert counted["your_value"] == {"credit_applications_6m": 5}
    assert counted["required"] == {"max_applications_6m": 2}
    tier = reason("tier_cap", "AMOUNT_OUT_OF_RANGE")
    assert tier["your_value"] == {"payments_per_month": 40, "amount": 40000}
    assert tier["required"]["cap"] == 30000 and tier["required"]["largest_allowed_amount"] == 30000
    assert "limit_factor" not in tier["your_value"] | tier["required"]
    under = reason("under_minimum", "AMOUNT_OUT_OF_RANGE")
    assert under["required"] == {"min_amount": 500, "max_amount": 200000, "largest_allowed_amount": 30000}
    expiring = reason("id_expiring", "ID_CARD_EXPIRING")
    assert expiring["your_value"] == {"id_card_expiry": "2026-12-01"}
    assert expiring["required"] == {"earliest_allowed_expiry": "2027-02-23"}
    docs = reason("student_docs", "SPECIAL_GROUP_DOCS_MISSING")
    assert docs["your_value"] == {"is_student": True, "chsi_verified": False, "guardian_confirmed": False}
    missing = reason("missing", "MISSING_DATA")
    assert (missing["your_value"], missing["required"]) == ({}, {"field": "applicant.pay_score"})
    window = reason("cooldown", "REAPPLY_COOLDOWN")
    assert window["your_value"] == {} and set(window["required"]) == {"reapply_after"}


def test_split_inputs_keeps_the_users_state_out():
    yours, required = split_inputs({"credit_applications_6m": 1, "recorded_applications_6m": 4,
                                    "limit_factor": 1.5, "max_applications_6m": 2})
    assert yours == {"credit_applications_6m": 1} and required == {"max_applications_6m": 2}


# -- data used -----------------------------------------------------------------------------------
def test_data_used_is_what_evaluated_rules_read_of_the_request(decided, book):
    for name, (doc, record) in decided.items():
        used = explain(record, book, "zh", NOW)["data_used"]
        assert used == sorted(set(used)), name
        assert set(used) <= request_paths(doc, book), (name, set(used) - request_paths(doc, book))
        read = {FACT_FIELDS[f].source or "applicant.groups" for e in record.decision["trace"]
                if e["passed"] is not None for f in e["inputs"] if f in APPLICANT_FACTS}
        assert set(used) <= read, name
    full = explain(decided["minor"][1], book, "zh", NOW)["data_used"]
    assert {"amount", "applicant.age", "applicant.pay_score", "applicant.groups",
            "applicant.documents.work_badge_verified"} <= set(full)
    assert "applicant.documents.chsi_verified" not in full   # sent as false: not a claim
    assert "applicant.pay_score" not in explain(decided["missing"][1], book, "zh", NOW)["data_used"]
    assert explain(decided["cooldown"][1], book, "zh", NOW)["data_used"] == []   # no rule ran


def test_data_used_never_names_a_field_the_request_did_not_give(policy, book):
    """A seeded stream of every product and scenario (the benchmarks' applicants)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import applicants

    desk, groups_seen, explained = Desk(policy), 0, 0
    for n, (_, doc) in enumerate(applicants.generate(400, 7, NOW)):
        desk.clock.set(NOW + dt.timedelta(minutes=n))
        response = desk.api.post("/decide", json=doc)
        if response.status_code != 200:
            continue
        shown = desk.api.get(f"/applications/{doc['application_id']}/explanation"
                             f"?user_id={doc['user_id']}").get_json()
        used = set(shown["data_used"])
        assert used <= request_paths(doc, book), (doc, used - request_paths(doc, book))
        groups_seen += "applicant.groups" in used
        explained += 1
    assert explained > 300 and groups_seen > 10


# -- summaries -----------------------------------------------------------------------------------
def test_summaries_come_from_the_rules_file_per_outcome_and_language(policy, book):
    desk = Desk(policy)
    approved = desk.record(*desk.decide(payload())[:2])
    cooling = desk.record(*desk.decide(payload(monthly_income=2000))[:2])
    rejected = desk.record(*desk.decide(payload(age=17, whitelisted=False))[:2])
    review = desk.record(*desk.decide(payload(drop=("pay_score",)))[:2])
    texts = book.explanations.summaries["rules"]
    assert explain(approved, book, "zh", NOW)["summary"] == texts["approved"]["zh"].format(
        product="微粒贷", limit="5,000", count=0) == "您的微粒贷申请已通过，可借额度为5,000元。"
    assert explain(approved, book, "en", NOW)["summary"].startswith("Your Weilidai application was approved")
    assert "5,000 CNY" in explain(cooling, book, "en", NOW)["summary"]
    assert explain(cooling, book, "en", NOW)["outcome"] == "cooling_off"
    assert explain(rejected, book, "zh", NOW)["summary"] == "您的微粒贷申请未通过，共2项原因，每项原因的说明和建议见下方。"
    assert explain(review, book, "en", NOW)["summary"] == texts["review"]["en"].format(
        product="Weilidai", count=1)


def test_an_explanation_answers_the_openapi_document(decided, book):
    spec = build_spec("test", book)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": "#/components/schemas/Explanation", "components": spec["components"]}
    for _, record in decided.values():
        for lang in LANGUAGES:
            jsonschema.validate(explain(record, book, lang, NOW), schema)


def test_a_language_other_than_zh_or_en_is_refused(decided, book):
    with pytest.raises(ValueError):
        explain(decided["minor"][1], book, "fr", NOW)


def test_the_rules_file_is_written_in_the_languages_explained():
    from schemas.rules import LANGUAGES as FILE_LANGUAGES

    assert FILE_LANGUAGES == LANGUAGES


# -- a person's decision -------------------------------------------------------------------------
def test_once_a_reviewer_decided_the_explanation_is_the_reviewers(policy, book):
    desk = Desk(policy)
    user, app, _ = desk.decide(payload(drop=("pay_score",)))
    desk.clock.set(NOW + dt.timedelta(hours=2))
    closed = desk.api.post(f"/applications/{app}/review", headers=REVIEWER, json={
        "user_id": user, "reviewer_id": "rev-1", "outcome": "rejected",
        "reason_codes": ["MISSING_DATA", "PAY_SCORE_TOO_LOW"], "note": "no score"})
    assert closed.status_code == 200, closed.get_json()
    got = explain(desk.record(user, app), book, "en", NOW + dt.timedelta(hours=3))
    assert (got["decided_by"], got["outcome"], got["decided_at"]) == ("reviewer", "rejected",
                                                                      "2026-11-23T10:00:00Z")
    missing, score = got["reasons"]
    assert missing["required"] == {"field": "applicant.pay_score"}   # the decision's own reason
    assert (score["code"], score["rule_id"], score["your_value"], score["required"]) == (
        "PAY_SCORE_TOO_LOW", "E3", {}, {})
    assert score["text"] == "WeChat Pay score is below the required minimum"
    assert got["summary"].startswith("After review by a person") and "2 reason(s)" in got["summary"]
    assert got["human_review"] == {"available": False, "until": None, "status": None}

    user, app, _ = desk.decide(payload(amount=40000, drop=("payments_per_month",)))
    desk.api.post(f"/applications/{app}/review", headers=REVIEWER, json={
        "user_id": user, "reviewer_id": "rev-1", "outcome": "approved"})
    got = explain(desk.record(user, app), book, "zh", NOW + dt.timedelta(hours=3))
    assert (got["decided_by"], got["outcome"], got["reasons"]) == ("reviewer", "approved", [])
    assert got["summary"] == "经人工审核，您的微粒贷申请已通过，可借额度为5,000元。"


def test_human_review_standing_is_the_applicants_right_at_now(decided, book):
    standing = explain(decided["minor"][1], book, "zh", NOW)["human_review"]
    assert standing == {"available": True, "until": "2026-12-23T08:00:00Z", "status": None}
    later = explain(decided["minor"][1], book, "zh", NOW + dt.timedelta(days=31))["human_review"]
    assert later["available"] is False and later["until"] == "2026-12-23T08:00:00Z"
    by_state = explain(decided["cooldown"][1], book, "zh", NOW)["human_review"]
    assert by_state == {"available": False, "until": None, "status": None}


# -- a rules version without explanations.yaml ---------------------------------------------------
def rules_without_explanations(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / "explanations.yaml").unlink()
    return rules


def test_a_rules_version_without_the_file_explains_with_no_summary(tmp_path, decided, book):
    older = rules_files.load(rules_without_explanations(tmp_path))
    assert older.explanations is None and older.version != book.version
    desk = Desk(build_policy(older))
    for doc, code, earlier in CASES.values():
        user = f"u-{desk.sent}"
        if earlier is not None:
            desk.decide(earlier, user)
        _, app, _ = desk.decide(doc, user)
        record = desk.record(user, app)
        for lang in LANGUAGES:
            plain, worded = explain(record, older, lang, NOW), explain(record, book, lang, NOW)
            assert plain["summary"] is None and worded["summary"]
            assert {**plain, "summary": worded["summary"]} == worded
    answer = desk.api.get(f"/applications/{app}/explanation?user_id={user}&lang=en")
    assert answer.status_code == 200 and answer.get_json()["summary"] is None
