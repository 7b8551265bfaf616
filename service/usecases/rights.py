"""The applicant's rights over an automated decision (API.md "Applicant rights"): a person
instead of the rules (PIPL art. 24), and a copy of what is held of them (art. 45).

A request for a person runs under the user's lock like a decision: the application record gains
its `human_review` entry and its review case (the request the reviewer decides on, found again
in the user's log), and the log its record, in one write; the case enters the pending index
before the lock is released, as a review outcome's does. Whether the request is allowed, and
until when, is policy (service.domain.human_review), read from the rules version that made the
decision.

An export reads everything of the user under the same lock (no decision is half-written in it)
and hands it out only once its receipt (who, when, why, counts; no personal data) is written.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Optional

from service.domain.application import StoredApplication
from service.domain.decision import iso_utc
from service.domain.human_review import request_entry, standing
from service.domain.privacy import erasure_subject, mask_free_text
from service.usecases import log_records
from service.usecases.decide import state_view
from service.usecases.errors import Conflict, NotFound
from service.usecases.live_rules import LiveRules
from service.usecases.ports import Receipts, UserSnapshot, UserWrite
from service.usecases.reviews_index import CaseIndex
from service.usecases.unit_of_work import UserWork


@dataclass(frozen=True)
class HumanReviewResult:
    view: dict            # the application as GET /applications/<id> shows it
    decision: dict        # the decision the case is about (its index entry)
    replayed: bool        # the same request again: nothing written


class ApplicantRights:
    """Requests for a person, and copies of a user's data, over the decisions' stores."""

    def __init__(self, work: UserWork, rules: LiveRules, cases: CaseIndex, receipts: Receipts,
                 erasure_secret: Optional[bytes] = None):
        self.work, self.rules, self.cases, self.receipts = work, rules, cases, receipts
        self.secret = erasure_secret

    # -- a person instead of the rules ------------------------------------------------------------
    def request_human_review(self, user_id: str, application_id: str, statement: Optional[str],
                             request: Optional[dict] = None) -> HumanReviewResult:
        """Open a review case for a rejection the rules made; the same request again answers
        the same; any other request on it is a Conflict naming why. `request` is the one the
        decision was made on when the caller has it (a simulation applying a logged request);
        otherwise it is found in the user's log."""
        statement = statement or None

        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is None or stored.user_id != user_id:
                raise NotFound(f"no application {application_id!r} for user {user_id!r}")
            book = self.rules.book_of(stored.decision["rules_version"])
            found = standing(stored, book, now)
            if found.status == "requested":
                if stored.doc["human_review"]["statement"] != statement:
                    raise Conflict(f"a person was already asked to decide application "
                                   f"{application_id!r}, with another statement")
                return HumanReviewResult(stored.view(now), stored.decision, replayed=True), None
            if not found.available:
                raise Conflict(f"application {application_id!r} cannot be sent to a person: "
                               f"{found.refusal}")
            made_on = request if request is not None else self._request_of(user_id, application_id)
            record = stored.with_changes(
                human_review=request_entry(now, statement, stored.decision["rules_version"]),
                case={"request": made_on})
            log = log_records.log_text(log_records.human_review_record(
                user_id, application_id, now, stored.decision, made_on, statement, found.until))
            write = UserWrite(at=now, application=record, log=log, keep_lock=True)
            return HumanReviewResult(record.view(now), record.decision, replayed=False), write

        return self.work.run(user_id, application_id, step, then=self._index_case)

    def _index_case(self, result: HumanReviewResult, snapshot: UserSnapshot) -> None:
        self.cases.open_then_release(result.decision, lambda: self.work.store.release(snapshot),
                                     result.view["human_review"]["requested_at"])

    def _request_of(self, user_id: str, application_id: str) -> dict:
        """The request that made the decision, as its log record keeps it (the reviewer
        decides on it, as on a case the rules opened)."""
        for text in reversed(self.work.store.log_records(user_id)):
            record = json.loads(text)
            if record["kind"] == "decision" and record.get("application_id") == application_id:
                return record["request"]
        raise Conflict(f"the request that made application {application_id!r} is no longer "
                       "held, so no person can decide on it")

    # -- a copy of the user's data ----------------------------------------------------------------
    def export(self, user_id: str, operator_id: str, reason: str) -> dict:
        """Everything held of the user, once its receipt is in the log (NotFound: nothing)."""
        store = self.work.store

        def step(snapshot: UserSnapshot, now: dt.datetime):
            found = store.inventory(user_id)
            if found is None:
                raise NotFound(f"no data for user {user_id!r}")
            log = [json.loads(text) for text in store.log_records(user_id)]
            log.sort(key=lambda record: record["at"])   # as log export orders them
            state = (state_view(self.rules.policy, user_id, snapshot.state, now)
                     if snapshot.known else None)
            requests = {r["application_id"]: r["request"] for r in log if r["kind"] == "decision"}
            applications = [_with_request(record, now, requests)
                            for record in sorted(found.applications, key=_decided_at)]
            return {"user_id": user_id, "exported_at": iso_utc(now), "state": state,
                    "applications": applications, "log": log}, None

        copy = self.work.run(user_id, None, step)
        counts = {"applications": len(copy["applications"]), "log_records": len(copy["log"]),
                  "state": copy["state"] is not None}
        receipt = {"receipt_id": "ex_" + secrets.token_hex(12), "exported_at": copy["exported_at"],
                   "operator_id": mask_free_text(operator_id), "reason": mask_free_text(reason),
                   "exported": counts}
        subject = erasure_subject(self.secret, user_id) if self.secret else None
        self.receipts.save(receipt, log_records.log_text(
            log_records.export_record(receipt, subject, self.rules.version)))
        return {**copy, "receipt_id": receipt["receipt_id"]}


def _decided_at(record: StoredApplication) -> str:
    return record.decision["decided_at"]


def _with_request(record: StoredApplication, now: dt.datetime, requests: dict) -> dict:
    """An application's view with the request that made it (from its log record, or from its
    review case when the log no longer holds it)."""
    request = requests.get(record.application_id) or record.doc.get("case", {}).get("request")
    return {**record.view(now), "request": request}
