"""Replay that carries state forward (`replay --simulate`): state built from the new decisions."""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.adapters.rule_engine import policy_for
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import policy_source, simulation_stores
from service.entrypoints.settings import Settings
from service.usecases import replay as replaying
from service.usecases import simulate as simulating
from service.usecases.decide import grace_write
from service.usecases.simulate import HANDLERS
from service.usecases.unit_of_work import windows_at
from tests.conftest import NOW, RULES_DIR, memory_services, payload
from tests.loggen import generate


def simulate(lines, source, **options):
    """Simulate on the stores the CLI gives each partition (in memory, on its clock)."""
    return simulating.simulate(lines, source, simulation_stores, **options)


def rules_source(rules_dir) -> replaying.PolicySource:
    """Every record under the rules of `rules_dir` (`replay --rules DIR`)."""
    return policy_source(Settings(), rules_dir=rules_dir)


def own_source() -> replaying.PolicySource:
    """Each record under its own rules version: the bundled rules (no REDIS_URL, no archive)."""
    return policy_source(Settings(rules_dir=RULES_DIR))


def exported(services) -> list[tuple[int, str]]:
    out = io.StringIO()
    services.stores.log.export(out)
    return list(enumerate(out.getvalue().splitlines(keepends=True), 1))


def variant(tmp_path_factory, name: str, edits: dict[str, tuple[str, str]]):
    """A copy of the bundled rules with text replaced in some files (each must match)."""
    path = tmp_path_factory.mktemp(name) / "rules"
    shutil.copytree(RULES_DIR, path)
    for file, (old, new) in edits.items():
        text = (path / file).read_text()
        assert old in text, (file, old)
        (path / file).write_text(text.replace(old, new))
    return path


@pytest.fixture(scope="module")
def no_window_rules(tmp_path_factory):
    """A candidate under which no rejection opens the 90-day window."""
    path = variant(tmp_path_factory, "no-window", {})
    for file in path.glob("*.yaml"):
        file.write_text(file.read_text().replace("starts_cooldown: true", "starts_cooldown: false"))
    return path


def make_log(policy, steps) -> list[tuple[int, str]]:
    """Run `steps` through the service ((days after NOW, kind, args)); the exported log."""
    services = memory_services(policy, FixedClock(NOW))
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    for days, kind, args in steps:
        services.clock.set(NOW + dt.timedelta(days=days))
        if kind == "decide":
            user, app, doc = args
            doc = dict(doc, user_id=user, application_id=app)
            services.decisions.decide(doc, schema.load(doc))
        elif kind == "cancel":
            services.decisions.cancel(*args)
        elif kind == "review":
            user, app, outcome, codes = args
            services.reviews.review(app, {"user_id": user, "reviewer_id": "rev-1", "outcome": outcome,
                                          "reason_codes": codes, "note": "checked"})
        elif kind == "lift":
            services.audit.lift_cooldown(args[0], "op-1", "wrongly refused")
        else:
            services.decisions.use_grace(*args)
    return exported(services)


# A rejection that opens the window, then three good applications inside it; another user's approval.
WINDOW_STEPS = [(0, "decide", ("u-a", "a1", payload(bureau_major_adverse=True))),
                (1, "decide", ("u-b", "b1", payload())),
                (5, "decide", ("u-a", "a2", payload())),
                (20, "decide", ("u-a", "a3", payload())),
                (40, "decide", ("u-a", "a4", payload())),
                (45, "decide", ("u-b", "b2", payload()))]


def changes_of(lines, source, simulated: bool) -> dict[int, dict]:
    if simulated:
        result = simulate(iter(lines), source, keep_changes=True)
        return {c["line"]: c for c in result.changes}, result.to_dict()
    found = {}
    summary = replaying.replay(iter(lines), source, on_change=lambda c: found.setdefault(c["line"], c))
    return found, summary.to_dict()


def differing(lines, plain: dict, simulated: dict) -> set[int]:
    """Lines whose decision under plain replay and under simulation differ (outcome, reasons)."""
    def new(changes, number, text):
        side = changes[number]["new"] if number in changes else json.loads(text)["decision"]
        return side["outcome"], [r if isinstance(r, str) else r["code"] for r in side["reasons"]]
    return {n for n, text in lines if new(plain, n, text) != new(simulated, n, text)}


def state_refused_lines(lines) -> set[int]:
    return {n for n, text in lines if any(
        r["code"] == "REAPPLY_COOLDOWN" for r in json.loads(text)["decision"]["reasons"])}


def test_removing_window_starts_the_refusals_by_state_vanish(policy, no_window_rules):
    lines = make_log(policy, WINDOW_STEPS)
    refused = state_refused_lines(lines)
    assert len(refused) == 3
    source = rules_source(no_window_rules)
    plain, plain_summary = changes_of(lines, source, simulated=False)
    simulated, summary = changes_of(lines, source, simulated=True)
    assert summary["simulated"] is True and set(plain_summary) <= set(summary)
    assert summary["state_refusals"] == {"before": 3, "after": 0, "vanished": 3, "appeared": 0}
    # plain replay: only the rejection changed (it no longer opens the window)
    assert set(plain) == {1} and plain[1]["new"]["outcome"] == "rejected"
    # simulate differs from plain replay exactly by the refusals that vanish
    assert set(simulated) - set(plain) == refused == differing(lines, plain, simulated)
    assert all(simulated[n] == plain[n] for n in plain)
    # re-decided on their payloads, with T3's count built from the candidate's own decisions:
    # the third application in 6 months is one too many
    assert [simulated[n]["new"]["reasons"] for n in sorted(refused)] == [[], [], ["TOO_MANY_APPLICATIONS"]]
    assert summary["transitions"] == {"rejected->approved": 2}


