"""What a Policy works out once and remembers (the shape of each product's facts, the trace's
parameters, the reference dates at a clock time, what the recourse search reads of each
product) belongs to its rules version: a new version
decides by its own rules, and the old one, asked again, by its own."""
import shutil

import yaml

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.domain.userstate import UserState
from service.entrypoints.bootstrap import build_policy
from tests.conftest import NOW, RULES_DIR, codes, move_threshold, payload, trace_of


def _two_years_of_verification(rules):
    """E1's verification age moved from one year to two (a new reference date field)."""
    doc = yaml.safe_load((rules / "eligibility.yaml").read_text())
    rule = next(r for r in doc["rules"] if r["id"] == "E1" and "latest_verification_date" in r.get("params", {}))
    rule["params"]["latest_verification_date"] = {"years": -2}
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))


def _active_tier_cap(rules, cap: int):
    """weilidai's active-tier limit (TIER_LIMIT active, 30,000 in the bundled rules) moved."""
    doc = yaml.safe_load((rules / "pricing.yaml").read_text())
    next(r for r in doc["rules"] if r["id"] == "TIER_LIMIT" and r["check"] == "active")["params"]["cap"] = cap
    (rules / "pricing.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))


def _decide(policy, body: dict) -> dict:
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    return policy.decide(schema.load(body), UserState(), NOW).to_dict()


def test_a_new_rules_version_does_not_reuse_the_old_ones_shapes_traces_or_dates(book, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    move_threshold(rules, "E2", "min_age", 21)
    _two_years_of_verification(rules)
    old, new = build_policy(book), build_policy(rules_files.load(rules))
    assert old.version != new.version
    # 20 years old, verified 18 months before NOW: passes the old E1 and E2, fails the new ones
    body = payload(age=20, real_name_verified_at="2025-05-23")

    first = _decide(old, body)        # the old version's caches are filled first
    moved = _decide(new, body)
    again = _decide(old, body)

    assert first["outcome"] == "approved" and again == first
    assert trace_of(first, "E2", "age")["inputs"]["min_age"] == 18
    assert trace_of(first, "E1", "real_name_age")["inputs"]["latest_verification_date"] == "2025-11-23"

    assert moved["outcome"] == "rejected"
    assert {"REAL_NAME_TOO_RECENT"} <= set(codes(moved))
    assert trace_of(moved, "E2", "age")["inputs"]["min_age"] == 21
    assert trace_of(moved, "E1", "real_name_age")["inputs"]["latest_verification_date"] == "2024-11-23"
    # what it remembers gives what a policy built afresh for the version gives
    assert moved == _decide(build_policy(rules_files.load(rules)), body)


def test_a_new_rules_version_searches_recourse_among_its_own_limits(book, tmp_path):
    """The amounts the recourse search tries are the limits of the version deciding."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    _active_tier_cap(rules, 25000)
    old, new = build_policy(book), build_policy(rules_files.load(rules))
    body = payload(amount=190000)   # over the active tier's cap

    def amounts(decision: dict) -> list:
        return [c["to"] for o in decision["recourse"]["options"] for c in o["changes"]
                if c["field"] == "amount"]

    first, moved, again = _decide(old, body), _decide(new, body), _decide(old, body)
    assert codes(first) == codes(moved) == ["AMOUNT_OUT_OF_RANGE"]
    assert amounts(first) == amounts(again) == [30000]
    assert amounts(moved) == [25000]
