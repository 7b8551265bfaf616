"""rules/limits.yaml: product ranges and the WE2000 line."""
import pytest

from tests.conftest import payload
from tests.unit.rule_table import Case, check

CASES = [
    Case("weilidai 500", "RANGE.amount", payload(amount=500), None),
    Case("weilidai 499", "RANGE.amount", payload(amount=499), "AMOUNT_OUT_OF_RANGE"),
    Case("xiaoe 50,000", "RANGE.amount", payload("xiaoe", amount=50000), None),
    Case("xiaoe 50,001", "RANGE.amount", payload("xiaoe", amount=50001), "AMOUNT_OUT_OF_RANGE"),
    Case("zhouzhuanjin 50,000", "RANGE.amount", payload("zhouzhuanjin", amount=50000), None),
    Case("zhouzhuanjin 49,999", "RANGE.amount", payload("zhouzhuanjin", amount=49999),
         "AMOUNT_OUT_OF_RANGE"),
    Case("emergency 5,001", "RANGE.amount", payload("emergency", amount=5001), "AMOUNT_OUT_OF_RANGE"),
    Case("we2000 2,000", "WE2000_LINE.base_line", payload("we2000", amount=2000), None),
    Case("we2000 2,001", "WE2000_LINE.base_line", payload("we2000", amount=2001),
         "AMOUNT_OUT_OF_RANGE"),
    Case("we2000 raised line", "WE2000_LINE.base_line",
         payload("we2000", amount=5000, lingqiantong_balance=50000), None),
    Case("we2000 raised line still ends at 5,000", "RANGE.amount",
         payload("we2000", amount=5001, lingqiantong_balance=50000), "AMOUNT_OUT_OF_RANGE"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_limit_rule(case, decide):
    check(case, decide)


@pytest.mark.parametrize("amount, largest", [(499, 200000), (200001, 200000)])
def test_range_reason_gives_bounds(decide, amount, largest):
    decision = decide(payload(amount=amount, payments_per_month=150))
    reason = decision["reasons"][0]
    assert reason["inputs"]["min_amount"] == 500 and reason["inputs"]["max_amount"] == 200000
    assert reason["inputs"]["largest_allowed_amount"] == largest


def test_smallest_broken_limit_is_the_largest_allowed(decide):
    """weilidai, normal tier (30,000) and student cap (5,000) both broken: 5,000 is allowed."""
    decision = decide(payload(amount=40000, groups=["student"],
                              documents={"chsi_verified": True, "guardian_confirmed": True}))
    assert {r["inputs"]["largest_allowed_amount"] for r in decision["reasons"]} == {5000}


# -- issue 17: the largest allowed amount is the smallest limit that APPLIES ------------------------
STUDENT = {"groups": ["student"], "documents": {"chsi_verified": True, "guardian_confirmed": True}}
PROOF = {"documents": {"repayment_proof": True}}
LARGEST_CASES = [
    # (name, payload, largest allowed amount in every AMOUNT_OUT_OF_RANGE reason)
    ("weilidai normal tier, under the minimum", payload(amount=499), 30000),
    ("weilidai normal tier, just over the tier", payload(amount=30001), 30000),
    ("weilidai high tier, under the minimum", payload(amount=499, payments_per_month=150), 200000),
    ("weilidai high tier, over the maximum", payload(amount=200001, payments_per_month=150), 200000),
    ("student, under the minimum", payload(amount=499, **STUDENT), 5000),
    ("student, just over the cap", payload(amount=5001, **STUDENT), 5000),
    ("student, over cap and tier", payload(amount=40000, **STUDENT), 5000),
    ("we2000 base line, under the minimum", payload("we2000", amount=499), 2000),
    ("we2000 base line, just over the line", payload("we2000", amount=2001), 2000),
    ("we2000 raised line, under the minimum",
     payload("we2000", amount=499, lingqiantong_balance=50000), 5000),
    ("we2000 raised line, over the maximum",
     payload("we2000", amount=5001, lingqiantong_balance=50000), 5000),
    ("weilidai with proof: the temporary limit would be granted, under the minimum",
     payload(amount=499, **PROOF), 45000),
    ("weilidai with proof, just over the raised tier", payload(amount=45001, **PROOF), 45000),
    ("we2000 with proof: raised line, under the minimum", payload("we2000", amount=499, **PROOF), 3000),
    ("we2000 with proof: the raised line stops at the product maximum",
     payload("we2000", amount=5001, lingqiantong_balance=50000, **PROOF), 5000),
]


@pytest.mark.parametrize("doc, largest", [c[1:] for c in LARGEST_CASES],
                         ids=[c[0] for c in LARGEST_CASES])
def test_largest_allowed_is_the_smallest_applicable_limit(decide, doc, largest):
    decision = decide(doc)
    reasons = [r for r in decision["reasons"] if r["code"] == "AMOUNT_OUT_OF_RANGE"]
    assert reasons and decision["outcome"] == "rejected"
    assert {r["inputs"]["largest_allowed_amount"] for r in reasons} == {largest}


@pytest.mark.parametrize("doc, largest", [c[1:] for c in LARGEST_CASES if c[2] != 200000],
                         ids=[c[0] for c in LARGEST_CASES if c[2] != 200000])
def test_asking_for_the_largest_allowed_amount_is_approved(decide, doc, largest):
    """The value is a promise: asking again for exactly that much is not AMOUNT_OUT_OF_RANGE."""
    decision = decide(dict(doc, amount=largest))
    assert "AMOUNT_OUT_OF_RANGE" not in [r["code"] for r in decision["reasons"]]


def test_rules_without_the_setting_keep_the_smallest_broken_limit(tmp_path):
    """An archived rules version that predates the setting decides as it did (replay)."""
    import shutil

    from schemas.request import DecideRequestSchema
    from service.adapters import rules_files
    from service.adapters.rule_engine import policy_for
    from service.domain.userstate import UserState
    from tests.conftest import NOW, RULES_DIR

    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    text = (rules / "limits.yaml").read_text()
    (rules / "limits.yaml").write_text(text.replace("largest_allowed_amount: smallest_applicable_limit\n", ""))
    book = rules_files.load(rules)
    assert book.largest_allowed == "smallest_broken_limit"
    doc = DecideRequestSchema(term_ranges=book.term_ranges()).load(payload(amount=499))
    reason = policy_for(book).decide(doc, UserState(), NOW).reasons[0]
    assert reason.inputs["largest_allowed_amount"] == 200000


# -- a reviewer's approval offers no more than the limits allow ------------------------------------
REVIEW_CASES = [
    # (name, payload going to review with MISSING_DATA, the approval's offer limit)
    ("we2000 4,000, lingqiantong_balance null: the base line",
     payload("we2000", amount=4000, lingqiantong_balance=None), 2000),
    ("we2000 4,000, lingqiantong_balance absent: the base line",
     payload("we2000", amount=4000, drop=("lingqiantong_balance",)), 2000),
    ("weilidai 50,000, payments_per_month null: the lowest tier",
     payload(amount=50000, payments_per_month=None), 5000),
    ("we2000 1,500, lingqiantong_balance null: within the base line, as asked",
     payload("we2000", amount=1500, lingqiantong_balance=None), 1500),
    ("weilidai 5,000, pay_score missing: no limit reads it, as asked",
     payload(amount=5000, drop=("pay_score",)), 5000),
]


def _review_offer(policy, doc):
    from schemas.request import DecideRequestSchema
    from service.domain.userstate import UserState
    from tests.conftest import NOW

    request = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(doc)
    decision = policy.decide(request, UserState(), NOW)
    assert decision.outcome == "review" and [r.code for r in decision.reasons] == ["MISSING_DATA"]
    return policy.review_terms(request, UserState(), NOW)[0]


@pytest.mark.parametrize("doc, limit", [c[1:] for c in REVIEW_CASES], ids=[c[0] for c in REVIEW_CASES])
def test_review_approval_offers_at_most_the_least_favourable_limit(policy, doc, limit):
    """An approval gave the amount asked (4,000 over WE2000's 2,000 line, 50,000 over every
    weilidai tier but the premium one); a limit reading the missing field now applies."""
    assert _review_offer(policy, doc).limit == limit


def test_rules_without_the_review_setting_approve_the_amount_asked(tmp_path):
    """An archived rules version that predates the setting reviews as it did (replay)."""
    import shutil

    from service.adapters import rules_files
    from service.adapters.rule_engine import policy_for
    from tests.conftest import RULES_DIR

    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    text = (rules / "limits.yaml").read_text()
    (rules / "limits.yaml").write_text(text.replace("review_approval_amount: least_favourable_limit\n", ""))
    book = rules_files.load(rules)
    assert book.review_approval == "amount_asked"
    assert _review_offer(policy_for(book), payload("we2000", amount=4000, lingqiantong_balance=None)).limit == 4000
