"""rules/groups.yaml: special groups' documents and caps, and the elderly flag."""
import pytest

from tests.conftest import codes, payload
from tests.unit.rule_table import Case, check

STUDENT_DOCS = {"chsi_verified": True, "guardian_confirmed": True}
OVERSEAS_DOCS = {"passport_verified": True, "domestic_guarantor": True}
SME_DOCS = {"business_license": True, "cash_flow_verified": True}

CASES = [
    Case("student with documents", "student.documents",
         payload("xiaoe", groups=["student"], documents=STUDENT_DOCS), None),
    Case("student without guardian", "student.documents",
         payload("xiaoe", groups=["student"], documents={"chsi_verified": True}),
         "SPECIAL_GROUP_DOCS_MISSING", outcome="review"),
    Case("student at the 5,000 cap", "student.cap",
         payload("xiaoe", amount=5000, groups=["student"], documents=STUDENT_DOCS), None),
    Case("student over the cap", "student.cap",
         payload("xiaoe", amount=5001, groups=["student"], documents=STUDENT_DOCS),
         "AMOUNT_OUT_OF_RANGE"),
    Case("overseas with documents", "overseas.documents",
         payload("xiaoe", groups=["overseas"], documents=OVERSEAS_DOCS), None),
    Case("overseas without guarantor", "overseas.documents",
         payload("xiaoe", groups=["overseas"], documents={"passport_verified": True}),
         "SPECIAL_GROUP_DOCS_MISSING", outcome="review"),
    Case("overseas at the 30,000 cap", "overseas.cap",
         payload("xiaoe", amount=30000, groups=["overseas"], documents=OVERSEAS_DOCS), None),
    Case("overseas over the cap", "overseas.cap",
         payload("xiaoe", amount=30001, groups=["overseas"], documents=OVERSEAS_DOCS),
         "AMOUNT_OUT_OF_RANGE"),
    Case("sme owner with documents", "sme_owner.documents",
         payload("xiaoe", groups=["sme_owner"], documents=SME_DOCS), None),
    Case("sme owner without cash flow", "sme_owner.documents",
         payload("xiaoe", groups=["sme_owner"], documents={"business_license": True}),
         "SPECIAL_GROUP_DOCS_MISSING", outcome="review"),
    Case("sme owner at the 100,000 cap (weilidai, high tier)", "sme_owner.cap",
         payload(amount=100000, payments_per_month=150, groups=["sme_owner"], documents=SME_DOCS), None),
    Case("sme owner over the cap", "sme_owner.cap",
         payload(amount=100001, payments_per_month=150, groups=["sme_owner"], documents=SME_DOCS),
         "AMOUNT_OUT_OF_RANGE"),
    Case("zhouzhuanjin takes no group cap", "sme_owner.cap",
         payload("zhouzhuanjin", amount=200000, groups=["sme_owner"]), None, applies=False),
    Case("zhouzhuanjin with licence and cash flow", "sme_owner.zhouzhuanjin_documents",
         payload("zhouzhuanjin"), None),
    Case("zhouzhuanjin without licence", "sme_owner.zhouzhuanjin_documents",
         payload("zhouzhuanjin", documents={"business_license": False}),
         "SPECIAL_GROUP_DOCS_MISSING", outcome="review"),
    Case("blue-collar with badge", "blue_collar.documents", payload(), None),
    Case("blue-collar without badge", "blue_collar.documents",
         payload(documents={"work_badge_verified": False}), "SPECIAL_GROUP_DOCS_MISSING",
         outcome="review"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_group_rule(case, decide):
    check(case, decide)


def test_over_cap_names_the_largest_allowed_amount(decide):
    decision = decide(payload("xiaoe", amount=8000, groups=["student"], documents=STUDENT_DOCS))
    (reason,) = decision["reasons"]
    assert reason["code"] == "AMOUNT_OUT_OF_RANGE"
    assert reason["inputs"]["largest_allowed_amount"] == 5000
    assert decision["reapply_after"] is None   # the user may ask again at once for less


def test_student_asking_for_education_above_the_cap_is_out_of_range(decide):
    """education starts at 10,000, above the student cap: no amount fits."""
    decision = decide(payload("education", amount=10000, groups=["student"], documents=STUDENT_DOCS))
    assert codes(decision) == ["AMOUNT_OUT_OF_RANGE"]
    assert decision["reasons"][0]["inputs"]["largest_allowed_amount"] == 5000


@pytest.mark.parametrize("age, flagged", [(59, False), (60, True)])
def test_elderly_care_flag(decide, age, flagged):
    decision = decide(payload("xiaoe", age=age))
    assert decision["outcome"] == "approved"
    assert ("elderly_care" in decision["flags"]) is flagged


def test_rejected_beats_review(decide):
    decision = decide(payload(bureau_major_adverse=True, documents={"work_badge_verified": False}))
    assert decision["outcome"] == "rejected"
    assert set(codes(decision)) == {"BUREAU_ADVERSE_RECORD", "SPECIAL_GROUP_DOCS_MISSING"}
