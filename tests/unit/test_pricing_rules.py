"""rules/pricing.yaml and products.yaml: tiers, floor, APR cap, tier limits, the offer."""
import pytest

from tests.conftest import payload
from tests.unit.rule_table import Case, check

CASES = [
    Case("weilidai normal tier within 30,000", "TIER_LIMIT.active", payload(amount=30000), None),
    Case("weilidai normal tier above 30,000", "TIER_LIMIT.active", payload(amount=30001),
         "AMOUNT_OUT_OF_RANGE"),
    Case("weilidai high tier above 30,000", "TIER_LIMIT.active",
         payload(amount=30001, payments_per_month=150), None),
    Case("tier limits are weilidai's only", "TIER_LIMIT.active", payload("xiaoe", amount=40000),
         None, applies=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tier_limit_rule(case, decide):
    check(case, decide)


def test_new_tier_limit(decide):
    decision = decide(payload(amount=5001, payments_per_month=2))
    reason = next(r for r in decision["reasons"] if r["rule_id"] == "TIER_LIMIT")
    assert reason["inputs"]["largest_allowed_amount"] == 5000


@pytest.mark.parametrize("product, changes, daily, monthly, apr", [
    # API.md's example: base rate, normal tier
    ("weilidai", {}, 0.0003, 0.009, 0.1095),
    ("weilidai", {"payments_per_month": 149}, 0.0003, 0.009, 0.1095),
    # high tier -15%
    ("weilidai", {"payments_per_month": 150}, 0.000255, 0.00765, 0.093075),
    # credit score above 750 reaches the floor (7.2%, rounded up to whole 1e-6 a day)
    ("weilidai", {"credit_score": 751}, 0.000198, 0.00594, 0.07227),
    ("weilidai", {"credit_score": 750}, 0.0003, 0.009, 0.1095),
    # low tier +20%
    ("xiaoe", {"payments_per_month": 2}, 0.0006, 0.018, 0.219),
    # partner low tier would be 26.28%: held under the 24% cap
    ("partner", {"payments_per_month": 2}, 0.000657, 0.01971, 0.239805),
    # we2000 is a fixed 18.25%
    ("we2000", {"payments_per_month": 150}, 0.0005, 0.015, 0.1825),
])
def test_offer_rates(decide, product, changes, daily, monthly, apr):
    decision = decide(payload(product, **changes))
    assert decision["outcome"] == "approved"
    offer = decision["offer"]
    assert (offer["daily_rate"], offer["monthly_rate"], offer["apr"]) == (daily, monthly, apr)
    assert offer["apr"] <= 0.24


@pytest.mark.parametrize("product, free_days", [("education", 360), ("emergency", 30), ("xiaoe", 0)])
def test_offer_terms(decide, product, free_days):
    doc = payload(product)
    offer = decide(doc)["offer"]
    assert offer["limit"] == doc["amount"]
    assert (offer["term_days_min"], offer["term_days_max"]) == (7, 1095)
    assert offer["interest_free_days"] == free_days


def test_pricing_rules_appear_in_trace_as_matched(decide):
    decision = decide(payload(payments_per_month=150, credit_score=800))
    applied = {(e["rule_id"], e["check"]) for e in decision["trace"] if e["matched"]}
    assert {("TIER", "high"), ("FLOOR", "credit_score")} <= applied
    assert all(e["passed"] for e in decision["trace"])
