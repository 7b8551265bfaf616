"""The per-rule counts of `replay --simulate` (summary `rules`, the impact page) count a rule only
for decisions whose rules ran both times: a refusal by state on either side ran none, so its
decision names no changed rule (before, every rule was counted for it, as if E2 had moved)."""
from __future__ import annotations

import shutil

import pytest

from service.adapters import rules_files
from service.adapters.rule_engine import policy_for
from service.entrypoints.bootstrap import policy_source, simulation_stores
from service.entrypoints.settings import Settings
from service.usecases.impact import version_changes
from service.usecases.simulate import simulate
from tests.conftest import RULES_DIR, move_threshold
from tests.unit.test_simulate import WINDOW_STEPS, make_log


def no_window(tmp_path_factory, name: str, **e2_params):
    """The bundled rules with no rejection opening the window (and E2 moved, if asked)."""
    rules = tmp_path_factory.mktemp(name) / "rules"
    shutil.copytree(RULES_DIR, rules)
    for file in rules.glob("*.yaml"):
        file.write_text(file.read_text().replace("starts_cooldown: true", "starts_cooldown: false"))
    for param, value in e2_params.items():
        move_threshold(rules, "E2", param, value)
    return rules


@pytest.fixture(scope="module")
def over_29_refused(tmp_path_factory):
    """No window, and E2 refuses the example applicants (aged 30)."""
    return no_window(tmp_path_factory, "no-window-age", max_age=29)


def run(lines, rules):
    source = policy_source(Settings(), rules_dir=rules)
    return simulate(iter(lines), source, simulation_stores, keep_changes=True, impact=True), source


def test_vanished_refusals_by_state_count_no_rule(policy, over_29_refused):
    # u-a: refused (opens the window), then three applications the window refused; u-b: two approvals
    lines = make_log(policy, WINDOW_STEPS)
    result, _ = run(lines, over_29_refused)
    summary = result.to_dict()
    assert summary["state_refusals"]["vanished"] == 3
    # E2 refuses all six under the candidate, but only three ran the rules both times:
    # u-a's first application and u-b's two
    assert summary["rules"] == {"E2.age": 3}
    by_line = {c["line"]: c for c in result.changes}
    refused = [c for c in by_line.values() if "REAPPLY_COOLDOWN" in c["old"]["reasons"]]
    assert len(refused) == 3 and all(c["changed_rules"] == [] for c in refused)
    assert all(c["new"]["reasons"] and "AGE_OUT_OF_RANGE" in c["new"]["reasons"] for c in refused)
    assert result.impact.by_state == 3


def test_appeared_refusals_by_state_count_no_rule(tmp_path_factory):
    # the log made under no-window rules; the bundled rules open the window again
    candidate = no_window(tmp_path_factory, "no-window")
    lines = make_log(policy_for(rules_files.load(candidate)), WINDOW_STEPS)
    result, _ = run(lines, RULES_DIR)
    summary = result.to_dict()
    assert summary["state_refusals"]["appeared"] == 3
    assert summary["rules"] == {}
    assert result.impact.by_state == 3


def test_the_page_diff_names_the_candidate_against_the_logs_version(policy, over_29_refused):
    lines = make_log(policy, WINDOW_STEPS)
    result, source = run(lines, over_29_refused)
    (change,) = version_changes(result.impact, source.book)
    assert change.old_version == policy.version and change.decisions == 6
    assert "age: parameter max_age 60 → 29" in change.diff.rules[0].lines()


def test_a_log_version_that_cannot_be_found_is_reported_not_fatal(policy, over_29_refused):
    lines = [(n, text.replace(policy.version, "sha256:" + "2" * 64)) for n, text in make_log(policy, WINDOW_STEPS)]
    result, source = run(lines, over_29_refused)   # --rules DIR: the log's own rules never load
    (change,) = version_changes(result.impact, source.book)
    assert change.diff is None and "is not available" in change.unavailable
