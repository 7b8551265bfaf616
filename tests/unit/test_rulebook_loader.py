"""The loader refuses a bad rules directory at start-up, naming file, rule and problem."""
import os
import shutil

import pytest
import yaml

from service.adapters import rules_files
from service.domain import rulebook
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from tests.conftest import RULES_DIR, alias_bomb


@pytest.fixture
def rules_copy(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    return target


def edit(directory, name, mutate):
    path = directory / name
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def rule(doc, rule_id, check):
    return next(r for r in doc["rules"] if r["id"] == rule_id and r["check"] == check)


def test_bundled_rules_load(book):
    assert book.version.startswith("sha256:") and len(book.version) == 71
    ids = {r.rule_id for r in book.rules}
    assert {f"E{i}" for i in range(1, 12)} | {f"R{i}" for i in range(1, 6)} <= ids
    assert {"student", "overseas", "sme_owner", "blue_collar", "elderly"} <= ids


def test_version_is_a_content_hash(rules_copy, book):
    assert rules_files.load(rules_copy).version == book.version
    edit(rules_copy, "eligibility.yaml", lambda d: rule(d, "E2", "age")["params"].update(min_age=21))
    assert rules_files.load(rules_copy).version != book.version


@pytest.mark.parametrize("name, mutate, expected", [
    ("eligibility.yaml", lambda d: rule(d, "E2", "age").update(when="agee < $min_age"),
     ["eligibility.yaml", "E2.age", "unknown field 'agee'"]),
    ("eligibility.yaml", lambda d: rule(d, "E2", "age").update(when="age < $minimum"),
     ["eligibility.yaml", "E2.age", "$minimum"]),
    ("eligibility.yaml", lambda d: rule(d, "E2", "age").update(when="age <<< 3"),
     ["eligibility.yaml", "E2.age", "cannot read"]),
    ("eligibility.yaml", lambda d: rule(d, "E9", "whitelist").update(when="whitelisted < 1"),
     ["E9.whitelist", "whitelisted is a bool"]),
    ("eligibility.yaml", lambda d: rule(d, "E6", "activity")["reason"].update(code="LOW_ACTIVTY"),
     ["eligibility.yaml", "rule E6.activity", "code"]),
    ("eligibility.yaml", lambda d: rule(d, "E6", "activity").update(products=["weilidia"]),
     ["E6.activity", "unknown product"]),
    ("eligibility.yaml", lambda d: rule(d, "E4", "credit_card")["reason"].update(starts_cooldown=True),
     ["E4.credit_card", "CARD_NOT_BOUND", "E4.bank_card"]),
    ("eligibility.yaml", lambda d: rule(d, "E10", "health_score")["params"].update(min_health_score="60"),
     ["eligibility.yaml", "E10.health_score", "number"]),
    ("eligibility.yaml", lambda d: rule(d, "E10", "health_score").pop("reason"),
     ["E10.health_score", "exactly one effect"]),
    ("eligibility.yaml", lambda d: d["rules"].append(dict(rule(d, "E2", "age"))),
     ["E2.age", "defined twice"]),
    ("products.yaml", lambda d: d["products"]["xiaoe"].update(max_apr=0.3),
     ["products.yaml", "max_apr is above apr_cap"]),
    ("rejections.yaml", lambda d: rule(d, "R2", "id_card_expiry")["params"].update(
        earliest_allowed_expiry=3), ["R2.id_card_expiry", "date"]),
])
def test_bad_rule_file_is_refused_with_a_clear_error(rules_copy, name, mutate, expected):
    edit(rules_copy, name, mutate)
    with pytest.raises(rulebook.RulesError) as error:
        rules_files.load(rules_copy)
    for fragment in expected:
        assert fragment in str(error.value)


def test_invalid_yaml_is_refused(rules_copy):
    (rules_copy / "groups.yaml").write_text("rules: [\n")
    with pytest.raises(rulebook.RulesError, match="groups.yaml: not valid YAML"):
        rules_files.load(rules_copy)


def test_service_refuses_to_start_on_bad_rules(rules_copy):
    (rules_copy / "time.yaml").unlink()
    with pytest.raises(rulebook.RulesError, match="time.yaml: missing"):
        create_app(Settings(rules_dir=rules_copy))


def test_changed_threshold_changes_decisions(rules_copy):
    """A rule file is the policy: moving E2's minimum age moves the decision."""
    from schemas.request import DecideRequestSchema
    from service.adapters.rule_engine import policy_for
    from service.domain.userstate import UserState
    from tests.conftest import NOW, payload

    edit(rules_copy, "eligibility.yaml", lambda d: rule(d, "E2", "age")["params"].update(min_age=21))
    book = rules_files.load(rules_copy)
    doc = DecideRequestSchema(term_ranges=book.term_ranges()).load(payload(age=20))
    decision = policy_for(book).decide(doc, UserState(), NOW)
    assert [r.code for r in decision.reasons] == ["AGE_OUT_OF_RANGE"]
    assert decision.rules_version == book.version


# -- numbers durable_rules cannot take, and oversized files (issue 9 item 7) -----------------------
def set_min_age(value):
    return lambda d: rule(d, "E2", "age")["params"].update(min_age=value)


@pytest.mark.parametrize("name, mutate, expected", [
    ("eligibility.yaml", set_min_age(float("nan")), "nan is not a finite number"),
    ("eligibility.yaml", set_min_age(float("inf")), "inf is not a finite number"),
    ("eligibility.yaml", set_min_age(float("-inf")), "inf is not a finite number"),
    ("eligibility.yaml", set_min_age(1.0e-7), "exponent"),
    ("eligibility.yaml", set_min_age(1e-300), "exponent"),
    ("eligibility.yaml", set_min_age(2 ** 64), "2**53"),
    ("eligibility.yaml", set_min_age(-(2 ** 53) - 1), "2**53"),
    ("eligibility.yaml", lambda d: rule(d, "E2", "age").update(when="age < 0.00000001"), "exponent"),
    ("products.yaml", lambda d: d["products"]["xiaoe"].update(max_amount=float("inf")), "finite"),
    ("time.yaml", lambda d: d["temporary_limit"].update(increase=float("nan")), "finite"),
    ("rejections.yaml", lambda d: rule(d, "R2", "id_card_expiry")["params"].update(
        earliest_allowed_expiry={"years": 10 ** 6}), "at most 200"),
])
def test_numbers_durable_rules_cannot_take_are_refused(rules_copy, name, mutate, expected):
    edit(rules_copy, name, mutate)
    with pytest.raises(rulebook.RulesError) as error:
        rules_files.load(rules_copy)
    assert name in str(error.value) and expected in str(error.value)


@pytest.mark.parametrize("value", [0, 0.0001, 17.5, 2 ** 53, -(2 ** 53), 1.5e-7])
def test_numbers_at_the_edge_that_durable_rules_takes_load_and_compile(rules_copy, value):
    """The refusal is no wider than the engine's limits: these build a working engine."""
    from service.adapters.rule_engine import policy_for

    edit(rules_copy, "eligibility.yaml", set_min_age(value))
    policy_for(rules_files.load(rules_copy))


def test_oversized_rule_file_is_refused_before_it_is_read(rules_copy):
    (rules_copy / "padding.yaml").write_bytes(b"#" * (rules_files.MAX_FILE_BYTES + 1))
    with pytest.raises(rulebook.RulesError, match="padding.yaml: .* at most"):
        rules_files.load(rules_copy)


def test_oversized_rules_directory_is_refused(rules_copy):
    for n in range(rules_files.MAX_DIRECTORY_BYTES // rules_files.MAX_FILE_BYTES + 1):
        (rules_copy / f"zz{n}.yaml").write_bytes(b"#" * rules_files.MAX_FILE_BYTES)
    with pytest.raises(rulebook.RulesError, match="add up to more than"):
        rules_files.load(rules_copy)


# -- hostile rules directories: alias bombs, devices, FIFOs ------------------------------------
@pytest.mark.parametrize("levels", [8, 9])
def test_an_alias_bomb_in_a_rule_file_is_refused(rules_copy, levels):
    """Walking a 9-level bomb (387 million references) took minutes; it is refused on its
    expanded size before anything walks it."""
    (rules_copy / "bomb.yaml").write_bytes(alias_bomb(levels))
    with pytest.raises(rulebook.RulesError, match=f"bomb.yaml: .*at most {rules_files.MAX_YAML_NODES}"):
        rules_files.load(rules_copy)


def test_an_alias_bomb_in_an_archived_version_is_refused(book):
    """Archived versions come back as file contents (RulesArchive.load -> load_files)."""
    files = dict(book.files, **{"groups.yaml": alias_bomb(9)})
    with pytest.raises(rulebook.RulesError, match="groups.yaml: its aliases expand"):
        rules_files.load_files(files)


def test_an_alias_that_contains_itself_is_refused(rules_copy):
    (rules_copy / "groups.yaml").write_text("rules: &r [*r]\n")
    with pytest.raises(rulebook.RulesError, match="groups.yaml: an alias contains itself"):
        rules_files.load(rules_copy)


def test_the_bundled_rules_use_aliases_within_the_bound(book):
    """The bound is no refusal of aliases: the bundled files share reasons by alias."""
    assert b"*out_of_range" in book.files["limits.yaml"]
    loaded = rules_files.load_files(book.files)
    assert loaded.version == book.version and loaded.rules == book.rules


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "directory"])
def test_a_rule_file_that_is_not_a_regular_file_is_refused(rules_copy, tmp_path, target):
    """/dev/zero has stat size 0 and was read without end; a FIFO would block the open."""
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = tmp_path / "fifo"
    elif target == "directory":
        (tmp_path / "directory").mkdir()
        target = tmp_path / "directory"
    (rules_copy / "x.yaml").symlink_to(target)
    with pytest.raises(rulebook.RulesError, match="x.yaml: not a regular file"):
        rules_files.load(rules_copy)


def test_a_directory_named_like_a_rule_file_is_refused(rules_copy):
    (rules_copy / "x.yaml").mkdir()
    with pytest.raises(rulebook.RulesError, match="x.yaml: not a regular file"):
        rules_files.load(rules_copy)


def test_a_symlink_to_a_regular_file_loads_as_the_file(rules_copy, tmp_path, book):
    """A Kubernetes ConfigMap mount is symlinks to regular files."""
    data = tmp_path / "data"
    data.mkdir()
    (rules_copy / "groups.yaml").rename(data / "groups.yaml")
    (rules_copy / "groups.yaml").symlink_to(data / "groups.yaml")
    assert rules_files.load(rules_copy).version == book.version



def test_rules_archive_refuses_an_alias_bomb_naming_the_file(rules_copy):
    """`rules archive` of a 9-level bomb had not finished after 40 s; it exits non-zero now,
    before it reaches for Redis (none answers at the URL given)."""
    from click.testing import CliRunner

    from service.entrypoints.cli import main

    (rules_copy / "bomb.yaml").write_bytes(alias_bomb(9))
    result = CliRunner().invoke(main, ["rules", "archive", str(rules_copy)],
                                env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 1 and "bomb.yaml: its aliases expand" in result.output
