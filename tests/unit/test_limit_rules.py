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
