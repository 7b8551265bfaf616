"""What a Policy works out once and remembers (the shape of each product's facts, the trace's
parameters, the reference dates at a clock time) belongs to its rules version: a new version
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
