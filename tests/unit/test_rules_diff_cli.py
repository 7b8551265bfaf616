"""`loan-decide rules diff OLD NEW [--json]`: directories, an archived version from the Redis that
REDIS_URL names (the real server, TEST_REDIS_DB), and bad arguments named, never a traceback."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.adapters import rules_files
from service.entrypoints.cli import main
from tests.conftest import RULES_DIR, move_threshold

NO_REDIS = {"REDIS_URL": None}


@pytest.fixture(scope="module")
def moved(tmp_path_factory) -> Path:
    """The bundled rules with E2's minimum age at 21."""
    rules = tmp_path_factory.mktemp("moved") / "rules"
    shutil.copytree(RULES_DIR, rules)
    return move_threshold(rules, "E2", "min_age", 21)


def run(*args: str, env: dict = NO_REDIS):
    return CliRunner().invoke(main, ["rules", "diff", *args], env=env)


def test_two_directories_as_text(moved):
    result = run(str(RULES_DIR), str(moved))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    old, new = rules_files.load(RULES_DIR).version, rules_files.load(moved).version
    assert lines[0] == f"{old} → {new}"
    assert lines[1:3] == ["E2", "  age: parameter min_age 18 → 21"]
    assert lines[-1] == "files changed: eligibility.yaml"


def test_two_directories_as_json(moved):
    result = run(str(RULES_DIR), str(moved), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["identical"] is False and doc["files_changed"] == ["eligibility.yaml"]
    (e2,) = doc["rules"]
    assert (e2["rule_id"], e2["status"]) == ("E2", "changed")
    assert e2["parameters"] == [{"check": "age", "name": "min_age", "old": 18, "new": 21,
                                 "product": None}]


def test_identical_versions_say_so(tmp_path):
    copy = shutil.copytree(RULES_DIR, tmp_path / "copy")
    result = run(str(RULES_DIR), str(copy))
    assert result.exit_code == 0
    assert result.output.startswith("identical: both are sha256:")
    assert json.loads(run(str(RULES_DIR), str(copy), "--json").output)["identical"] is True


@pytest.mark.parametrize("which", ["OLD", "NEW"])
def test_bad_arguments_are_named(tmp_path, which):
    not_rules = tmp_path / "empty"
    not_rules.mkdir()
    a_file = RULES_DIR / "products.yaml"
    for bad, says in [(str(tmp_path / "missing"), "neither a directory nor an archived version"),
                      (str(a_file), "neither a directory nor an archived version"),
                      (str(not_rules), "products.yaml: missing"),
                      ("sha256:" + "0" * 64, "set REDIS_URL")]:
        args = (bad, str(RULES_DIR)) if which == "OLD" else (str(RULES_DIR), bad)
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for {which}" in result.output and says in result.output
        assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_a_redis_that_does_not_answer_is_named():
    result = run(str(RULES_DIR), "sha256:" + "0" * 64, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 2 and "Invalid value for NEW" in result.output
    assert "did not answer" in result.output and "Traceback" not in result.output


@pytest.mark.redis
def test_an_archived_version_against_a_directory(real_redis_url, moved):
    """The archived version is read back from the rules archive of REDIS_URL (the real server)."""
    from service.entrypoints.bootstrap import redis_stores
    from service.entrypoints.settings import Settings

    book = rules_files.load(moved)
    redis_stores(Settings(redis_url=real_redis_url)).archive.save(book)
    env = {"REDIS_URL": real_redis_url}
    result = run(book.version, str(RULES_DIR), env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:3] == ["E2", "  age: parameter min_age 21 → 18"]
    same = run(book.version, str(moved), "--json", env=env)
    assert json.loads(same.output)["identical"] is True
    unknown = run("sha256:" + "1" * 64, str(moved), env=env)
    assert unknown.exit_code == 2 and "is not in the rules archive of REDIS_URL" in unknown.output
