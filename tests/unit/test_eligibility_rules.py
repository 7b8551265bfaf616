"""rules/eligibility.yaml, E1-E11: for every rule an applicant that passes and one that fails,
through the plain-Python core and through HTTP (the `decide` fixture runs both)."""
import pytest

from tests.conftest import codes, payload
from tests.unit.rule_table import Case, check

CASES = [
    Case("E1 verified", "E1.real_name", payload(), None),
    Case("E1 null means not verified", "E1.real_name", payload(real_name_verified_at=None),
         "REAL_NAME_NOT_VERIFIED"),
    Case("E1 weilidai verified exactly one year ago", "E1.real_name_age",
         payload(real_name_verified_at="2025-11-23"), None),
    Case("E1 weilidai verified a day short of a year", "E1.real_name_age",
         payload(real_name_verified_at="2025-11-24"), "REAL_NAME_TOO_RECENT"),
    Case("E1 one-year rule is weilidai's only", "E1.real_name_age",
         payload("xiaoe", real_name_verified_at="2026-11-01"), None, applies=False),
    Case("E2 age 18", "E2.age", payload(age=18), None),
    Case("E2 minor", "E2.age", payload(age=17), "AGE_OUT_OF_RANGE"),
    Case("E2 age 60", "E2.age", payload(age=60), None),
    Case("E2 age 61", "E2.age", payload(age=61), "AGE_OUT_OF_RANGE"),
    Case("E2 partner age 55", "E2.age", payload("partner", age=55), None),
    Case("E2 partner age 56", "E2.age", payload("partner", age=56), "AGE_OUT_OF_RANGE"),
    Case("E3 weilidai 600", "E3.pay_score", payload(pay_score=600, groups=[]), None),
    Case("E3 weilidai 599", "E3.pay_score", payload(pay_score=599, groups=[]), "PAY_SCORE_TOO_LOW"),
    Case("E3 xiaoe 550", "E3.pay_score", payload("xiaoe", pay_score=550, groups=[]), None),
    Case("E3 xiaoe 549", "E3.pay_score", payload("xiaoe", pay_score=549, groups=[]),
         "PAY_SCORE_TOO_LOW"),
    Case("E3 blue-collar uplift 580", "E3.pay_score_blue_collar", payload(pay_score=580), None),
    Case("E3 blue-collar uplift 579", "E3.pay_score_blue_collar", payload(pay_score=579),
         "PAY_SCORE_TOO_LOW"),
    Case("E3 no uplift without a verified badge", "E3.pay_score",
         payload(pay_score=590, documents={"work_badge_verified": False}), "PAY_SCORE_TOO_LOW"),
    Case("E4 bank card bound", "E4.bank_card", payload("emergency"), None),
    Case("E4 no bank card", "E4.bank_card", payload("emergency", bank_card_bound=False),
         "CARD_NOT_BOUND"),
    Case("E4 weilidai credit card bound", "E4.credit_card", payload(), None),
    Case("E4 weilidai no credit card", "E4.credit_card", payload(credit_card_bound=False),
         "CARD_NOT_BOUND"),
    Case("E4 credit card is weilidai's only", "E4.credit_card",
         payload("xiaoe", credit_card_bound=False), None, applies=False),
    Case("E5 bureau authorised", "E5.bureau_authorized", payload(), None),
    Case("E5 bureau not authorised", "E5.bureau_authorized", payload(bureau_authorized=False),
         "BUREAU_NOT_AUTHORIZED"),
    Case("E5 clean record", "E5.bureau_record", payload(), None),
    Case("E5 adverse record", "E5.bureau_record", payload(bureau_major_adverse=True),
         "BUREAU_ADVERSE_RECORD"),
    Case("E6 weilidai 8 payments", "E6.activity", payload(payments_per_month=8), None),
    Case("E6 weilidai 7 payments", "E6.activity", payload(payments_per_month=7), "LOW_ACTIVITY"),
    Case("E6 activity is weilidai's only", "E6.activity", payload("xiaoe", payments_per_month=5),
         None, applies=False),
    Case("E7 face verified", "E7.face", payload(), None),
    Case("E7 face not verified", "E7.face", payload(face_verified=False), "IDENTITY_DOCS_INCOMPLETE"),
    Case("E7 we2000 ID card uploaded", "E7.id_card_upload", payload("we2000"), None),
    Case("E7 we2000 ID card missing", "E7.id_card_upload",
         payload("we2000", id_card_uploaded=False), "IDENTITY_DOCS_INCOMPLETE"),
    Case("E7 upload is we2000's only", "E7.id_card_upload",
         payload("weilidai", id_card_uploaded=False), None, applies=False),
    Case("E8 partner sesame 550", "E8.partner_requirements", payload("partner", sesame_score=550), None),
    Case("E8 partner sesame 549", "E8.partner_requirements", payload("partner", sesame_score=549),
         "PARTNER_REQUIREMENTS_UNMET"),
    Case("E8 partner carrier not verified", "E8.partner_requirements",
         payload("partner", carrier_verified=False), "PARTNER_REQUIREMENTS_UNMET"),
    Case("E8 partner contacts not granted", "E8.partner_requirements",
         payload("partner", contacts_authorized=False), "PARTNER_REQUIREMENTS_UNMET"),
    Case("E9 whitelisted", "E9.whitelist", payload(), None),
    Case("E9 not whitelisted", "E9.whitelist", payload(whitelisted=False), "NOT_WHITELISTED"),
    Case("E9 whitelist is weilidai's only", "E9.whitelist", payload("xiaoe", whitelisted=False),
         None, applies=False),
    Case("E10 health 60", "E10.health_score", payload(health_score=60), None),
    Case("E10 health 59", "E10.health_score", payload(health_score=59), "HEALTH_SCORE_TOO_LOW"),
    Case("E11 course done", "E11.risk_education", payload(), None),
    Case("E11 course not done", "E11.risk_education", payload(risk_education_done=False),
         "RISK_EDUCATION_REQUIRED"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_eligibility_rule(case, decide):
    check(case, decide)


def test_every_reason_is_returned_in_rule_order(decide):
    decision = decide(payload(age=17, whitelisted=False, bank_card_bound=False, health_score=10))
    assert codes(decision) == ["AGE_OUT_OF_RANGE", "CARD_NOT_BOUND", "NOT_WHITELISTED",
                               "HEALTH_SCORE_TOO_LOW"]
    assert decision["offer"] is None


def test_prerequisite_failures_do_not_start_the_reapply_window(decide):
    decision = decide(payload(bank_card_bound=False, risk_education_done=False))
    assert decision["outcome"] == "rejected"
    assert decision["reapply_after"] is None


def test_credit_refusal_starts_the_90_day_window(decide):
    decision = decide(payload(bureau_major_adverse=True))
    assert decision["reapply_after"] == "2027-02-21T08:00:00Z"   # decided_at + 90 days
