"""Human review: list the pending cases, close one with a reviewer's outcome (API.md "Human review").

A case is a decision the rules sent to review, or a rejection its applicant sent to a person
(service.domain.human_review): the reviewer closes both alike; the effects of the second are
the applicant's (service.domain.review.applicant_review_effects).

Closing runs under the user's lock like a decision: the application record gains its `review`
entry, the state change (T2 hold or the 90-day window, from review time) and the log record
are one write. Two reviewers closing one case are serialised by that lock: the first commits,
the second finds the case reviewed and gets the same 200 if it sent the same body, else a 409.
The pending index is updated after the commit (service.usecases.reviews_index).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Optional

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.domain.application import StoredApplication
from service.domain.decision import iso_utc
from service.domain.policy import Policy
from service.domain.rulebook import TimeRules
from service.domain.review import ApplicantCase, applicant_review_effects, review_effects
from service.domain.review_desk import DeskRefusal, may_close, standing
from service.usecases import log_records
from service.usecases.errors import Conflict, NotFound
from service.usecases.live_rules import LiveRules
from service.usecases.ports import UserSnapshot, UserWrite
from service.usecases.reviews_index import CaseIndex, decode_cursor
from service.usecases.unit_of_work import UserWork

REVIEW_INPUT = ("reviewer_id", "outcome", "reason_codes", "note")


@dataclass(frozen=True)
class ReviewResult:
    view: dict
    replayed: bool   # True: the same review sent again


@dataclass(frozen=True)
class CaseFilter:
    """GET /reviews' filters; None: any. `claimed_by` "none" keeps the unclaimed cases."""

    product: Optional[str] = None
    requested_by: Optional[str] = None
    claimed_by: Optional[str] = None
    overdue: Optional[bool] = None

    def keeps(self, item: dict) -> bool:
        claimed = "none" if item["claimed_by"] is None else item["claimed_by"]
        return ((self.product is None or item["product"] == self.product)
                and (self.requested_by is None or item["requested_by"] == self.requested_by)
                and (self.claimed_by is None or claimed == self.claimed_by)
                and (self.overdue is None or item["overdue"] == self.overdue))


class Reviews:
    """The reviewer's use cases over the unit of work, the live rules and the case index."""

    def __init__(self, work: UserWork, rules: LiveRules, cases: CaseIndex):
        self.work, self.rules, self.cases = work, rules, cases

    def review(self, application_id: str, data: dict) -> ReviewResult:
        """Close the case of (`data["user_id"]`, `application_id`) with the reviewer's input."""
        user_id = data["user_id"]
        given = {name: data[name] for name in REVIEW_INPUT}

        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is None or stored.user_id != user_id:
                raise NotFound(f"no application {application_id!r} for user {user_id!r}")
            done = stored.doc.get("review")
            if done:
                if {name: done[name] for name in REVIEW_INPUT} != given:
                    raise Conflict(f"application {application_id!r} was already reviewed differently")
                return ReviewResult(stored.view(now), replayed=True), None
            if not stored.is_open_case():
                raise Conflict(f"application {application_id!r} is {stored.status_at(now)}, not in review")
            try:
                may_close(stored, given["reviewer_id"], now)
            except DeskRefusal as exc:
                raise Conflict(str(exc)) from None
            if "case" not in stored.doc:   # decided before cases kept their request
                raise Conflict(f"application {application_id!r} was decided before review cases kept "
                               "the request; decide it again under a new application_id")
            policy, version = self.rules.policy, self.rules.version
            request = stored.doc["case"]["request"]
            state, case, lifts = snapshot.state, None, False
            if stored.requested_by_applicant:
                case = ApplicantCase(stored.decision.get("reapply_after"))
                effects, change, lifts = applicant_review_effects(
                    policy, _load(policy, request), state, now, given["outcome"], case)
            else:
                effects, change = review_effects(policy, _load(policy, request), state, now,
                                                 given["outcome"], given["reason_codes"])
            done = {**given, "reviewed_at": iso_utc(now), "rules_version": version, **effects}
            record = stored.with_changes(review=done, claim=None)
            log = log_records.log_text(log_records.review_record(
                user_id, application_id, now, version, request, state, done, change,
                dataclasses.asdict(case) if case else None, lifts))
            write = UserWrite(at=now, application=record, change=change, lifts_cooldown=lifts, log=log)
            return ReviewResult(record.view(now), replayed=False), write

        result = self.work.run(user_id, application_id, step)
        self.cases.close(result.view["decision"], result.view.get("human_review", {}).get("requested_at"))
        return result

    def pending(self, limit: int, cursor: Optional[str], wanted: CaseFilter = CaseFilter()) -> dict:
        """Pending cases oldest first, `limit` at most, after `cursor`, those `wanted` only;
        stale entries dropped. A filtered page may hold fewer than `limit` items and still
        have a next cursor: it ends where the scan stopped."""
        now, time = self.work.clock.now(), self.rules.policy.book.time
        items = lambda records: [i for i in (_item(r, now, time) for r in records) if wanted.keeps(i)]
        found, next_cursor = self.cases.page(decode_cursor(cursor) if cursor else None, limit,
                                             select=items)
        return {"items": found, "next_cursor": next_cursor}


def _load(policy: Policy, request: dict) -> dict:
    """The stored request as the rules read it (the schema of the live rules version)."""
    try:
        return DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(request)
    except ValidationError as exc:
        raise Conflict(f"the application's request is not valid under the live rules: {exc.messages}") from None


def _item(record: StoredApplication, now: dt.datetime, time: TimeRules) -> dict:
    decision, desk = record.decision, standing(record, now, time)
    return {"application_id": record.application_id, "user_id": record.user_id,
            "product": decision["product"],
            "amount": record.doc.get("case", {}).get("request", {}).get("amount"),
            "reason_codes": [r["code"] for r in decision["reasons"]],
            "decided_at": decision["decided_at"],
            "requested_by": "applicant" if record.requested_by_applicant else "rules",
            **dataclasses.asdict(desk)}