def test_adding_window_starts_the_refusals_by_state_appear(no_window_rules, policy):
    candidate_log = make_log(policy_for(rules_files.load(no_window_rules)), WINDOW_STEPS)
    assert not state_refused_lines(candidate_log)
    source = rules_source(RULES_DIR)   # the bundled rules open the window
    plain, _ = changes_of(candidate_log, source, simulated=False)
    simulated, summary = changes_of(candidate_log, source, simulated=True)
    assert summary["state_refusals"] == {"before": 0, "after": 3, "vanished": 0, "appeared": 3}
    appeared = differing(candidate_log, plain, simulated)
    assert len(appeared) == 3 and 1 not in appeared
    assert all(simulated[n]["new"]["reasons"] == ["REAPPLY_COOLDOWN"] for n in appeared)
    assert all(simulated[n] == plain[n] for n in set(plain) - appeared)


def test_under_its_own_rules_the_log_is_reproduced_for_any_job_count(policy, no_window_rules):
    services = memory_services(policy, FixedClock(NOW))
    generate(services, 400, users=40, seed=5)
    lines = exported(services)
    own = simulate(iter(lines), own_source()).to_dict()
    assert own["total"] == own["identical"] == own["exact"] == 400
    assert own["no_longer_apply"] == {} and own["applied"]
    source = rules_source(no_window_rules)
    results = [simulate(iter(lines), source, jobs=jobs, keep_changes=True, impact=True)
               for jobs in (1, 2, 3)]
    assert results[0].to_dict()["state_refusals"]["vanished"] > 0
    for other in results[1:]:
        assert other.to_dict() == results[0].to_dict()
        assert other.changes == results[0].changes
        assert other.impact == results[0].impact


def test_cancels_and_grace_uses_that_no_longer_apply_are_counted(policy, tmp_path_factory):
    steps = [(0, "decide", ("u-c", "c1", payload(monthly_income=6000))),   # cooling-off
             (0, "cancel", ("u-c", "c1")),
             (2, "grace", ("u-c", 1)), (3, "grace", ("u-c", 2))]
    lines = make_log(policy, steps)
    assert json.loads(lines[0][1])["decision"]["outcome"] == "cooling_off"
    stricter = variant(tmp_path_factory, "stricter", {
        "eligibility.yaml": ("params: {min_age: 18, max_age: 60}", "params: {min_age: 31, max_age: 60}"),
        "time.yaml": ("max_uses: 2", "max_uses: 1")})
    result = simulate(iter(lines), rules_source(stricter)).to_dict()
    assert result["transitions"] == {"cooling_off->rejected": 1}
    assert result["applied"] == {"grace": 1}
    assert result["no_longer_apply"] == {"cancel": 1, "grace": 1}
    same = simulate(iter(lines), rules_source(RULES_DIR)).to_dict()
    assert same["applied"] == {"cancel": 1, "grace": 2} and same["no_longer_apply"] == {}


def test_an_unknown_record_kind_is_counted_and_skipped(policy):
    lines = make_log(policy, WINDOW_STEPS[:2])
    review = {"v": 1, "kind": "review-of-the-future", "at": "2026-11-23T09:00:00Z",
              "user_id": "u-a", "application_id": "a1", "rules_version": "x"}
    lines.append((len(lines) + 1, json.dumps(review) + "\n"))
    assert "review-of-the-future" not in HANDLERS
    result = simulate(iter(lines), own_source()).to_dict()
    assert result["skipped_kinds"] == {"review-of-the-future": 1}
    assert result["other_records"] == 1 and result["total"] == result["identical"] == 2


def test_a_bad_line_is_named_or_skipped(policy):
    lines = make_log(policy, WINDOW_STEPS)
    lines[2] = (3, "{not json\n")
    source = own_source()
    for jobs in (1, 2):
        with pytest.raises(replaying.BadRecord, match="line 3"):
            simulate(iter(lines), source, jobs=jobs)
    skipped = []
    result = simulate(iter(lines), source, jobs=2, skip_bad=True, on_bad=skipped.append)
    assert result.to_dict()["bad_lines"] == 1 and [b.line for b in skipped] == [3]


