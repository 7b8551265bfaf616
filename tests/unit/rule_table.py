"""Run one row of a rule table: a payload, the rule it exercises, and what must happen."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tests.conftest import codes, trace_of


@dataclass(frozen=True)
class Case:
    name: str
    rule: str                  # "E2.age": rule id and check
    doc: dict
    fails_with: Optional[str]  # the reason code, or None when the rule must pass
    outcome: Optional[str] = None   # default: approved for a pass, rejected for a fail
    applies: bool = True       # False: the rule is not one of this product's rules

    def __str__(self) -> str:
        return self.name


def check(case: Case, decide) -> dict:
    decision = decide(case.doc)
    rule_id, check_name = case.rule.split(".")
    entry = trace_of(decision, rule_id, check_name)
    if not case.applies:
        assert entry is None, entry
    elif case.fails_with is None:
        assert entry is not None and entry["passed"] is True and entry["matched"] is False, entry
    else:
        assert entry is not None and entry["passed"] is False and entry["matched"] is True, entry
        assert case.fails_with in codes(decision), codes(decision)
        reason = next(r for r in decision["reasons"]
                      if r["code"] == case.fails_with and r["rule_id"] == rule_id)
        for key in ("message_zh", "message_en", "advice_zh", "advice_en"):
            assert reason[key]
        # the reason names the values that triggered it: every field the rule read
        assert set(entry["inputs"]) <= set(reason["inputs"])
    expected = case.outcome or ("rejected" if case.fails_with else "approved")
    assert decision["outcome"] == expected, (decision["outcome"], codes(decision))
    return decision
