"""A person instead of the rules, on the in-memory adapters: who may ask until when (the pure
policy), what a reviewer's outcome does to the refusal's window, and how a log holding requests
replays, simulates under other rules and rebuilds."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from service.adapters import rules_files
from service.domain.application import StoredApplication
from service.domain.human_review import deadline, request_entry, standing
from service.domain.review import ApplicantCase, applicant_review_effects
from service.domain.userstate import UserState
from service.entrypoints.bootstrap import memory_stores, wire
from service.entrypoints.settings import Settings
from service.usecases.errors import Conflict
from service.usecases.rebuild import Rebuilder, diff, records
from service.usecases.unit_of_work import windows_at
from tests.conftest import NOW, RULES_DIR, payload
from tests.unit.test_simulate import own_source, rules_source, simulate, variant

ISO = "%Y-%m-%dT%H:%M:%SZ"


def record(outcome="rejected", codes=("AGE_OUT_OF_RANGE",), **doc) -> StoredApplication:
    decision = {"outcome": outcome, "decided_at": NOW.strftime(ISO), "rules_version": "v",
                "reasons": [{"code": c} for c in codes], "reapply_after": None}
    return StoredApplication({"application_id": "a1", "user_id": "u", "decision": decision, **doc})


def test_who_may_ask_and_until_when(book):
    days = book.time.human_review_days
    assert days == 30
    last = NOW + dt.timedelta(days=days)
    assert deadline(record().decision, book) == last
    assert standing(record(), book, last).available
    late = standing(record(), book, last + dt.timedelta(seconds=1))
    assert not late.available and late.until == last and "ended at" in late.refusal
    for refused, why in [(record("approved", ()), "not a rejection"), (record("review", ("MISSING_DATA",)), "not a rejection"),
                         (record(codes=("REAPPLY_COOLDOWN",)), "state"),
                         (record(codes=("COOLING_OFF_PENDING",)), "state"),
                         (record(cancelled_at="x"), "cancelled")]:
        found = standing(refused, book, NOW)
        assert not found.available and why in found.refusal, (refused.doc, found)
    asked = record(human_review=request_entry(NOW, None, "v"))
    assert standing(asked, book, NOW).status == "requested"
    decided = asked.with_changes(review={"outcome": "rejected"})
    assert standing(decided, book, NOW).status == "decided" and not standing(decided, book, NOW).available
    assert standing(record(), book, NOW).to_dict() == {"available": True, "until": last.strftime(ISO),
                                                       "status": None}


def test_a_version_without_the_setting_keeps_thirty_days(tmp_path):
    rules = variant_without(tmp_path, "human_review_days: 30\n")
    assert rules_files.load(rules).time.human_review_days == 30


def variant_without(tmp_path, text: str):
    import shutil

    path = tmp_path / "rules"
    shutil.copytree(RULES_DIR, path)
    time_file = path / "time.yaml"
    assert text in time_file.read_text()
    time_file.write_text(time_file.read_text().replace(text, ""))
    return path


def test_an_approval_ends_only_the_window_its_refusal_opened(policy):
    request = json.loads(json.dumps(payload()))
    from schemas.request import DecideRequestSchema

    loaded = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(request)
    opened = NOW + dt.timedelta(days=90)
    now = NOW + dt.timedelta(days=3)
    case = ApplicantCase(opened.strftime(ISO))
    effects, _, lifts = applicant_review_effects(policy, loaded, UserState(cooldown_until=opened), now,
                                                 "approved", case)
    assert lifts and effects["offer"]["limit"] > 0 and effects["reapply_after"] is None
    later = opened + dt.timedelta(days=5)
    assert not applicant_review_effects(policy, loaded, UserState(cooldown_until=later), now, "approved", case)[2]
    effects, change, lifts = applicant_review_effects(policy, loaded, UserState(cooldown_until=opened), now,
                                                      "rejected", case)
    assert not lifts and effects["reapply_after"] == case.refusal_reapply_after and effects["offer"] is None
    assert change.cooldown_until is None   # no new window from review time


def memory(policy, clock):
    settings = Settings()
    return wire(settings, clock, memory_stores(settings, clock), policy)


def rights_log(policy) -> tuple[list[tuple[int, str]], object]:
    """Three rejections (age 17) sent to a person: one approved, one rejected, one pending."""
    from service.domain.clock import FixedClock

    clock = FixedClock(NOW)
    services = memory(policy, clock)
    schema_request = lambda user: dict(payload(age=17), user_id=user, application_id="a1")
    from schemas.request import DecideRequestSchema

    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    for user in ("u1", "u2", "u3"):
        doc = schema_request(user)
        assert services.decisions.decide(doc, schema.load(doc)).decision["outcome"] == "rejected"
        clock.advance(hours=1)
        services.rights.request_human_review(user, "a1", f"statement of {user}")
    clock.advance(days=1)
    review = {"reviewer_id": "r", "note": "n"}
    services.reviews.review("a1", {**review, "user_id": "u1", "outcome": "approved", "reason_codes": []})
    services.reviews.review("a1", {**review, "user_id": "u2", "outcome": "rejected",
                                   "reason_codes": ["AGE_OUT_OF_RANGE"]})
    out = io.StringIO()
    services.stores.log.export(out)
    return list(enumerate(out.getvalue().splitlines(keepends=True), 1)), services


def test_a_second_request_is_refused_by_the_use_case(policy):
    _, services = rights_log(policy)
    with pytest.raises(Conflict, match="reviewed by a person"):
        services.rights.request_human_review("u1", "a1", None)
    with pytest.raises(Conflict, match="another statement"):
        services.rights.request_human_review("u3", "a1", "changed")
    assert services.rights.request_human_review("u3", "a1", "statement of u3").replayed


def test_requests_simulate_where_they_still_apply(policy, tmp_path_factory):
    lines, _ = rights_log(policy)
    for jobs in (1, 2):
        same = simulate(iter(lines), own_source(), jobs=jobs).to_dict()
        assert same["human_reviews"] == {"total": 3, "identical": 3}
        assert same["applied"] == {"human_review": 3, "review": 2} and same["no_longer_apply"] == {}
        assert same["reviews"] == {"total": 2, "identical": 2}
    # the candidate lets 17-year-olds in: nothing is left to send to a person, or to review
    younger = variant(tmp_path_factory, "min-age-16", {"eligibility.yaml": ("min_age: 18", "min_age: 16")})
    other = simulate(iter(lines), rules_source(younger)).to_dict()
    assert other["no_longer_apply"] == {"human_review": 3, "review": 2}
    assert other["human_reviews"] == {"total": 3, "identical": 0}
    assert other["transitions"] == {"rejected->approved": 3}


def test_a_rebuild_of_the_log_is_the_store_the_service_wrote(policy):
    lines, services = rights_log(policy)
    from service.domain.clock import FixedClock

    clock = FixedClock(NOW + dt.timedelta(days=2))
    fresh = memory(policy, clock)
    implied = Rebuilder(fresh.work, fresh.rules, fresh.stores.erased)
    result = diff(implied, services.work, records(iter(lines)))
    assert result.users == 3 and result.differences == []
    views = {u: fresh.work.store.application(u, "a1").view(clock.now()) for u in ("u1", "u2", "u3")}
    assert [views[u]["status"] for u in ("u1", "u2", "u3")] == ["approved", "rejected", "review_requested"]
    windows = windows_at(policy, clock.now())
    assert fresh.work.store.state("u1", windows).cooldown_until is None            # the approval ended it
    assert fresh.work.store.state("u2", windows) == services.work.store.state("u2", windows)
