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