def test_cli_simulate_json_and_impact_pages(policy, no_window_rules, tmp_path):
    from service.entrypoints.cli import main

    log = tmp_path / "log.jsonl"
    log.write_text("".join(text for _, text in make_log(policy, WINDOW_STEPS)))
    runner = CliRunner()
    summaries = {}
    for mode in ("plain", "simulate"):
        page = tmp_path / f"{mode}.html"
        args = ["replay", str(log), "--rules", str(no_window_rules), "--json", "--report", str(page)]
        result = runner.invoke(main, args + (["--simulate", "--jobs", "2"] if mode == "simulate" else []))
        assert result.exit_code == 0, result.output
        summaries[mode] = json.loads(result.stdout)
        text = page.read_text()
        assert text.count("<figure class=chart") == 5 and text.count("<svg") == 5
        changes = text[text.index("<table id=changes>"):]
        assert changes.count("<tr>") == summaries[mode]["changed"] + 1
        # self-contained: every link is within the page, nothing to fetch, no script
        links = re.findall(r'(?:href|src)="([^"]{0,16})', text)
        assert all(link.startswith(("#", "data:image/")) for link in links), links
        assert not re.findall(r"url\((?!#)", text) and "@import" not in text
        assert "http://" not in text.replace("http://www.w3.org/", "") and "<script" not in text
    assert summaries["simulate"]["simulated"] is True and "simulated" not in summaries["plain"]
    assert set(summaries["plain"]) <= set(summaries["simulate"])
    assert summaries["simulate"]["changed"] - summaries["plain"]["changed"] == 3
    text_run = runner.invoke(main, ["replay", str(log), "--rules", str(no_window_rules), "--simulate"])
    assert text_run.exit_code == 0 and "simulated: refusals by state" in text_run.output


def test_the_partition_store_lock_does_not_expire_on_a_loaded_machine():
    """One thread owns a partition's store: a wall-clock lock TTL of seconds only made a slow
    step (a loaded machine) fail with StoreBusy between BEGIN and COMMIT."""
    import time

    from service.adapters import memory
    from service.usecases.simulate import Partition

    # the partition's stores keep time by the partition's clock (the records' time), not the wall's
    seen = []

    def stores(clock):
        made = simulation_stores(clock)
        seen.append((clock, made.users.data.clock))
        return made
    part = Partition(rules_source(RULES_DIR), stores, False, False, False)
    service = part.service_for("any")
    assert seen == [(service.clock, service.clock)]

    # so a step slower than the lock's TTL in wall time still commits: a lock of 10 ms, a step of 100
    def short_lock(clock):
        return memory.memory_stores(clock, load_files=rules_files.load_files, lock_ttl_ms=10)
    service = Partition(rules_source(RULES_DIR), short_lock, False, False, False).service_for("any")
    service.clock.set(NOW)

    def slow(snapshot, now):
        time.sleep(0.1)
        return "done", grace_write(service.policy, 1, now, "use-1")
    assert service.work.run("u-slow", None, slow, now=NOW) == "done"
    assert len(service.work.store.state("u-slow", windows_at(service.policy, NOW)).grace_uses) == 1


# Two review cases (pay_score missing): one approved, one rejected with a window-starting code
# (the window opens at review time), then that window lifted and the user approved again.
REVIEW_STEPS = [(0, "decide", ("u-r", "r1", payload(drop=("pay_score",), monthly_income=6000))),
                (0, "decide", ("u-s", "s1", payload(drop=("pay_score",)))),
                (1, "review", ("u-r", "r1", "approved", [])),
                (1, "review", ("u-s", "s1", "rejected", ["DEVICE_SWITCHING"])),
                (2, "decide", ("u-s", "s2", payload())),
                (3, "lift", ("u-s",)),
                (4, "decide", ("u-s", "s3", payload())),
                (5, "decide", ("u-b", "b1", payload()))]


def test_reviews_and_overrides_apply_as_recorded_or_are_counted(policy, tmp_path_factory):
    lines = make_log(policy, REVIEW_STEPS)
    kinds = [json.loads(text)["kind"] for _, text in lines]
    assert kinds.count("review") == 2 and kinds.count("override") == 1
    outcomes = [json.loads(t)["decision"]["outcome"] for _, t in lines if '"kind":"decision"' in t]
    assert outcomes == ["review", "review", "rejected", "approved", "approved"]
    own = own_source()
    no_review = variant(tmp_path_factory, "no-review", {
        "presence.yaml": ("outcome: review", "outcome: rejected")})
    candidate = rules_source(no_review)
    for jobs in (1, 2):
        same = simulate(iter(lines), own, jobs=jobs).to_dict()
        assert same["total"] == same["identical"] == same["exact"] == 5 and same["changed"] == 0
        assert same["reviews"] == {"total": 2, "identical": 2}
        assert same["overrides"] == {"total": 1, "identical": 1}
        assert same["applied"] == {"override": 1, "review": 2} and same["no_longer_apply"] == {}
        assert same["skipped_kinds"] == {}
        # the candidate rejects the cases outright: nothing to review, no window to lift, and
        # the refusal by the review's window (s2) vanishes
        other = simulate(iter(lines), candidate, jobs=jobs, keep_changes=True).to_dict()
        assert other["no_longer_apply"] == {"override": 1, "review": 2} and other["applied"] == {}
        assert other["reviews"] == {"total": 2, "identical": 0}
        assert other["transitions"] == {"rejected->approved": 1, "review->rejected": 2}
        assert other["state_refusals"]["vanished"] == 1
