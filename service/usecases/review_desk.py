"""The reviewers' desk: claim a pending case, release it, add a note (API.md "The reviewer's desk").

Each step runs under the user's lock through the unit of work, like a decision or a review:
the application record (which holds the claim and the notes, service.domain.review_desk) and
the step's log record are one write. So a claim and a close of the same case never interleave,
on one Redis or on a Cluster alike: both are writes of the one record in the user's slot.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Optional

from service.domain import review_desk
from service.domain.application import StoredApplication
from service.domain.review_desk import DeskRefusal
from service.usecases import log_records
from service.usecases.errors import Conflict, NotFound
from service.usecases.live_rules import LiveRules
from service.usecases.ports import UserSnapshot, UserWrite
from service.usecases.unit_of_work import UserWork

# (the record now, the log record's own fields) or None: nothing to write
Change = Callable[[StoredApplication, dt.datetime], Optional[tuple[StoredApplication, dict]]]


@dataclass(frozen=True)
class DeskResult:
    view: dict
    written: bool   # False: the same step again, or a release of a claim that had ended


class ReviewDesk:
    """Claims and notes on the pending cases, over the unit of work and the live rules."""

    def __init__(self, work: UserWork, rules: LiveRules):
        self.work, self.rules = work, rules

    def claim(self, application_id: str, user_id: str, reviewer_id: str) -> DeskResult:
        """Hold the case for `review_claim_minutes` (the holder again: extended)."""
        def change(stored, now):
            record = review_desk.claimed(stored, reviewer_id, now, self.rules.policy.book.time)
            claim = record.doc["claim"]
            return record, {"action": "claim", "claimed_at": claim["claimed_at"], "until": claim["until"]}
        return self._step("review_claim", application_id, user_id, reviewer_id, change)

    def release(self, application_id: str, user_id: str, reviewer_id: str) -> DeskResult:
        def change(stored, now):
            record = review_desk.released(stored, reviewer_id, now)
            return None if record is None else (record, {"action": "release", "claimed_at": None,
                                                         "until": None})
        return self._step("review_claim", application_id, user_id, reviewer_id, change)

    def note(self, application_id: str, user_id: str, reviewer_id: str, text: str) -> DeskResult:
        def change(stored, now):
            record = review_desk.with_note(stored, reviewer_id, text, now)
            return None if record is None else (record, {"text": text})
        return self._step("review_note", application_id, user_id, reviewer_id, change)

    def _step(self, kind: str, application_id: str, user_id: str, reviewer_id: str,
              change: Change) -> DeskResult:
        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is None or stored.user_id != user_id:
                raise NotFound(f"no application {application_id!r} for user {user_id!r}")
            try:
                changed = change(stored, now)
            except DeskRefusal as exc:
                raise Conflict(str(exc)) from None
            if changed is None:
                return DeskResult(stored.view(now), written=False), None
            record, fields = changed
            log = log_records.log_text(log_records.desk_record(
                kind, user_id, application_id, now, self.rules.version, reviewer_id, **fields))
            return DeskResult(record.view(now), written=True), UserWrite(at=now, application=record, log=log)

        return self.work.run(user_id, application_id, step)
