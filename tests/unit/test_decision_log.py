"""The decision log: recorded with the state change, exported in order, replayed exactly."""
import io
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from service.adapters import decision_log
from service.domain.clock import FixedClock
from service.domain.userstate import StateChange
from service.entrypoints import bootstrap
from service.entrypoints.settings import Settings
from service.usecases import rebuild, replay
from service.usecases.ports import StoreBusy, UserWrite
from service.usecases.rebuild import Rebuilder
from tests.conftest import NOW, RULES_DIR, memory_services, payload
from tests.loggen import generate

N_DECISIONS = 10_000


@pytest.fixture(scope="module")
def big_log(policy, tmp_path_factory):
    """10,000 decisions (with cancels and grace uses) made by the service, exported."""
    service = memory_services(policy, FixedClock(NOW))
    records = generate(service, N_DECISIONS)
    path = tmp_path_factory.mktemp("log") / "decisions.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        assert service.stores.log.export(out) == records
    return service, path, records


def lines_of(path):
    return list(decision_log.read_lines(open(path, encoding="utf-8")))


def rebuilder(services) -> Rebuilder:
    """What applies log records to `services`' store (rebuild, and the implied side of a diff)."""
    return Rebuilder(services.work, services.rules, services.stores.erased,
                     services.settings.erasure_secret)


def own_rules():
    """Each record under its own rules version (the bundled rules, no archive)."""
    return bootstrap.policy_source(Settings(rules_dir=RULES_DIR))


def test_every_decision_cancel_and_grace_use_is_recorded(big_log):
    service, path, records = big_log
    kinds = [json.loads(text)["kind"] for _, text in lines_of(path)]
    assert len(kinds) == records
    assert kinds.count("decision") == N_DECISIONS
    assert kinds.count("cancel") > 0 and kinds.count("grace") > 0
    evaluated = sum(json.loads(t)["evaluated"] for _, t in lines_of(path) if '"kind":"decision"' in t)
    assert evaluated == service.decisions.evaluations


def test_export_is_ordered_and_keeps_field_order(big_log):
    _, path, _ = big_log
    records = [json.loads(text) for _, text in lines_of(path)]
    times = [r["at"] for r in records]
    assert times == sorted(times)
    assert list(records[0])[:6] == ["v", "kind", "at", "user_id", "application_id", "rules_version"]


def test_export_window_agrees(big_log):
    """(The sort spilled to files in bounded memory is the Redis adapter's: it is tested on the
    real Redis, tests/integration/test_log_export.py.)"""
    service, path, _ = big_log
    records = [json.loads(text) for _, text in lines_of(path)]
    since, until = records[1000]["at"], records[3000]["at"]
    small_runs = io.StringIO()
    count = service.stores.log.export(small_runs, since, until)
    expected = [r for r in records if since <= r["at"] < until]
    got = [json.loads(line) for line in small_runs.getvalue().splitlines()]
    assert count == len(expected) and [r["at"] for r in got] == [r["at"] for r in expected]


def test_replay_under_its_own_rules_reproduces_every_decision(big_log, tmp_path):
    _, path, _ = big_log
    source = own_rules()
    summary = replay.replay(decision_log.read_lines(open(path, encoding="utf-8")), source)
    assert summary.total == N_DECISIONS
    assert summary.identical == summary.exact == N_DECISIONS
    assert summary.changed == 0 and not summary.transitions and not summary.rules


def test_one_threshold_changes_exactly_the_decisions_it_should(big_log, tmp_path):
    _, path, _ = big_log
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    eligibility = yaml.safe_load((rules / "eligibility.yaml").read_text())
    age_rule = next(r for r in eligibility["rules"] if r["id"] == "E2")
    age_rule["params"]["min_age"] = 21
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(eligibility, allow_unicode=True))

    expected = approved = 0
    for _, text in lines_of(path):
        record = json.loads(text)
        if record["kind"] == "decision" and record["evaluated"] \
                and 18 <= record["request"]["applicant"]["age"] <= 20:
            expected += 1
            approved += record["decision"]["outcome"] in ("approved", "cooling_off")
    assert expected > 100

    changes = []
    summary = replay.replay(decision_log.read_lines(open(path, encoding="utf-8")),
                            bootstrap.policy_source(Settings(), rules_dir=rules),
                            on_change=changes.append)
    assert summary.changed == expected
    assert summary.rules == {"E2.age": expected}
    assert sum(n for k, n in summary.transitions.items() if k.endswith("->rejected")) >= approved
    assert all("AGE_OUT_OF_RANGE" in c["new"]["reasons"] for c in changes)
    assert all(any(t["rule"] == "E2.age" for t in c["trace"]) for c in changes)


def test_replay_with_several_processes_agrees(big_log):
    _, path, _ = big_log
    source = own_rules()
    first_2000 = lines_of(path)[:2000]
    one = replay.replay(iter(first_2000), source, jobs=1).to_dict()
    two = replay.replay(iter(first_2000), source, jobs=2).to_dict()
    assert one == two and one["total"] > 1500


def test_rebuild_then_diff_is_clean(big_log, policy):
    live, path, _ = big_log
    rebuilt = memory_services(policy, FixedClock(NOW))
    rebuilder(rebuilt).rebuild(rebuild.records(decision_log.read_lines(open(path, encoding="utf-8"))))
    implied = memory_services(policy, FixedClock(NOW))
    result = rebuild.diff(rebuilder(implied), rebuilt.work,
                          rebuild.records(decision_log.read_lines(open(path, encoding="utf-8"))))
    assert result.users > 1000 and result.differences == []
    # the store the service wrote agrees with its own log too
    implied = memory_services(policy, FixedClock(NOW))
    result = rebuild.diff(rebuilder(implied), live.work,
                          rebuild.records(decision_log.read_lines(open(path, encoding="utf-8"))))
    assert result.differences == []


