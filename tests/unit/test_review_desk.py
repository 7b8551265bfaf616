"""The reviewers' desk on the in-memory adapters: the pure policy of claims, notes and a case's
age, and how a log holding claims and notes simulates under other rules."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from schemas.request import DecideRequestSchema
from service.domain import review_desk
from service.domain.application import StoredApplication
from service.domain.human_review import request_entry
from service.domain.review_desk import DeskRefusal
from tests.conftest import NOW, payload
from tests.unit.test_applicant_rights import memory
from tests.unit.test_simulate import own_source, rules_source, simulate, variant

ISO = "%Y-%m-%dT%H:%M:%SZ"


def case(**doc) -> StoredApplication:
    decision = {"outcome": "review", "decided_at": NOW.strftime(ISO), "reasons": []}
    return StoredApplication({"application_id": "a1", "user_id": "u1", "decision": decision, **doc})


def test_a_claim_is_the_holders_until_it_ends(book):
    time = book.time
    held = review_desk.claimed(case(), "rev-1", NOW, time)
    ends = NOW + dt.timedelta(minutes=time.review_claim_minutes)
    assert review_desk.active_claim(held, NOW).until == ends
    with pytest.raises(DeskRefusal, match="rev-1"):
        review_desk.claimed(held, "rev-2", ends - dt.timedelta(seconds=1), time)
    with pytest.raises(DeskRefusal, match="only its holder"):
        review_desk.may_close(held, "rev-2", NOW)
    review_desk.may_close(held, "rev-1", NOW)
    assert review_desk.active_claim(held, ends) is None                # its last second is out
    review_desk.may_close(held, "rev-2", ends)
    extended = review_desk.claimed(held, "rev-1", NOW + dt.timedelta(minutes=5), time)
    assert extended.doc["claim"]["claimed_at"] == NOW.strftime(ISO)     # since the first claim
    assert review_desk.released(case(), "rev-1", NOW) is None           # nothing held: nothing to write
    with pytest.raises(DeskRefusal):
        review_desk.released(held, "rev-2", NOW)


def test_notes_append_and_a_case_that_is_not_open_refuses_them(book):
    first = review_desk.with_note(case(), "rev-1", "one", NOW)
    assert review_desk.with_note(first, "rev-1", "one", NOW) is None    # the same note again
    second = review_desk.with_note(first, "rev-2", "one", NOW)
    assert [n["reviewer_id"] for n in second.doc["notes"]] == ["rev-1", "rev-2"]
    full = case(notes=[{"reviewer_id": "r", "at": "x", "text": str(n)} for n in range(review_desk.NOTES_MAX)])
    with pytest.raises(DeskRefusal, match="notes"):
        review_desk.with_note(full, "rev-1", "one more", NOW)
    with pytest.raises(DeskRefusal, match="approved"):
        review_desk.with_note(case(review={"outcome": "approved", "reviewed_at": "x"}), "r", "n", NOW)


def test_an_applicant_case_is_as_old_as_its_request(book):
    asked = NOW + dt.timedelta(days=20)
    applicant = StoredApplication({"application_id": "a1", "user_id": "u1",
                                   "decision": {"outcome": "rejected", "decided_at": NOW.strftime(ISO)},
                                   "human_review": request_entry(asked, None, "v")})
    later = asked + dt.timedelta(hours=book.time.review_sla_hours)
    assert review_desk.standing(applicant, later, book.time).overdue is False   # the last second is in
    standing = review_desk.standing(applicant, later + dt.timedelta(seconds=1), book.time)
    assert standing.age_seconds == book.time.review_sla_hours * 3600 + 1 and standing.overdue


def desk_log(policy) -> list[tuple[int, str]]:
    """Two rejections (age 17) sent to a person, claimed and noted; one of them reviewed."""
    from service.domain.clock import FixedClock

    clock = FixedClock(NOW)
    services = memory(policy, clock)
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    for user in ("u1", "u2"):
        doc = dict(payload(age=17), user_id=user, application_id="a1")
        services.decisions.decide(doc, schema.load(doc))
        services.rights.request_human_review(user, "a1", None)
        services.desk.claim("a1", user, "rev-1")
        services.desk.note("a1", user, "rev-1", f"looked at {user}")
    services.desk.release("a1", "u2", "rev-1")
    services.reviews.review("a1", {"user_id": "u1", "reviewer_id": "rev-1", "outcome": "approved",
                                   "reason_codes": [], "note": ""})
    out = io.StringIO()
    services.stores.log.export(out)
    return list(enumerate(out.getvalue().splitlines(keepends=True), 1))


def test_claims_and_notes_simulate_where_their_case_still_exists(policy, tmp_path_factory):
    lines = desk_log(policy)
    same = simulate(iter(lines), own_source()).to_dict()
    assert same["applied"] == {"human_review": 2, "review": 1, "review_claim": 3, "review_note": 2}
    assert same["no_longer_apply"] == {} and same["skipped_kinds"] == {}
    younger = variant(tmp_path_factory, "min-age-16", {"eligibility.yaml": ("min_age: 18", "min_age: 16")})
    other = simulate(iter(lines), rules_source(younger)).to_dict()
    assert other["no_longer_apply"] == {"human_review": 2, "review": 1, "review_claim": 3, "review_note": 2}
