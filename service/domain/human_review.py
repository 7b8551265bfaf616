"""The applicant's request for a person instead of the rules (PIPL art. 24), as pure policy.

A decision may be sent to human review by its applicant when the rules made it a rejection
(a refusal by state, REAPPLY_COOLDOWN or COOLING_OFF_PENDING, ran no rule: there is nothing a
person could decide differently), no reviewer has decided it, and the request comes within
`human_review_days` of the decision (rules/time.yaml, read from the rules version that made
the decision, so a later change of the period does not move a deadline already told to the
applicant). The deadline's last second is in, the next one out.

The application record keeps the request under `human_review` (who asked, when, the statement)
and, under `case`, the request the reviewer decides on, as a review case the rules opened.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Optional

from service.domain.application import StoredApplication
from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.rulebook import RuleBook

STATEMENT_MAX = 2000
REQUESTED_BY = "applicant"


def rules_made_rejection(decision: Mapping, book: RuleBook) -> bool:
    """A rejection some rule made: not one by state, which evaluates no rule."""
    return decision.get("outcome") == "rejected" and not any(
        reason.get("code") in book.time.state_reasons for reason in decision.get("reasons", ()))


def deadline(decision: Mapping, book: RuleBook) -> Optional[dt.datetime]:
    """The last moment the applicant may ask (None: this decision cannot be sent to a person)."""
    if not rules_made_rejection(decision, book):
        return None
    return parse_iso_utc(decision["decided_at"]) + dt.timedelta(days=book.time.human_review_days)


@dataclass(frozen=True)
class Standing:
    """Where an application stands for human review at a moment (the explanation shows it)."""

    available: bool               # a request now would open a case
    until: Optional[dt.datetime]  # the deadline, for a decision that has one
    status: Optional[str]         # None | "requested" | "decided"
    refusal: Optional[str] = None  # why a new request is refused now (a 409's message)

    def to_dict(self) -> dict:
        return {"available": self.available, "until": iso_utc(self.until) if self.until else None,
                "status": self.status}


def standing(record: StoredApplication, book: RuleBook, now: dt.datetime) -> Standing:
    """Whether the applicant may ask for a person now, and whether they have."""
    until = deadline(record.decision, book)
    requested = record.doc.get("human_review")
    if record.doc.get("review"):
        return Standing(False, until, "decided" if requested else None,
                        "it was reviewed by a person already")
    if requested:
        return Standing(False, until, "requested")   # the same request again: the same answer
    if record.doc.get("cancelled_at"):
        return Standing(False, until, None, "it was cancelled")
    if until is None:
        outcome = record.decision.get("outcome")
        why = ("it is a refusal by the user's state, which no rule made" if outcome == "rejected"
               else f"it is {outcome!r}, not a rejection")
        return Standing(False, None, None, why)
    if now > until:
        return Standing(False, until, None, f"the {book.time.human_review_days} days to ask "
                        f"ended at {iso_utc(until)}")
    return Standing(True, until, None)


def request_entry(now: dt.datetime, statement: Optional[str], rules_version: str) -> dict:
    """What the application record keeps of the request."""
    return {"requested_by": REQUESTED_BY, "requested_at": iso_utc(now),
            "statement": statement or None, "rules_version": rules_version}
