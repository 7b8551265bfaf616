"""rules/explanations.yaml: the summaries an explanation opens with, validated when the rules
load (a template names only what its outcome fills), and shown by `rules diff`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from service.adapters import rules_files
from service.domain.rulebook import RulesError
from service.domain.rules_diff import diff
from tests.conftest import RULES_DIR


def rules_copy(tmp_path: Path, without_explanations: bool = False) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    if without_explanations:
        (rules / "explanations.yaml").unlink()
    return rules


def write_explanations(rules: Path, edit) -> Path:
    doc = yaml.safe_load((rules / "explanations.yaml").read_text())
    edit(doc)
    (rules / "explanations.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return rules


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d["summaries"]["rules"]["rejected"].update(en="Refused up to {limit}."), "{limit}"),
    (lambda d: d["summaries"]["rules"]["approved"].update(zh="{product.__class__}"), "product.__class__"),
    (lambda d: d["summaries"]["rules"]["approved"].update(zh="{limit!r}"), "{limit}"),
    (lambda d: d["summaries"]["reviewer"]["approved"].update(en="{limit:>10}"), "{limit}"),
    (lambda d: d["summaries"]["rules"]["review"].update(en="a { brace"), "not a valid template"),
    (lambda d: d["summaries"]["rules"].pop("cooling_off"), "cooling_off"),
    (lambda d: d["summaries"]["reviewer"]["rejected"].pop("zh"), "zh"),
    (lambda d: d["summaries"]["rules"].update(released={"zh": "x", "en": "y"}), "released"),
    (lambda d: d["product_names"].update(fr={"weilidai": "x"}), "product_names"),
    (lambda d: d["product_names"]["en"].update(nosuch="x"), "nosuch"),
])
def test_a_bad_explanations_file_is_refused_naming_the_problem(tmp_path, edit, problem):
    rules = write_explanations(rules_copy(tmp_path), edit)
    with pytest.raises(RulesError) as refused:
        rules_files.load(rules)
    assert "explanations.yaml" in str(refused.value) and problem in str(refused.value)


def test_rules_diff_reports_the_explanations_words(tmp_path, book):
    reworded = write_explanations(rules_copy(tmp_path / "a"), lambda d: d["summaries"]["rules"][
        "rejected"].update(en="Your {product} application was refused ({count})."))
    changed = diff(book, rules_files.load(reworded))
    assert changed.files_changed == ("explanations.yaml",) and changed.rules == ()
    assert [s.line() for s in changed.settings] == [
        'explanations.yaml summaries.rules.rejected.en: "Your {product} application was not '
        'approved, for the {count} reason(s) below, each with what you can do." → '
        '"Your {product} application was refused ({count})."']
    without = rules_files.load(rules_copy(tmp_path / "b", without_explanations=True))
    added = diff(without, book)
    assert added.files_changed == ("explanations.yaml",)
    assert len(added.settings) == 6 * 2 + 7 and all(s.old is None for s in added.settings)
    assert "explanations.yaml summaries.reviewer.approved.zh: (none) → " in "\n".join(added.lines())
    assert all(s.new is None for s in diff(book, without).settings)
