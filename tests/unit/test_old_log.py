"""A log written by the service before later changes replays 100% identical under its own rules.

`tests/data/log_before_hardening2.jsonl.gz` holds every kind of record the service wrote at the
time (decisions, cancels, grace uses, reviews both ways, overrides, erasures), exported with
`log export`; `rules_before_hardening2/` is the rules version its records name, byte for byte.
Policy changes since then are chosen by rule settings that version lacks, and refactors must not
move a decision: so plain replay is exact, and `--simulate` gives the summary recorded then.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.adapters import rules_files
from service.entrypoints.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
OLD_RULES = DATA / "rules_before_hardening2"


@pytest.fixture(scope="module")
def old_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("oldlog") / "log.jsonl"
    path.write_bytes(gzip.decompress((DATA / "log_before_hardening2.jsonl.gz").read_bytes()))
    return path


def _summary(*args: str) -> dict:
    result = CliRunner().invoke(main, ["replay", *args, "--json", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_the_log_names_the_old_rules_version(old_log):
    versions = {json.loads(line)["rules_version"] for line in old_log.open(encoding="utf-8")}
    assert versions == {rules_files.load(OLD_RULES).version}


def test_old_log_replays_identical_under_its_own_version(old_log):
    summary = _summary(str(old_log), "--rules", str(OLD_RULES))
    assert summary["total"] == 1342
    assert summary["exact"] == summary["identical"] == summary["total"]
    assert summary["bad_lines"] == 0
    assert summary["reviews"] == {"total": 38, "identical": 38}
    assert summary["overrides"] == {"total": 8, "identical": 8}


def test_old_log_simulates_as_it_did_when_it_was_made(old_log):
    expected = json.loads((DATA / "log_before_hardening2.simulate.json").read_text())
    assert _summary(str(old_log), "--rules", str(OLD_RULES), "--simulate") == expected