def test_diff_finds_a_tampered_state(policy):
    service = memory_services(policy, FixedClock(NOW))
    generate(service, 50, users=10)
    out = io.StringIO()
    service.stores.log.export(out)
    lines = list(enumerate(out.getvalue().splitlines(), 1))
    user = json.loads(lines[0][1])["user_id"]
    # the user's state changed behind the log's back: a write with no log record
    tampered = StateChange(cooldown_until=NOW.replace(year=2001))
    service.work.run(user, None, lambda snapshot, now: (None, UserWrite(at=now, change=tampered)))
    implied = memory_services(policy, FixedClock(NOW))
    result = rebuild.diff(rebuilder(implied), service.work, rebuild.records(iter(lines)))
    assert [(d.user_id, d.key) for d in result.differences] == [(user, "user")]


@pytest.mark.parametrize("digest, differences", [("raw", 0), ("other", 1)])
def test_diff_accepts_the_raw_digest_of_records_written_before_canonical_retries(policy, digest,
                                                                                differences):
    """Records written before retries were compared in canonical form hold the raw request's
    digest: the same record to `state diff`. Any other digest is still a difference."""
    from schemas.request import DecideRequestSchema
    from service.usecases.decide import raw_payload_digest

    service = memory_services(policy, FixedClock(NOW))
    doc = dict(payload(amount=4000.0), user_id="u-old", application_id="a-old")
    service.decisions.decide(doc, DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(doc))
    out = io.StringIO()
    service.stores.log.export(out)
    lines = list(enumerate(out.getvalue().splitlines(), 1))
    record = service.stores.users.application("u-old", "a-old")
    request = json.loads(lines[0][1])["request"]
    assert record.payload_sha256 != raw_payload_digest(request)   # 4000.0 is not canonical
    # the record as an older service wrote it, through the store's port
    record = record.with_changes(payload_sha256=raw_payload_digest(request) if digest == "raw" else "0" * 64)
    service.work.run("u-old", "a-old", lambda snapshot, now: (None, UserWrite(at=now, application=record)))
    assert service.stores.users.application("u-old", "a-old") == record
    implied = memory_services(policy, FixedClock(NOW))
    result = rebuild.diff(rebuilder(implied), service.work, rebuild.records(iter(lines)))
    assert len(result.differences) == differences


def test_a_failed_commit_logs_nothing(policy, monkeypatch):
    """State and log are one write: when the commit is refused, neither changes."""
    service = memory_services(policy, FixedClock(NOW))
    doc = dict(payload(age=17), user_id="u", application_id="a")
    from schemas.request import DecideRequestSchema

    request = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(doc)
    store = service.stores.users
    real_commit = store.commit

    def lose_lock(snapshot, write):
        service.clock.advance(milliseconds=store.lock_ttl_ms + 1)   # the lock expired
        return real_commit(snapshot, write)

    monkeypatch.setattr(store, "commit", lose_lock)
    with pytest.raises(StoreBusy):
        service.decisions.decide(doc, request)
    # nothing of the user: no record, no state, no log record
    assert store.application("u", "a") is None and store.inventory("u") is None
    assert service.stores.log.export(io.StringIO()) == 0


# -- the CLI -----------------------------------------------------------------------------------------
def test_cli_replay_summary_and_reports(big_log, tmp_path):
    from service.entrypoints.cli import main

    _, path, _ = big_log
    small = tmp_path / "small.jsonl"
    small.write_text("".join(text for _, text in lines_of(path)[:300]))
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    text = (rules / "eligibility.yaml").read_text().replace("min_health_score: 60", "min_health_score: 65")
    (rules / "eligibility.yaml").write_text(text)
    runner = CliRunner()
    result = runner.invoke(main, ["replay", str(small), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["total"] == summary["identical"] and summary["changed"] == 0
    for report in ("changes.jsonl", "changes.html"):
        result = runner.invoke(main, ["replay", str(small), "--rules", str(rules), "--json",
                                      "--report", str(tmp_path / report)])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert set(summary) >= {"total", "identical", "changed", "transitions", "rules"}
        assert summary["changed"] > 0 and set(summary["rules"]) == {"E10.health_score"}
    assert len((tmp_path / "changes.jsonl").read_text().splitlines()) == summary["changed"]
    page = (tmp_path / "changes.html").read_text()
    assert page[page.index("<table id=changes>"):].count("<tr>") == summary["changed"] + 1
    text_run = runner.invoke(main, ["replay", str(small), "--rules", str(rules)])
    assert "rules whose results changed" in text_run.output and "E10.health_score" in text_run.output


def test_cli_replay_names_a_bad_line(big_log, tmp_path):
    from service.entrypoints.cli import main

    _, path, _ = big_log
    lines = [text for _, text in lines_of(path)[:20]]
    lines[6] = "{not json\n"
    lines[9] = json.dumps({"kind": "decision", "at": "2026-11-23T00:00:00Z"}) + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    runner = CliRunner()
    result = runner.invoke(main, ["replay", str(bad)])
    assert result.exit_code != 0 and "line 7: not valid JSON" in result.output
    result = runner.invoke(main, ["replay", str(bad), "--skip-bad", "--json"])
    assert result.exit_code == 0
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["bad_lines"] == 2
    assert "line 10: missing field(s)" in result.output
