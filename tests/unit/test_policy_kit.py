"""The policy test kit (rules/tests) and its mutation check, as `loan-decide test` runs them."""
import json
import os
import shutil

import pytest
import yaml
from click.testing import CliRunner

from service.adapters import rule_mutants, rules_files
from service.domain import policy_kit
from service.entrypoints.bootstrap import KITS
from service.entrypoints.cli import main
from tests.conftest import RULES_DIR, alias_bomb


def moved_rules(tmp_path, rule_id: str, param: str, value, file: str = "eligibility.yaml"):
    """A copy of the bundled rules (kit included) with one threshold moved."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / file).read_text())
    next(r for r in doc["rules"] if r["id"] == rule_id and param in r.get("params", {}))["params"][param] = value
    (rules / file).write_text(yaml.safe_dump(doc, allow_unicode=True))
    return rules


def run_directory(rules):
    """The rules of a directory and their own kit's result, as `loan-decide test` reads them."""
    book = rules_files.load(rules)
    return book, KITS.run_files(book, rules_files.kit_files(rules))


def test_the_bundled_rules_pass_their_own_kit():
    book, result = run_directory(RULES_DIR)
    assert result.cases >= 100 and result.ok, result.failures
    assert result.passed == result.cases


def test_a_moved_boundary_fails_naming_the_case_and_the_difference(tmp_path):
    rules = moved_rules(tmp_path, "E2", "min_age", 19)
    _, result = run_directory(rules)
    assert not result.ok
    failure = next(f for f in result.failures if "E2 age 18 is accepted" in f)
    assert "outcome: expected 'approved', got 'rejected'" in failure
    assert "reasons: expected [], got ['AGE_OUT_OF_RANGE']" in failure


def test_cli_test_exit_codes_and_readable_diff(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["test", "--rules", str(RULES_DIR)])
    assert ok.exit_code == 0 and "cases pass" in ok.output
    bad = runner.invoke(main, ["test", "--rules", str(moved_rules(tmp_path, "R3",
                        "max_night_device_switches_30d", 2, "rejections.yaml"))])
    assert bad.exit_code == 1
    assert "FAIL rejections.yaml: R3 3 night-time device switches are allowed" in bad.output
    as_json = json.loads(runner.invoke(main, ["test", "--rules", str(RULES_DIR), "--json"]).output)
    assert as_json["ok"] is True and as_json["failed"] == 0


def test_a_malformed_kit_is_named(tmp_path):
    with pytest.raises(policy_kit.KitError, match="broken.yaml: a case: unknown key"):
        rules_files.parse_kit({"base.yaml": (RULES_DIR / "tests" / "base.yaml").read_bytes(),
                              "broken.yaml": b"cases:\n  - {name: a case, amout: 5, expect: {outcome: approved}}\n"})
    result = CliRunner().invoke(main, ["test", "--rules", str(_with_kit_file(tmp_path, b"cases: 3\n"))])
    assert result.exit_code == 1 and "expected a list under 'cases'" in result.output


def _with_kit_file(tmp_path, text: bytes):
    rules = tmp_path / "kitless"
    shutil.copytree(RULES_DIR, rules)
    (rules / "tests" / "zz.yaml").write_bytes(text)
    return rules



@pytest.mark.parametrize("levels", [8, 9])
def test_an_alias_bomb_in_a_kit_file_is_refused(tmp_path, levels):
    """The kit's files are parsed with the rule files' bound on alias expansion."""
    with pytest.raises(policy_kit.KitError, match="zz.yaml: its aliases expand"):
        rules_files.parse_kit({"base.yaml": (RULES_DIR / "tests" / "base.yaml").read_bytes(),
                              "zz.yaml": alias_bomb(levels)})
    result = CliRunner().invoke(main, ["test", "--rules", str(_with_kit_file(tmp_path, alias_bomb(levels)))])
    assert result.exit_code == 1 and "zz.yaml: its aliases expand" in result.output


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_kit_file_that_is_not_a_regular_file_is_refused(tmp_path, target):
    rules = _with_kit_file(tmp_path, b"")
    (rules / "tests" / "zz.yaml").unlink()
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = tmp_path / "fifo"
    (rules / "tests" / "zz.yaml").symlink_to(target)
    with pytest.raises(policy_kit.KitError, match="tests/zz.yaml: not a regular file"):
        rules_files.kit_files(rules)


def test_a_kit_file_past_the_byte_bound_is_refused(tmp_path):
    rules = _with_kit_file(tmp_path, b"#" * (rules_files.MAX_FILE_BYTES + 1))
    with pytest.raises(policy_kit.KitError, match=f"tests/zz.yaml: more than {rules_files.MAX_FILE_BYTES} bytes"):
        rules_files.kit_files(rules)

def test_every_threshold_and_date_offset_is_mutated_one_step_each_way():
    book = rules_files.load(RULES_DIR)
    names = [m.name for m in rule_mutants.mutants(book.files)]
    assert len(names) >= 30 and len(names) % 2 == 0
    assert "eligibility.yaml E2.age min_age: 18 -> 17" in names
    assert "eligibility.yaml E2.age partner.max_age: 55 -> 56" in names
    assert "rejections.yaml R4.credit_utilization max_credit_card_utilization: 0.85 -> 0.86" in names
    assert "rejections.yaml R2.id_card_expiry earliest_allowed_expiry: {months: 3} -> {months: 3, days: -1}" in names
    assert "products.yaml xiaoe.max_amount: 50000 -> 50001" in names
    assert "time.yaml reapply_window_days: 90 -> 91" in names
    for mutant in rule_mutants.mutants(book.files):   # each loads: one value moved, the rest intact
        assert rules_files.load_files(mutant.files).version != book.version


def test_a_kit_without_a_boundary_case_lets_its_mutant_survive():
    book = rules_files.load(RULES_DIR)
    kit = rules_files.parse_kit(rules_files.kit_files(RULES_DIR))
    age = [m for m in rule_mutants.mutants(book.files) if " E2.age " in m.name]
    full = KITS.mutation_run(book, kit, age)
    assert full.mutants == 6 and full.caught == 6 and full.surviving == []
    thinner = policy_kit.Kit(tuple(c for c in kit.cases if c.name != "E2 age 18 is accepted"))
    report = KITS.mutation_run(book, thinner, age)
    assert report.surviving == ["eligibility.yaml E2.age min_age: 18 -> 19"]
