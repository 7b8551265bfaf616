"""An application's stored record and what it says now: its decision, the payload that made it,
a review's outcome, a cancellation, and the status these give at a moment.

A pure value: the stores keep it (as JSON in Redis, as itself in memory), the use cases read
it; the status is policy (T2's hold runs out at its release time), so it is worked out here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.review import final_status

VIEW_EFFECTS = ("offer", "funds_available_at", "cancel_until", "reapply_after")


@dataclass(frozen=True)
class StoredApplication:
    """The record: {"application_id", "user_id", "payload_sha256", "decision", "cancelled_at",
    and, for a review case, "case" (the request) and once reviewed "review"}. A rejection the
    applicant sent to a person (human_review) is a review case too: it has "human_review"
    (who asked, when, the statement) and "case"."""

    doc: dict

    @property
    def application_id(self) -> str:
        return self.doc["application_id"]

    @property
    def user_id(self) -> str:
        return self.doc["user_id"]

    @property
    def payload_sha256(self) -> str:
        return self.doc["payload_sha256"]

    @property
    def decision(self) -> dict:
        return self.doc["decision"]

    def status_at(self, now: dt.datetime) -> str:
        """approved | rejected | review | review_requested | cooling_off | released | cancelled."""
        if self.doc.get("cancelled_at"):
            return "cancelled"
        if self.doc.get("review"):
            return final_status(self.doc["review"], now)
        if self.doc.get("human_review"):
            return "review_requested"   # the refusal stands until a reviewer decides
        decision = self.decision
        if decision["outcome"] == "cooling_off":
            return "cooling_off" if now < parse_iso_utc(decision["funds_available_at"]) else "released"
        return decision["outcome"]

    def view(self, now: dt.datetime) -> dict:
        """The application as GET /applications/<id> shows it."""
        view = {"application_id": self.doc["application_id"], "user_id": self.doc["user_id"],
                "status": self.status_at(now), "cancelled_at": self.doc.get("cancelled_at"),
                "decision": self.decision}
        if self.doc.get("human_review"):
            view["human_review"] = self.doc["human_review"]
        review = self.doc.get("review")
        if review:   # a reviewed case: the reviewer's outcome and its effects
            for name in VIEW_EFFECTS:
                view[name] = review[name]
        if self.is_case():   # its notes and claim, with the reviewer's outcome once closed
            view["review"] = {**(review or {}), **self.desk_at(now)}
        return view

    def claim_at(self, now: dt.datetime) -> Optional[dict]:
        """The reviewer's claim that holds the case at `now` (service.domain.review_desk), or None."""
        claim = self.doc.get("claim")
        return claim if claim and parse_iso_utc(claim["until"]) > now else None

    def desk_at(self, now: dt.datetime) -> dict:
        """What the view shows of the reviewers' desk for a case: its notes and claim."""
        held = self.claim_at(now)
        return {"notes": list(self.doc.get("notes") or ()),
                "claimed_by": held["reviewer_id"] if held else None,
                "claimed_until": iso_utc(parse_iso_utc(held["until"])) if held else None}

    def is_case(self) -> bool:
        """Whether the record is a review case, open or closed."""
        return self.decision["outcome"] == "review" or bool(self.doc.get("human_review"))

    def is_open_case(self) -> bool:
        """Whether the record is a review case no reviewer has closed (the rules' or the applicant's)."""
        return self.is_case() and not self.doc.get("review")

    @property
    def requested_by_applicant(self) -> bool:
        return bool(self.doc.get("human_review"))

    def with_changes(self, **changes) -> "StoredApplication":
        return StoredApplication({**self.doc, **changes})


def pending_case(record: Optional[StoredApplication]) -> bool:
    return record is not None and record.is_open_case()
