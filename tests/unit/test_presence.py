"""rules/presence.yaml: absent or null fields the product's rules read -> MISSING_DATA (review)."""
import pytest

from tests.conftest import codes, payload, trace_of


def missing_fields(decision):
    return [r["inputs"]["field"] for r in decision["reasons"] if r["code"] == "MISSING_DATA"]


@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_field_goes_to_review(decide, how):
    doc = payload(drop=("health_score",)) if how == "absent" else payload(health_score=None)
    decision = decide(doc)
    assert decision["outcome"] == "review"
    assert missing_fields(decision) == ["applicant.health_score"]
    assert decision["offer"] is None
    # the rule that reads it is reported as not evaluated, never as passed
    assert trace_of(decision, "E10", "health_score")["passed"] is None


def test_field_a_product_does_not_read_may_be_missing(decide):
    decision = decide(payload("weilidai", sesame_score=None, drop=("lingqiantong_balance",)))
    assert decision["outcome"] == "approved"


def test_partner_needs_sesame_score(decide):
    decision = decide(payload("partner", sesame_score=None))
    assert decision["outcome"] == "review"
    assert missing_fields(decision) == ["applicant.sesame_score"]


def test_real_name_null_means_no_but_absent_is_missing(decide):
    assert codes(decide(payload(real_name_verified_at=None)))[0] == "REAL_NAME_NOT_VERIFIED"
    decision = decide(payload(drop=("real_name_verified_at",)))
    assert decision["outcome"] == "review"
    assert missing_fields(decision) == ["applicant.real_name_verified_at"]


def test_every_missing_field_is_named(decide):
    decision = decide(payload(drop=("pay_score", "whitelisted", "id_card_expiry")))
    assert sorted(missing_fields(decision)) == ["applicant.id_card_expiry", "applicant.pay_score",
                                                "applicant.whitelisted"]


def test_missing_data_with_a_rejection_is_rejected(decide):
    decision = decide(payload(age=17, drop=("health_score",)))
    assert decision["outcome"] == "rejected"
    assert set(codes(decision)) == {"MISSING_DATA", "AGE_OUT_OF_RANGE"}


# -- issue 17.2: a null document is unknown, not "no": MISSING_DATA naming it ------------------
NULL_DOCUMENT_CASES = [
    ("student, chsi_verified null", payload(groups=["student"], documents={
        "chsi_verified": None, "guardian_confirmed": True}), "applicant.documents.chsi_verified"),
    ("student, guardian_confirmed null", payload(groups=["student"], documents={
        "chsi_verified": True, "guardian_confirmed": None}), "applicant.documents.guardian_confirmed"),
    ("zhouzhuanjin, business_license null", payload("zhouzhuanjin", documents={
        "business_license": None, "cash_flow_verified": True}), "applicant.documents.business_license"),
    ("overseas, passport_verified null", payload(groups=["overseas"], documents={
        "passport_verified": None, "domestic_guarantor": True}), "applicant.documents.passport_verified"),
    ("blue collar, work badge null", payload(groups=["blue_collar"], documents={
        "work_badge_verified": None}), "applicant.documents.work_badge_verified"),
]


@pytest.mark.parametrize("doc, field", [c[1:] for c in NULL_DOCUMENT_CASES],
                         ids=[c[0] for c in NULL_DOCUMENT_CASES])
def test_null_document_is_missing_data(decide, doc, field):
    decision = decide(doc)
    assert decision["outcome"] == "review" and decision["offer"] is None
    assert missing_fields(decision) == [field]


@pytest.mark.parametrize("value, outcome", [(True, "approved"), (False, "review")])
def test_document_given_is_decided_as_before(decide, value, outcome):
    """The boundary: true passes, false is the group's missing documents, null is MISSING_DATA."""
    decision = decide(payload("zhouzhuanjin", documents={"business_license": value,
                                                         "cash_flow_verified": True}))
    assert decision["outcome"] == outcome and missing_fields(decision) == []


def test_null_proof_is_no_proof(decide):
    """repayment_proof is read by T4 only (no rule): null obtains no grant and is not missing."""
    decision = decide(payload(amount=45000, documents={"repayment_proof": None}))
    assert codes(decision) == ["AMOUNT_OUT_OF_RANGE"] and "temporary_limit" not in decision["flags"]


def test_openapi_allows_a_null_document():
    import jsonschema

    from service.entrypoints.http.openapi import build_spec

    spec = build_spec("test")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": "#/components/schemas/DecideRequest", "components": spec["components"]}
    doc = dict(payload(groups=["student"], documents={"chsi_verified": None}),
               user_id="u", application_id="a")
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(doc, applicant=dict(doc["applicant"], documents={"chsi_verified": 1})),
                            schema)
