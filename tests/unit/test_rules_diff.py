"""service.domain.rules_diff on copies of the bundled rules with one kind of edit each: what a
reviewer of a rules change reads, per rule id, and nothing for what the rules do not read."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from service.adapters import rules_files
from service.domain.rules_diff import RulesDiff, diff, show
from tests.conftest import RULES_DIR


def edited(tmp_path: Path, file: str, edit: Callable[[dict], None]) -> Path:
    """A copy of the bundled rules with one file's document edited (and written back as YAML)."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / file).read_text())
    edit(doc)
    (rules / file).write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return rules


def rule(doc: dict, rule_id: str, check: str) -> dict:
    return next(r for r in doc["rules"] if r["id"] == rule_id and r["check"] == check)


def diff_to(rules: Path) -> RulesDiff:
    return diff(rules_files.load(RULES_DIR), rules_files.load(rules))


@pytest.fixture(scope="module")
def bundled():
    return rules_files.load(RULES_DIR)


def only(found: RulesDiff, rule_id: str):
    assert [r.rule_id for r in found.rules] == [rule_id], found.lines()
    assert found.settings == ()
    return found.rules[0]


def test_a_parameter_changed_for_all_and_for_one_product(tmp_path):
    def edit(doc):
        rule(doc, "E2", "age")["params"]["min_age"] = 21
        rule(doc, "E2", "age")["product_params"]["partner"]["max_age"] = 50

    e2 = only(diff_to(edited(tmp_path, "eligibility.yaml", edit)), "E2")
    assert e2.status == "changed"
    assert [(p.check, p.name, p.product, p.old, p.new) for p in e2.parameters] == [
        ("age", "min_age", None, 18, 21), ("age", "max_age", "partner", 55, 50)]
    assert e2.lines() == ["age: parameter min_age 18 → 21", "age: parameter max_age (partner) 55 → 50"]
    assert e2.conditions == e2.messages == e2.other == ()


def test_a_condition_changed(tmp_path):
    def edit(doc):
        rule(doc, "E10", "health_score")["when"] = "health_score <= $min_health_score"

    e10 = only(diff_to(edited(tmp_path, "eligibility.yaml", edit)), "E10")
    (change,) = e10.conditions
    assert (change.check, change.old, change.new) == (
        "health_score", "health_score < $min_health_score", "health_score <= $min_health_score")
    assert e10.parameters == ()


def test_a_nested_condition_is_written_out_whole(bundled):
    from service.domain.rules_diff import condition_text

    e2 = next(r for r in bundled.rules if r.key == "E2.age")
    assert condition_text(e2.condition) == "any(age < $min_age, age > $max_age)"


def test_a_rule_added(tmp_path):
    def edit(doc):
        doc["rules"].append({"id": "E12", "check": "income", "products": ["weilidai"],
                             "when": "monthly_income < $min_income", "params": {"min_income": 3000},
                             "reason": dict(rule(doc, "E2", "age")["reason"])})

    e12 = only(diff_to(edited(tmp_path, "eligibility.yaml", edit)), "E12")
    assert (e12.status, e12.checks_added, e12.checks_removed) == ("added", ("income",), ())
    assert [(c.old, c.new) for c in e12.conditions] == [(None, "monthly_income < $min_income")]
    assert [(p.name, p.old, p.new) for p in e12.parameters] == [("min_income", None, 3000)]
    assert e12.lines()[0] == "+ check income"


def test_a_rule_removed_and_a_check_removed(tmp_path):
    def edit(doc):
        doc["rules"] = [r for r in doc["rules"] if r["id"] != "E11"
                        and (r["id"], r["check"]) != ("E4", "credit_card")]

    found = diff_to(edited(tmp_path, "eligibility.yaml", edit))
    by_id = {r.rule_id: r for r in found.rules}
    assert list(by_id) == ["E4", "E11"]
    assert (by_id["E11"].status, by_id["E11"].checks_removed) == ("removed", ("risk_education",))
    assert (by_id["E4"].status, by_id["E4"].checks_removed) == ("changed", ("credit_card",))
    assert "- check credit_card" in by_id["E4"].lines()


def test_messages_changed_in_both_languages(tmp_path):
    def edit(doc):
        reason = rule(doc, "R2", "id_card_expiry")["reason"]
        reason["message_zh"] = "身份证将在3个月内过期"
        reason["message_en"] = "Your ID card expires in under 3 months"

    r2 = only(diff_to(edited(tmp_path, "rejections.yaml", edit)), "R2")
    assert [(m.field, m.new) for m in r2.messages] == [
        ("message_zh", "身份证将在3个月内过期"), ("message_en", "Your ID card expires in under 3 months")]
    assert r2.messages[0].old == "身份证即将在3个月内到期"
    assert r2.parameters == r2.conditions == ()


def test_the_wording_and_window_of_a_refusal_by_state_are_under_its_rule(tmp_path):
    def edit(doc):
        doc["reapply_window_days"] = 60
        doc["state_reasons"]["REAPPLY_COOLDOWN"]["message_en"] = "Wait 60 days after a refusal"

    t1 = only(diff_to(edited(tmp_path, "time.yaml", edit)), "T1")
    assert t1.lines() == ["window: parameter reapply_window_days 90 → 60",
                          'state: message_en "Less than 90 days since a refusal; you cannot apply '
                          'again yet" → "Wait 60 days after a refusal"']


def test_what_a_rule_says_besides_and_a_product_setting(tmp_path):
    rules = edited(tmp_path, "rejections.yaml",
                   lambda doc: rule(doc, "R1", "applications_6m")["reason"].update(starts_cooldown=False))
    doc = yaml.safe_load((rules / "products.yaml").read_text())
    doc["products"]["weilidai"]["max_amount"] = 300000
    (rules / "products.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    found = diff_to(rules)
    assert [r.rule_id for r in found.rules] == ["R1"]
    assert found.rules[0].lines() == ["applications_6m: reason.starts_cooldown true → false"]
    assert [s.line() for s in found.settings] == ["products.yaml weilidai.max_amount: 200000 → 300000"]
    assert found.files_changed == ("products.yaml", "rejections.yaml")


def test_identical_versions(bundled, tmp_path):
    same = diff(bundled, rules_files.load(shutil.copytree(RULES_DIR, tmp_path / "copy")))
    assert same.identical and same.rules == same.settings == same.files_changed == ()
    assert same.lines() == [f"identical: both are {bundled.version}"]
    assert same.to_dict() == {"old": bundled.version, "new": bundled.version, "identical": True,
                              "rules": [], "settings": [], "files_changed": []}


def test_a_comment_is_a_changed_file_and_no_changed_rule(tmp_path):
    rules = shutil.copytree(RULES_DIR, tmp_path / "rules")
    (rules / "pricing.yaml").write_text((rules / "pricing.yaml").read_text() + "\n# reviewed\n")
    found = diff_to(rules)
    assert not found.identical and not found.changes_meaning
    assert found.files_changed == ("pricing.yaml",)
    assert "comments or layout only" in "\n".join(found.lines())


def test_the_json_form_names_every_change_in_plain_values(tmp_path):
    def edit(doc):
        rule(doc, "E1", "real_name_age")["params"]["latest_verification_date"] = {"years": -2}

    doc = diff_to(edited(tmp_path, "eligibility.yaml", edit)).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    (e1,) = doc["rules"]
    assert e1["parameters"] == [{"check": "real_name_age", "name": "latest_verification_date",
                                 "old": {"years": -1}, "new": {"years": -2}, "product": None}]
    assert show({"years": -1}) == "{years: -1}" and show(True) == "true" and show(None) == "(none)"
